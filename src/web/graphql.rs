//! `POST /graphql` (JSON, single or batched); `GET /graphql` is `graphiql`.
//!
//! The principal is proven here, before anything executes: a missing, unknown or revoked
//! credential is HTTP 401 with `UNAUTHENTICATED`. Body size and batch size are checked before
//! parsing goes further; then each request is admitted (alias, field and introspection
//! limits, then the per-key rate limit: `graphql::admission`), and depth and complexity are
//! checked inside the schema, all before any resolver touches the database. The answer's media
//! type, status and body shape follow GraphQL over HTTP (`graphql_answer`).

use actix_web::http::StatusCode;
use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpRequest, HttpResponse, web};
use async_graphql::{BatchRequest, BatchResponse, Request, Response, ServerError};
use futures_util::StreamExt;

use std::time::Instant;

use crate::auth::Principal;
use crate::error::Error;
use crate::graphql::context::{LogTags, RequestInfo};
use crate::graphql::{KeywaySchema, MAX_BATCH, admission, root_fields};
use crate::service::usage::{ApiStyle, LogEntry};
use crate::state::AppState;
use crate::web::graphql_answer::{self, Media};
use crate::web::request_id;

pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub async fn post(
    state: web::Data<AppState>,
    schema: web::Data<KeywaySchema>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    let response = answer(&state, &schema, &req, &mut payload).await;
    // An answer given before the body was read (401, 406, 415, 429) keeps the connection.
    super::unread_body::discard(&req, &mut payload, MAX_BODY_BYTES).await;
    response
}

async fn answer(
    state: &AppState,
    schema: &KeywaySchema,
    req: &HttpRequest,
    payload: &mut web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let Some(media) = graphql_answer::negotiate(req) else {
        return error_response(
            &Error::bad_input("answers are application/graphql-response+json or application/json"),
            StatusCode::NOT_ACCEPTABLE,
            Media::Json,
        );
    };
    let principal = super::authenticate_request(state, req).await;
    let principal = match principal {
        Ok(p) => p,
        Err(err) => return error_response(&err, err.status(), media),
    };
    // Calls of a tenant's key are its application's: counted against its plan and logged.
    let mut entry = match &principal {
        Principal::SecretKey { application_id, .. } => {
            let mut entry = LogEntry::new(*application_id, ApiStyle::Unify, "graphql");
            entry.http_method = "POST".into();
            entry.path = "/graphql".into();
            entry.request_id = request_id::of(req);
            entry.source_ip = state.client_ip.of(req);
            Some(entry)
        }
        Principal::Operator { .. } => None,
    };
    let response = execute(
        state,
        schema,
        req,
        payload,
        principal,
        media,
        entry.as_mut(),
    )
    .await;
    if let Some(mut entry) = entry {
        // A request that failed inside its answer already has the status of its error's code
        // (`execute`); the HTTP status of a GraphQL answer is often 200 whatever happened.
        if entry.status_code == 0 {
            entry.status_code = response.status().as_u16();
        }
        entry.duration = started.elapsed();
        state.logs.record(entry);
    }
    response
}

