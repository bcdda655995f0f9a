//! What is left of a request body when the answer did not need it (a 401, a 429, a refused
//! path): read and dropped, so that the caller's keep-alive connection serves its next request.
//! actix closes a connection whose request body was left unread (it cannot tell where the next
//! request starts), so every early answer cost the caller a new connection, and a client
//! retrying after a 429 reconnected for each retry.
//!
//! What it must never do: wait for long on a caller who is not sending. At most `limit` bytes
//! and `WAIT` are read; past either the connection is closed, as before.

use std::time::Duration;

use actix_web::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;

/// How long an answered request's body is waited for.
const WAIT: Duration = Duration::from_secs(1);

/// Reads `payload` to its end and drops it, unless it is longer than `limit` bytes or slower
/// than `WAIT`. A request that declared no body costs nothing.
pub async fn discard(req: &HttpRequest, payload: &mut web::Payload, limit: usize) {
    let headers = req.headers();
    if !headers.contains_key(CONTENT_LENGTH) && !headers.contains_key(TRANSFER_ENCODING) {
        return;
    }
    let read = async {
        let mut seen = 0;
        while let Some(Ok(chunk)) = payload.next().await {
            seen += chunk.len();
            if seen > limit {
                return;
            }
        }
    };
    // Timing out leaves the body unread: the connection closes.
    let _ = tokio::time::timeout(WAIT, read).await;
}
