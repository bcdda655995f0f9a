//! `ANY /proxy/{connection_id}/{path…}`: the raw passthrough proxy. Same rules as the `proxy`
//! mutation (`service::proxy`); request and response bodies stream through. Small request
//! bodies are held so that an upstream 401 can be retried after a refresh; large or unsized
//! ones stream and are sent once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use bytes::Bytes;
use futures_util::StreamExt;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ids::{self, NodeType};
use crate::service::proxy::{self, CallBody, Forwarded, ProxyCall, UpstreamResponse};
use crate::service::usage::{ApiStyle, LogEntry};
use crate::state::AppState;
use crate::upstream::proxy_client::OutboundBody;

/// Request bodies up to this size are held (and a 401 retried); larger ones stream.
const HELD_REQUEST_BYTES: u64 = 64 * 1024;
/// Response bodies up to this size are read in full and sent with a length.
const HELD_RESPONSE_BYTES: u64 = 256 * 1024;

/// `rate_limit::WAIT_HEADER`, made once (a name given as text is parsed at every lookup).
const WAIT_HEADER: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static(proxy::rate_limit::WAIT_HEADER);

/// The provider's side of a call, for its log entry.
pub struct Upstream {
    pub target: Arc<proxy::Target>,
    pub latency: std::time::Duration,
    pub status: reqwest::StatusCode,
}

pub async fn proxy(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let mut payload = Some(payload);
    let response = answer(&state, &req, &mut payload).await;
    // A call refused or answered before its body was sent keeps the caller's connection.
    if let Some(unread) = payload.as_mut() {
        super::unread_body::discard(&req, unread, HELD_REQUEST_BYTES as usize).await;
    }
    response
}

/// The answer to a call; `payload` is left in place unless the body was streamed on.
async fn answer(
    state: &AppState,
    req: &HttpRequest,
    payload: &mut Option<web::Payload>,
) -> HttpResponse {
    let started = Instant::now();
    let principal = super::authenticate_request(state, req).await;
    let scope = match principal.and_then(|p| p.require_secret_key("only a secret key may proxy")) {
        Ok(scope) => scope,
        Err(err) => return err.to_http(),
    };
    let (id, path) = match split_path(req.uri().path()) {
        Ok(parts) => parts,
        Err(err) => return err.to_http(),
    };
    let mut entry = LogEntry::new(scope.application_id(), ApiStyle::Proxy, "proxy");
    entry.http_method = req.method().as_str().to_owned();
    entry.path = path.clone();
    entry.connection_id = Some(id);
    entry.request_id = crate::web::request_id::of(req);
    entry.source_ip = state.client_ip.of(req);

    let response = match call(state, req, payload, &scope, id, path, &mut entry).await {
        Ok(response) => response,
        Err(err) => {
            entry.error_message = Some(err.message());
            err.to_http()
        }
    };
    entry.status_code = response.status().as_u16();
    // (An answer to HEAD has no body to wait for.)
    if req.method() != actix_web::http::Method::HEAD
        && super::logged_body::streams(&response, HELD_RESPONSE_BYTES)
    {
        return super::logged_body::until_end(response, entry, started, state.logs.clone());
    }
    entry.duration = started.elapsed();
    state.logs.record(entry);
    response
}

/// What the log says about the provider's side of a call.
pub fn describe(entry: &mut LogEntry, upstream: &Upstream) {
    label(entry, &upstream.target);
    entry.latency = Some(upstream.latency);
    let status = upstream.status;
    if !status.is_success() && !status.is_redirection() {
        entry.error_message = status.canonical_reason().map(str::to_owned);
    }
}

/// What the log says about the connection a call was for.
fn label(entry: &mut LogEntry, target: &proxy::Target) {
    let labels = &target.labels;
    entry.base_url = Some(labels.base_url.clone());
    entry.service_id = Some(labels.service_id.clone());
    entry.unified_api = Some(labels.unified_api.clone());
    entry.consumer_id = Some(labels.consumer_id.clone());
    entry.sandbox = target.sandbox();
}