async fn execute(
    state: &AppState,
    schema: &KeywaySchema,
    req: &HttpRequest,
    payload: &mut web::Payload,
    principal: Principal,
    media: Media,
    mut entry: Option<&mut LogEntry>,
) -> HttpResponse {
    if let Err(err) = graphql_answer::check_request_type(req) {
        return error_response(&err, StatusCode::UNSUPPORTED_MEDIA_TYPE, media);
    }
    if let Some(entry) = &entry
        && let Err(err) = state
            .limits
            .count_request(&state.db, entry.application_id)
            .await
    {
        return error_response(&err, err.status(), media);
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return error_response(
                &Error::bad_input("the request body could not be read"),
                StatusCode::BAD_REQUEST,
                media,
            );
        };
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return error_response(
                &Error::bad_input(format!(
                    "the request body is larger than {MAX_BODY_BYTES} bytes"
                )),
                StatusCode::PAYLOAD_TOO_LARGE,
                media,
            );
        }
        body.extend_from_slice(&chunk);
    }
    let (single, requests) = match parse_body(&body) {
        Ok(BatchRequest::Single(request)) => (true, vec![request]),
        Ok(BatchRequest::Batch(requests)) => (false, requests),
        Err(err) => return error_response(&err, StatusCode::BAD_REQUEST, media),
    };
    // Each document is parsed once, here (or copied from an earlier parse of the same text);
    // the label, admission and execution all read that parse.
    let mut requests: Vec<(Request, Result<(), ServerError>)> = requests
        .into_iter()
        .map(|mut request| {
            let parsed = state.documents.prepare(&mut request);
            (request, parsed)
        })
        .collect();
    if let Some(entry) = entry.as_mut()
        && let Some(label) = operation_label(
            requests
                .iter_mut()
                .filter(|(_, parsed)| parsed.is_ok())
                .map(|(request, _)| request),
        )
    {
        entry.operation = label;
    }
    let tags = LogTags::default();
    let info = RequestInfo {
        request_id: request_id::of(req),
        source_ip: state.client_ip.of(req),
    };
    // A batch's requests run one after another, as async-graphql's own `execute_batch` runs
    // them: each is admitted (and counted) just before it executes.
    let mut responses = Vec::with_capacity(requests.len());
    for (request, parsed) in requests {
        responses.push(match parsed {
            Ok(()) => run_one(state, schema, &principal, &info, &tags, request).await,
            Err(syntax) => with_codes(Response::from_errors(vec![syntax])),
        });
    }
    let response = if single {
        BatchResponse::Single(responses.into_iter().next().unwrap_or_default())
    } else {
        BatchResponse::Batch(responses)
    };
    let limited = retry_after_if_all_limited(&response);
    if let Some(entry) = entry {
        tags.apply(entry);
        if let Some(code) = first_error_code(&response) {
            entry.error_message = Some(code.clone());
            entry.status_code = status_of_code(&code).as_u16();
        }
    }
    let mut answer = match limited {
        Some(secs) => {
            let mut answer = HttpResponse::TooManyRequests();
            answer.insert_header(("Retry-After", secs.to_string()));
            answer
        }
        None => HttpResponse::build(media.status(&response, |error| {
            error_code(error).map_or(StatusCode::BAD_REQUEST, |code| status_of_code(&code))
        })),
    };
    match graphql_answer::body(&response) {
        Ok(body) => answer
            .insert_header((CACHE_CONTROL, "no-store"))
            .content_type(media.content_type())
            .body(body),
        Err(err) => error_response(
            &Error::internal(err),
            StatusCode::INTERNAL_SERVER_ERROR,
            media,
        ),
    }
}

/// One request of a POST: admitted (`admission`), then executed with the caller's context.
async fn run_one(
    state: &AppState,
    schema: &KeywaySchema,
    principal: &Principal,
    info: &RequestInfo,
    tags: &LogTags,
    mut request: Request,
) -> Response {
    if let Err(refused) = admission::admit(state, principal, &mut request).await {
        return with_codes(Response::from_errors(vec![refused]));
    }
    let request = request
        .data(principal.clone())
        .data(info.clone())
        .data(tags.clone())
        .data(crate::graphql::memo::Integrations::default())
        .data(crate::graphql::memo::ConsumerPages::default());
    with_codes(schema.execute(request).await)
}

/// An object is one request, an array a batch of 1 to `MAX_BATCH`. (async-graphql's own
/// untagged parsing reads `[]` as a single empty request.) A request without a `query` (or
/// with an empty one, which async-graphql cannot tell apart) is not a GraphQL request: 400, as
/// GraphQL over HTTP asks, rather than a parse error inside a 200.
fn parse_body(body: &[u8]) -> Result<BatchRequest, Error> {
    let not_graphql = || Error::bad_input("the body is not a GraphQL request in JSON");
    let no_query = || Error::bad_input("a GraphQL request needs a query");
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {
            let request: Request = serde_json::from_slice(body).map_err(|_| not_graphql())?;
            if request.query.is_empty() {
                return Err(no_query());
            }
            Ok(BatchRequest::Single(request))
        }
        Some(b'[') => {
            let requests: Vec<Request> = serde_json::from_slice(body).map_err(|_| not_graphql())?;
            if !(1..=MAX_BATCH).contains(&requests.len()) {
                return Err(Error::bad_input(format!(
                    "a batch holds 1 to {MAX_BATCH} requests"
                )));
            }
            if requests.iter().any(|request| request.query.is_empty()) {
                return Err(no_query());
            }
            Ok(BatchRequest::Batch(requests))
        }
        _ => Err(not_graphql()),
    }
}

