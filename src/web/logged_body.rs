//! A streamed proxy answer is logged when its body ends, not when its head is sent: the entry's
//! duration then covers the whole answer, and an answer that broke off, ran past the size
//! limit or timed out part-way (after its `200` was already on the wire) is logged as the
//! failure it was, as is one whose caller went away before it ended.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use actix_web::HttpResponse;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::http::StatusCode;
use bytes::Bytes;

use crate::service::usage::{LogEntry, RequestLogWriter};

/// Logged, as nginx does, when the caller closed its connection before the answer ended.
const CALLER_GONE: u16 = 499;

/// Whether `response` streams its body (held answers are small and sent whole at once).
pub fn streams(response: &HttpResponse, held_up_to: u64) -> bool {
    match response.body().size() {
        BodySize::Stream => true,
        BodySize::Sized(length) => length > held_up_to,
        BodySize::None => false,
    }
}

/// `response`, whose body records `entry` (timed from `started`) once it ends.
pub fn until_end(
    response: HttpResponse,
    entry: LogEntry,
    started: Instant,
    logs: Arc<RequestLogWriter>,
) -> HttpResponse {
    response
        .map_body(|_, body| LoggedBody {
            body,
            entry: Some(entry),
            started,
            logs,
        })
        .map_into_boxed_body()
}

struct LoggedBody {
    body: BoxBody,
    /// Until recorded.
    entry: Option<LogEntry>,
    started: Instant,
    logs: Arc<RequestLogWriter>,
}

impl LoggedBody {
    fn record(&mut self, failure: Option<(StatusCode, String)>) {
        let Some(mut entry) = self.entry.take() else {
            return;
        };
        if let Some((status, why)) = failure {
            entry.status_code = status.as_u16();
            entry.error_message = Some(why);
        }
        entry.duration = self.started.elapsed();
        self.logs.record(entry);
    }
}

impl MessageBody for LoggedBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let item = ready!(Pin::new(&mut self.body).poll_next(cx));
        match &item {
            None => self.record(None),
            Some(Err(err)) => self.record(Some(failure(err.as_ref()))),
            Some(Ok(_)) => {}
        }
        Poll::Ready(item)
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let gone = "the caller closed the connection before the answer ended";
        self.record(Some((
            StatusCode::from_u16(CALLER_GONE).unwrap_or(StatusCode::BAD_REQUEST),
            gone.to_owned(),
        )));
    }
}

/// What a body stream's error says about the call (`UpstreamResponse::into_stream` words them).
fn failure(err: &(dyn std::error::Error + 'static)) -> (StatusCode, String) {
    let timed_out = err
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut);
    let status = if timed_out {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    (status, err.to_string())
}