/// The call, described in `entry` as far as it got.
async fn call(
    state: &AppState,
    req: &HttpRequest,
    payload: &mut Option<web::Payload>,
    scope: &crate::auth::AppScope,
    id: Uuid,
    path: String,
    entry: &mut LogEntry,
) -> Result<HttpResponse> {
    // Refused before they count against the plan, as the mutation's arguments are.
    let method = proxy::method::forwarded(req.method().as_str())?;
    let rate_limit_wait = proxy::rate_limit::wait_from_header(
        &state.config,
        req.headers().get(&WAIT_HEADER).map(|v| v.as_bytes()),
    )?;
    let mut headers = to_reqwest_headers(req.headers());
    let hop = proxy::max_forwards::apply(&method, &mut headers)?;
    state
        .limits
        .count_request(&state.db, scope.application_id())
        .await?;
    if hop == proxy::max_forwards::Hop::AnswerHere {
        // Answered as the final recipient would (RFC 9110 §9.3.7): what the route supports.
        let target = proxy::target(&state.deps(), scope, id).await?;
        label(entry, &target);
        return Ok(HttpResponse::Ok()
            .insert_header(("Allow", proxy::method::ALLOWED))
            .finish());
    }
    let max = state.config.proxy_max_body_bytes;
    let length = declared_length(
        req.headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .map(|v| v.as_bytes()),
    );
    if length.is_some_and(|l| l > max) {
        return Err(too_large(max));
    }
    let chunked = req
        .headers()
        .contains_key(actix_web::http::header::TRANSFER_ENCODING);
    let overflow = Arc::new(AtomicBool::new(false));
    // (A payload already taken has nothing left to send.)
    let body = match (length, payload.as_mut()) {
        (Some(0), _) | (_, None) => CallBody::Empty,
        (Some(l), Some(unread)) if l <= HELD_REQUEST_BYTES => {
            CallBody::Bytes(read_all(unread, max).await?)
        }
        _ if !chunked && length.is_none() => CallBody::Empty,
        // A chunked request's Content-Length, if any, says nothing (RFC 9112 §6.3).
        _ => match payload.take() {
            Some(unread) => CallBody::Stream(stream_body(
                unread,
                max,
                length.filter(|_| !chunked),
                overflow.clone(),
            )),
            None => CallBody::Empty,
        },
    };
    let call = ProxyCall {
        method,
        path,
        query: req.uri().query().map(str::to_owned),
        headers,
        body,
        rate_limit_wait,
        forwarded_from: Some(http_version(req.version())),
    };
    let forwarded = match proxy::forward(&state.deps(), scope, id, call).await {
        Err(_) if overflow.load(Ordering::SeqCst) => return Err(too_large(max)),
        other => other?,
    };
    let Forwarded {
        response,
        target,
        latency,
    } = forwarded;
    describe(
        entry,
        &Upstream {
            target,
            latency,
            status: response.status(),
        },
    );
    respond(response, req, max).await
}

/// actix's `Version` (http 0.2) as the HTTP client's.
fn http_version(version: actix_web::http::Version) -> http::Version {
    use actix_web::http::Version as Actix;
    match version {
        Actix::HTTP_09 => http::Version::HTTP_09,
        Actix::HTTP_10 => http::Version::HTTP_10,
        Actix::HTTP_2 => http::Version::HTTP_2,
        Actix::HTTP_3 => http::Version::HTTP_3,
        _ => http::Version::HTTP_11,
    }
}

fn too_large(max: u64) -> Error {
    Error::TooLarge(format!("the body is larger than {max} bytes"))
}

/// `/proxy/{id}/{rest}` from the raw (still percent-encoded) request path.
fn split_path(raw: &str) -> Result<(Uuid, String)> {
    let rest = raw.strip_prefix("/proxy/").ok_or(Error::NotFound)?;
    let (id, path) = rest.split_once('/').unwrap_or((rest, ""));
    let id = match Uuid::parse_str(id) {
        Ok(uuid) => uuid,
        Err(_) => ids::decode_as(NodeType::Connection, id).map_err(|_| Error::NotFound)?,
    };
    Ok((id, ["/", path].concat()))
}