/// What the request log calls a POST: the root fields its operations select
/// (`root_fields::names`), each once across a batch, joined by `,`: `connections`,
/// `consumer,createConnectLink`. Only the schema's own field names are kept (the rest is the
/// caller's text). `None` when nothing is left (the log keeps `graphql`).
fn operation_label<'a>(requests: impl Iterator<Item = &'a mut Request>) -> Option<String> {
    let mut names: Vec<String> = Vec::new();
    for request in requests {
        let operation_name = request.operation_name.clone();
        let Ok(document) = request.parsed_query() else {
            continue;
        };
        for name in root_fields::names(document, operation_name.as_deref()) {
            if root_fields::is_schema_root_field(name) && !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
    }
    (!names.is_empty()).then(|| names.join(","))
}

/// Errors raised before resolvers run (parse, validation, argument coercion) carry no code;
/// they are all the caller's input, so they get `BAD_USER_INPUT` (and the depth and
/// complexity refusals a message that says what is counted).
pub fn with_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", "BAD_USER_INPUT");
            crate::graphql::limits::explain(error);
        }
    }
    response
}

/// Errors as the graphql-transport-ws `error` message carries them, each with its code.
pub fn coded_errors(errors: Vec<async_graphql::ServerError>) -> Vec<async_graphql::ServerError> {
    let mut response = Response::default();
    response.errors = errors;
    with_codes(response).errors
}

fn responses(batch: &BatchResponse) -> Vec<&Response> {
    match batch {
        BatchResponse::Single(r) => vec![r],
        BatchResponse::Batch(rs) => rs.iter().collect(),
    }
}

fn error_code(error: &async_graphql::ServerError) -> Option<String> {
    match error.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => Some(code.clone()),
        _ => None,
    }
}

fn first_error_code(batch: &BatchResponse) -> Option<String> {
    responses(batch)
        .into_iter()
        .flat_map(|r| r.errors.iter())
        .find_map(error_code)
}

/// When every request of the POST was refused by the rate limit, the POST is a 429.
fn retry_after_if_all_limited(batch: &BatchResponse) -> Option<u64> {
    let mut retry_after = None;
    for response in responses(batch) {
        let limited = response
            .errors
            .iter()
            .find(|e| error_code(e).as_deref() == Some("RATE_LIMITED"))?;
        let secs = match limited
            .extensions
            .as_ref()
            .and_then(|e| e.get("retryAfter"))
        {
            Some(async_graphql::Value::Number(n)) => n.as_u64().unwrap_or(1),
            _ => 1,
        };
        retry_after = Some(retry_after.map_or(secs, |s: u64| s.max(secs)));
    }
    retry_after
}

/// The HTTP status a request log shows for a GraphQL error code.
fn status_of_code(code: &str) -> StatusCode {
    match code {
        "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
        "FORBIDDEN" => StatusCode::FORBIDDEN,
        "NOT_FOUND" => StatusCode::NOT_FOUND,
        "BAD_USER_INPUT" => StatusCode::BAD_REQUEST,
        "CONFLICT" => StatusCode::CONFLICT,
        "RATE_LIMITED" => StatusCode::TOO_MANY_REQUESTS,
        "UPSTREAM_ERROR" => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A GraphQL-shaped error answer for failures outside execution.
pub(super) fn error_response(err: &Error, status: StatusCode, media: Media) -> HttpResponse {
    err.log();
    let mut response = HttpResponse::build(status);
    response.content_type(media.content_type());
    let mut extensions = serde_json::json!({ "code": err.code() });
    if let Some(challenge) = err.challenge() {
        response.insert_header(("WWW-Authenticate", challenge));
    }
    if let Error::RateLimited { retry_after_secs } = err {
        response.insert_header(("Retry-After", retry_after_secs.to_string()));
        extensions["retryAfter"] = (*retry_after_secs).into();
    }
    response.body(
        serde_json::json!({
            "errors": [{ "message": err.message(), "extensions": extensions }]
        })
        .to_string(),
    )
}
