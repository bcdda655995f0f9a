//! The provider's answer to a proxied call: its head at once, its body read whole or streamed,
//! never past the size limit and never past the call's deadline (the timeout covers the whole
//! answer, as for every other call to a provider).

use std::io;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http_body_util::BodyExt;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::upstream::proxy_pool::PooledBody;

pub struct UpstreamResponse {
    head: http::response::Parts,
    body: PooledBody,
    deadline: Instant,
}

fn too_large(max: u64) -> Error {
    Error::Upstream(format!("the provider's answer is larger than {max} bytes"))
}

pub(super) fn timed_out() -> Error {
    Error::UpstreamTimeout("the provider did not answer in time".into())
}

impl UpstreamResponse {
    pub(super) fn new(response: http::Response<PooledBody>, deadline: Instant) -> Self {
        let (head, body) = response.into_parts();
        Self {
            head,
            body,
            deadline,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.head.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// The body's length when the provider declared it (none for a chunked answer; zero for
    /// an answer to HEAD, whatever its `Content-Length`).
    pub fn content_length(&self) -> Option<u64> {
        http_body::Body::size_hint(&self.body).exact()
    }

    /// The whole body; refused past `max` bytes.
    pub async fn bytes(self, max: u64) -> Result<Bytes> {
        let mut body = self.body;
        let read = async move {
            let mut first: Option<Bytes> = None;
            let mut rest = BytesMut::new();
            while let Some(frame) = body.frame().await {
                let frame =
                    frame.map_err(|_| Error::Upstream("the provider's answer broke off".into()))?;
                let Ok(data) = frame.into_data() else {
                    continue; // trailers
                };
                let seen = first.as_ref().map_or(0, Bytes::len) + rest.len() + data.len();
                if seen as u64 > max {
                    return Err(too_large(max));
                }
                // Most answers arrive in one piece: keep it as it came, without a copy.
                match &first {
                    None => first = Some(data),
                    Some(head) => {
                        if rest.is_empty() {
                            rest.extend_from_slice(head);
                        }
                        rest.extend_from_slice(&data);
                    }
                }
            }
            Ok(if rest.is_empty() {
                first.unwrap_or_default()
            } else {
                rest.freeze()
            })
        };
        tokio::time::timeout_at(self.deadline, read)
            .await
            .map_err(|_| timed_out())?
    }

    /// The body as it arrives; the stream fails past `max` bytes or the deadline.
    pub fn into_stream(self, max: u64) -> impl Stream<Item = io::Result<Bytes>> + 'static {
        struct Reading {
            body: PooledBody,
            deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
            seen: u64,
            failed: bool,
        }
        let start = Reading {
            body: self.body,
            deadline: Box::pin(tokio::time::sleep_until(self.deadline)),
            seen: 0,
            failed: false,
        };
        futures_util::stream::unfold(start, move |mut reading| async move {
            if reading.failed {
                return None;
            }
            loop {
                let frame = tokio::select! {
                    frame = reading.body.frame() => frame,
                    _ = &mut reading.deadline => {
                        reading.failed = true;
                        let err = io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the provider did not answer in time",
                        );
                        return Some((Err(err), reading));
                    }
                };
                let data = match frame {
                    None => return None,
                    Some(Err(_)) => {
                        reading.failed = true;
                        let err = io::Error::other("the provider's answer broke off");
                        return Some((Err(err), reading));
                    }
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => data,
                        Err(_) => continue, // trailers
                    },
                };
                reading.seen += data.len() as u64;
                if reading.seen > max {
                    reading.failed = true;
                    let err = io::Error::other("the provider's answer is too large");
                    return Some((Err(err), reading));
                }
                return Some((Ok(data), reading));
            }
        })
    }
}