async fn read_all(payload: &mut web::Payload, max: u64) -> Result<Bytes> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| Error::bad_input("the request body could not be read"))?;
        if (body.len() + chunk.len()) as u64 > max {
            return Err(too_large(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Pipes the request body to the upstream call as it arrives, with the caller's declared
/// `length` (actix holds the caller to it). actix's payload lives on this worker's thread; a
/// local task moves it into a channel the HTTP client can read from anywhere. Past `max`
/// bytes the stream fails and `overflow` is set.
fn stream_body(
    mut payload: web::Payload,
    max: u64,
    length: Option<u64>,
    overflow: Arc<AtomicBool>,
) -> OutboundBody {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    actix_web::rt::spawn(async move {
        let mut seen: u64 = 0;
        while let Some(chunk) = payload.next().await {
            let item = match chunk {
                Ok(chunk) => {
                    seen += chunk.len() as u64;
                    if seen > max {
                        overflow.store(true, Ordering::SeqCst);
                        Err(std::io::Error::other("request body too large"))
                    } else {
                        Ok(chunk)
                    }
                }
                Err(_) => Err(std::io::Error::other("request body could not be read")),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    OutboundBody::Channel { chunks: rx, length }
}

/// The caller's headers in the HTTP client's types, without those never forwarded
/// (`proxy::headers::outbound` applies the rest of the rules, and reads `Connection` for the
/// names it lists, so that one is kept).
fn to_reqwest_headers(headers: &actix_web::http::header::HeaderMap) -> reqwest::header::HeaderMap {
    let mut out = reqwest::header::HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if *name != actix_web::http::header::CONNECTION
            && proxy::headers::never_forwarded(name.as_str())
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append(name, value);
        }
    }
    out
}

/// The provider's answer, passed back: status, filtered headers, the body held (small) or
/// streamed (large), cut off past `max` bytes. A streamed body keeps the provider's
/// `Content-Length` when it declared one; otherwise it goes out chunked, or to an HTTP/1.0
/// caller (who cannot read chunks, RFC 9112 §6.1) delimited by closing the connection. An
/// answer to HEAD keeps the provider's framing (RFC 9110 §9.3.2: the `Content-Length` a GET
/// would have) with no body.
async fn respond(response: UpstreamResponse, req: &HttpRequest, max: u64) -> Result<HttpResponse> {
    let status = StatusCode::from_u16(response.status().as_u16())
        .map_err(|_| Error::Upstream("the provider answered with an invalid status".into()))?;
    let mut builder = HttpResponse::build(status);
    for (name, value) in proxy::headers::inbound(response.headers()) {
        if let (Ok(name), Ok(value)) = (
            actix_web::http::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            actix_web::http::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            builder.append_header((name, value));
        }
    }
    if req.method() == actix_web::http::Method::HEAD {
        let declared = response.headers().get(reqwest::header::CONTENT_LENGTH);
        let length = declared_length(declared.map(|v| v.as_bytes()));
        let nothing = futures_util::stream::empty::<std::io::Result<Bytes>>();
        return Ok(streamed(builder, length, nothing));
    }
    let length = response.content_length();
    if length.is_some_and(|l| l > max) {
        return Err(Error::Upstream(format!(
            "the provider's answer is larger than {max} bytes"
        )));
    }
    match length {
        Some(l) if l <= HELD_RESPONSE_BYTES => Ok(builder.body(response.bytes(max).await?)),
        // A stream that fails (the provider broke off, too slow, too large) ends the
        // connection short of the length, so the caller sees the answer incomplete.
        Some(_) => Ok(streamed(builder, length, response.into_stream(max))),
        None if req.version() == actix_web::http::Version::HTTP_10 => {
            builder.force_close();
            let mut answer = streamed(builder, None, response.into_stream(max));
            answer.head_mut().no_chunking(true);
            Ok(answer)
        }
        None => Ok(streamed(builder, None, response.into_stream(max))),
    }
}

/// A streamed answer: sent under `length` when known, else chunked. Not through
/// `HttpResponseBuilder::streaming`, which adds `Content-Type: application/octet-stream` to an
/// answer the provider sent without one.
fn streamed<S>(mut builder: HttpResponseBuilder, length: Option<u64>, body: S) -> HttpResponse
where
    S: futures_util::Stream<Item = std::io::Result<Bytes>> + 'static,
{
    match length {
        Some(length) => builder.body(SizedStream::new(length, body)),
        None => builder.body(BodyStream::new(body)),
    }
}

/// A `Content-Length` value, from the caller's request or the provider's answer (for HEAD,
/// hyper's body reports zero whatever the provider declared).
fn declared_length(value: Option<&[u8]>) -> Option<u64> {
    std::str::from_utf8(value?).ok()?.parse().ok()
}
