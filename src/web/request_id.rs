//! A request id on every log line of a request, echoed in `keyway-request-id` on every answer,
//! and in `x-request-id` unless the answer already has one: a provider's answer passed back
//! through the raw proxy keeps the provider's own id there, which its support desk asks for.
//!
//! Only the matched route pattern is logged, never the raw path or query: those can carry
//! OAuth codes, state values or session tokens.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

/// The conventional header: a caller's id is read from it, and answered in it. (Both names are
/// made once: a name given as text is parsed at every lookup.)
const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Keyway's id on every answer, whatever the provider put in `x-request-id`.
const KEYWAY_HEADER: HeaderName = HeaderName::from_static("keyway-request-id");

/// The id, for handlers that record it (request logs).
#[derive(Clone)]
struct RequestId(String);

pub fn of(req: &actix_web::HttpRequest) -> Option<String> {
    actix_web::HttpMessage::extensions(req)
        .get::<RequestId>()
        .map(|id| id.0.clone())
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = incoming_id(&req).unwrap_or_else(new_id);
    actix_web::HttpMessage::extensions_mut(&req).insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id);
    let started = Instant::now();
    let method = req.method().clone();
    let mut response = next.call(req).instrument(span.clone()).await?;
    // The route's pattern is rebuilt from the resource map: only worth it when it is logged.
    if tracing::enabled!(tracing::Level::INFO) {
        let route = response
            .request()
            .match_pattern()
            .unwrap_or_else(|| "(unmatched)".to_owned());
        span.in_scope(|| {
            tracing::info!(
                %method,
                route,
                status = response.status().as_u16(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "request"
            )
        });
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        let headers = response.headers_mut();
        if !headers.contains_key(&HEADER) {
            headers.insert(HEADER, value.clone());
        }
        headers.insert(KEYWAY_HEADER, value);
    }
    Ok(response)
}

/// A process-unique id: a random prefix drawn once per thread, then the thread's own counter
/// (no random draw, which is a system call, per request; and no counter shared by the HTTP
/// workers, whose cache line would move between cores on every request).
fn new_id() -> String {
    use std::cell::Cell;
    thread_local! {
        static NEXT: Cell<(u64, u64)> = Cell::new((rand::random::<u64>(), 0));
    }
    let (prefix, count) = NEXT.with(|next| {
        let (prefix, count) = next.get();
        next.set((prefix, count.wrapping_add(1)));
        (prefix, count)
    });
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&prefix.to_be_bytes());
    bytes[8..].copy_from_slice(&count.to_be_bytes());
    // Not `format!` nor `hex::encode`: both cost several times as much, on every request.
    let mut digits = [0u8; 32];
    // Cannot fail: the output is exactly twice the input's length.
    let _ = hex::encode_to_slice(bytes, &mut digits);
    digits.into_iter().map(char::from).collect()
}

/// A caller's own id is kept when it is short and plain, so traces join up across services.
fn incoming_id(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(&HEADER)?.to_str().ok()?;
    let plain = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plain.then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn new_ids_are_32_hex_digits_of_a_threads_prefix_and_counter() {
        let (first, second) = (super::new_id(), super::new_id());
        for id in [&first, &second] {
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{id}"
            );
        }
        assert_eq!(first[..16], second[..16]);
        let count = |id: &str| u64::from_str_radix(&id[16..], 16).unwrap();
        assert!(count(&second) > count(&first));
        let elsewhere = std::thread::spawn(super::new_id).join().unwrap();
        assert_ne!(
            elsewhere[..16],
            first[..16],
            "each thread draws its own prefix"
        );
    }
}
