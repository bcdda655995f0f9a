//! `POST /graphql` (JSON, single or batched) and GraphiQL on `GET /graphql`.
//!
//! The principal is proven here, before anything executes: a missing, unknown or revoked
//! credential is HTTP 401 with `UNAUTHENTICATED`. Body size and batch size are checked before
//! parsing goes further; depth, complexity and alias limits run inside the schema, all before
//! any resolver touches the database.

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};
use async_graphql::http::GraphiQLSource;
use async_graphql::{BatchRequest, BatchResponse, Request, Response};
use futures_util::StreamExt;

use crate::auth::bearer::{authenticate, bearer_token};
use crate::error::Error;
use crate::graphql::{KeywaySchema, MAX_BATCH};
use crate::state::AppState;

pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub async fn post(
    state: web::Data<AppState>,
    schema: web::Data<KeywaySchema>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let principal = match bearer_token(header) {
        Some(token) => authenticate(&state.db, &state.last_used, token).await,
        None => Err(Error::Unauthenticated),
    };
    let principal = match principal {
        Ok(p) => p,
        Err(err) => return error_response(&err, err.status()),
    };

    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return error_response(
                &Error::bad_input("the request body could not be read"),
                StatusCode::BAD_REQUEST,
            );
        };
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return error_response(
                &Error::bad_input(format!(
                    "the request body is larger than {MAX_BODY_BYTES} bytes"
                )),
                StatusCode::PAYLOAD_TOO_LARGE,
            );
        }
        body.extend_from_slice(&chunk);
    }
    let batch = match parse_body(&body) {
        Ok(batch) => batch,
        Err(err) => return error_response(&err, StatusCode::BAD_REQUEST),
    };

    let response = schema.execute_batch(batch.data(principal)).await;
    let response = match response {
        BatchResponse::Single(r) => BatchResponse::Single(with_codes(r)),
        BatchResponse::Batch(rs) => BatchResponse::Batch(rs.into_iter().map(with_codes).collect()),
    };
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(response)
}

pub async fn graphiql(state: web::Data<AppState>) -> HttpResponse {
    if !state.config.graphiql_enabled() {
        return error_response(&Error::NotFound, StatusCode::NOT_FOUND);
    }
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .title("Keyway GraphQL")
                .finish(),
        )
}

/// An object is one request, an array a batch of 1 to `MAX_BATCH`. (async-graphql's own
/// untagged parsing reads `[]` as a single empty request.)
fn parse_body(body: &[u8]) -> Result<BatchRequest, Error> {
    let not_graphql = || Error::bad_input("the body is not a GraphQL request in JSON");
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice::<Request>(body)
            .map(BatchRequest::Single)
            .map_err(|_| not_graphql()),
        Some(b'[') => {
            let requests: Vec<Request> = serde_json::from_slice(body).map_err(|_| not_graphql())?;
            if !(1..=MAX_BATCH).contains(&requests.len()) {
                return Err(Error::bad_input(format!(
                    "a batch holds 1 to {MAX_BATCH} requests"
                )));
            }
            Ok(BatchRequest::Batch(requests))
        }
        _ => Err(not_graphql()),
    }
}

/// Errors raised before resolvers run (parse, validation, argument coercion) carry no code;
/// they are all the caller's input, so they get `BAD_USER_INPUT`.
fn with_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", "BAD_USER_INPUT");
        }
    }
    response
}

/// A GraphQL-shaped error answer for failures outside execution.
fn error_response(err: &Error, status: StatusCode) -> HttpResponse {
    err.log();
    let mut response = HttpResponse::build(status);
    if matches!(err, Error::Unauthenticated) {
        response.insert_header(("WWW-Authenticate", "Bearer"));
    }
    response.json(serde_json::json!({
        "errors": [{ "message": err.message(), "extensions": { "code": err.code() } }]
    }))
}
