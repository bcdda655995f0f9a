//! The proxy client's idle HTTP/1.1 connections, one pool per thread.
//!
//! hyper-util's pooled client (the one reqwest wraps) spawns a task on every HTTP/1 call to
//! put its connection back once the answer's body is read, and locks its pool and hashes the
//! origin with SipHash on the way out and in. Without those, Keyway's raw proxy served
//! 3.9–5.3% more calls a second at 6.9–7.3% less CPU per call (`bench/proxy_ab.sh`, two runs
//! of 10 pairs), and its request path ran 8% fewer instructions
//! (`bench/proxy_instructions.sh`). Here the connection goes back when the body's last frame
//! is read, by whoever reads it, into that thread's pool. An HTTP worker drives the
//! connections it opened on its own runtime, so each worker keeping its own idle list also
//! keeps every call's I/O on one thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use super::proxy_client::OutboundBody;

/// An idle connection older than this is closed rather than reused (servers commonly close
/// theirs after 60–120 s, and a request on a connection the server is closing fails).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per origin and thread; past it, the oldest is closed.
const MAX_IDLE_PER_ORIGIN: usize = 256;

pub type Sender = SendRequest<OutboundBody>;

/// Where a connection leads: scheme, host and port (as the URI spells them; `Authority`
/// compares and hashes the host without regard to case).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Origin {
    pub scheme: Scheme,
    pub authority: Authority,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

type Pool = HashMap<Origin, Vec<Idle>, foldhash::fast::RandomState>;

thread_local! {
    static IDLE: RefCell<Pool> = RefCell::new(Pool::default());
}

/// The most recently used open connection to `origin` idle on this thread, if any, and how
/// long it has been idle. It may still be finishing its last answer: `SendRequest::ready`
/// says when it can take the next.
pub fn take(origin: &Origin) -> Option<(Sender, Duration)> {
    IDLE.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.get_mut(origin)?;
        while let Some(Idle { sender, since }) = idle.pop() {
            let idle_for = since.elapsed();
            if !sender.is_closed() && idle_for < IDLE_TIMEOUT {
                return Some((sender, idle_for));
            }
        }
        None
    })
}

/// Keeps a connection whose last answer has been read in full, for the next call.
pub fn give(origin: Origin, sender: Sender) {
    if sender.is_closed() {
        return;
    }
    let now = Instant::now();
    IDLE.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.entry(origin).or_default();
        let close = oldest_to_close(idle.len(), idle.iter().map(|i| i.since), now);
        idle.drain(..close);
        idle.push(Idle { sender, since: now });
    });
}

/// How many of the idle connections (`since`: when each became idle, oldest first) to close
/// before one more is kept: those past the timeout, then the oldest beyond the bound.
fn oldest_to_close(len: usize, since: impl Iterator<Item = Instant>, now: Instant) -> usize {
    let stale = since
        .take_while(|&since| now.duration_since(since) >= IDLE_TIMEOUT)
        .count();
    stale + (len - stale + 1).saturating_sub(MAX_IDLE_PER_ORIGIN)
}

/// Connections idle on this thread (tests).
pub fn idle_count(origin: &Origin) -> usize {
    IDLE.with(|pool| pool.borrow().get(origin).map_or(0, Vec::len))
}

/// An answer's body; its connection goes back to the pool once the body has been read to
/// its end. A body dropped before then (an error, a caller gone, an answer too large) takes
/// its connection with it: whatever it had left unread is never mistaken for the next
/// answer.
pub struct PooledBody {
    body: Incoming,
    home: Option<(Origin, Sender)>,
    /// Kept open until the body is done, never pooled.
    _alone: Option<Sender>,
}

impl PooledBody {
    /// `reuse` false: the connection serves this answer only (its request body was streamed:
    /// a provider may answer before reading all of it, and the connection stays busy until
    /// the caller has sent the rest, which the next call must not wait for).
    pub fn new(body: Incoming, origin: Origin, sender: Sender, reuse: bool) -> Self {
        if !reuse {
            return Self {
                body,
                home: None,
                _alone: Some(sender),
            };
        }
        let mut pooled = Self {
            body,
            home: Some((origin, sender)),
            _alone: None,
        };
        // No body at all (HEAD, 204, 304, a zero length): the connection is free already.
        if pooled.body.is_end_stream() {
            pooled.release();
        }
        pooled
    }

    fn release(&mut self) {
        if let Some((origin, sender)) = self.home.take() {
            give(origin, sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.home = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;

    use super::*;
    use crate::upstream::proxy_client::{ProxyClient, per_thread};

    /// How the upstream ends each connection.
    #[derive(Clone, Copy)]
    enum Upstream {
        /// Answers every request on a connection, keeping it open.
        KeepAlive,
        /// Answers one request with `Connection: close`, then closes.
        AnnouncedClose,
        /// Answers one request, then closes without having said so (as a server closes a
        /// connection that has been idle too long).
        SilentClose,
        /// On its first connection, answers the first request, then reads the second and
        /// closes without answering (as a provider closing an idle connection just as a
        /// request arrives); keeps every later connection open.
        DropsSecond,
    }

    /// A raw HTTP/1.1 upstream on a local port: each answer's body is the number of requests
    /// it has seen so far, 10 bytes long. Returns its base URL and the connections it accepted.
    fn upstream(mode: Upstream) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let first_connection = counted.fetch_add(1, Ordering::SeqCst) == 0;
                let requests = requests.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    loop {
                        // A request head (these requests carry no body).
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        if matches!(mode, Upstream::DropsSecond)
                            && first_connection
                            && requests.load(Ordering::SeqCst) == 1
                        {
                            return;
                        }
                        let seen = requests.fetch_add(1, Ordering::SeqCst) + 1;
                        let close = match mode {
                            Upstream::AnnouncedClose => "connection: close\r\n",
                            _ => "",
                        };
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\n{close}content-length: 10\r\n\r\n{seen:>10}"
                        );
                        if stream.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                        if matches!(mode, Upstream::AnnouncedClose | Upstream::SilentClose) {
                            return;
                        }
                    }
                });
            }
        });
        (base, accepted)
    }

    /// Past the client's `LONG_IDLE`.
    const LONG_IDLE_FOR_TESTS: Duration = Duration::from_millis(1_100);

    fn client() -> ProxyClient {
        per_thread(&crate::config::Config::default()).unwrap()
    }

    fn get(base: &str) -> http::Request<OutboundBody> {
        let mut request = http::Request::new(OutboundBody::full(Bytes::new()));
        *request.uri_mut() = format!("{base}/items").parse().unwrap();
        request
    }

    async fn body_of(client: &ProxyClient, base: &str) -> String {
        let answer = client.request(get(base)).await.unwrap();
        let bytes = answer.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap().trim().to_owned()
    }

    fn origin_of(base: &str) -> Origin {
        let uri: http::Uri = base.parse().unwrap();
        Origin {
            scheme: uri.scheme().unwrap().clone(),
            authority: uri.authority().unwrap().clone(),
        }
    }

    #[test]
    fn idle_connections_past_the_timeout_or_the_bound_are_closed_oldest_first() {
        let now = Instant::now() + IDLE_TIMEOUT * 2;
        let old = now - IDLE_TIMEOUT;
        let fresh = now - Duration::from_secs(1);
        let ages = |old_ones: usize, fresh_ones: usize| {
            std::iter::repeat_n(old, old_ones).chain(std::iter::repeat_n(fresh, fresh_ones))
        };
        assert_eq!(oldest_to_close(3, ages(0, 3), now), 0);
        assert_eq!(oldest_to_close(5, ages(2, 3), now), 2);
        let full = MAX_IDLE_PER_ORIGIN;
        assert_eq!(oldest_to_close(full, ages(0, full), now), 1, "the bound");
        assert_eq!(oldest_to_close(full, ages(1, full - 1), now), 1);
        assert_eq!(oldest_to_close(full - 1, ages(0, full - 1), now), 0);
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_answer_is_read() {
        let (base, accepted) = upstream(Upstream::KeepAlive);
        let client = client();
        for expected in 1..=5 {
            assert_eq!(body_of(&client, &base).await, expected.to_string());
            assert_eq!(idle_count(&origin_of(&base)), 1);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection for all");
    }

    /// The connection is pooled before its reader has seen the close: the next call finds out
    /// when it waits for the connection to be ready, and opens another.
    #[tokio::test]
    async fn a_connection_the_provider_closes_after_its_answer_is_replaced() {
        let (base, accepted) = upstream(Upstream::AnnouncedClose);
        let client = client();
        for expected in 1..=3 {
            assert_eq!(body_of(&client, &base).await, expected.to_string());
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_connection_the_provider_closed_while_idle_is_replaced() {
        let (base, accepted) = upstream(Upstream::SilentClose);
        let client = client();
        for expected in 1..=3 {
            assert_eq!(body_of(&client, &base).await, expected.to_string());
            // Idle long enough for the close to arrive.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    /// The request went out and the connection closed under it: an idempotent one is sent
    /// again on a new connection, anything else fails.
    #[tokio::test]
    async fn an_idempotent_request_a_long_idle_connection_fails_under_is_sent_again() {
        for (method, retried) in [(http::Method::GET, true), (http::Method::POST, false)] {
            let (base, accepted) = upstream(Upstream::DropsSecond);
            let client = client();
            assert_eq!(body_of(&client, &base).await, "1");
            tokio::time::sleep(LONG_IDLE_FOR_TESTS).await;
            let mut request = get(&base);
            *request.method_mut() = method.clone();
            let answer = client.request(request).await;
            assert_eq!(answer.is_ok(), retried, "{method}");
            assert_eq!(accepted.load(Ordering::SeqCst), 1 + usize::from(retried));
        }
    }

    #[tokio::test]
    async fn a_body_left_unread_takes_its_connection_with_it() {
        let (base, accepted) = upstream(Upstream::KeepAlive);
        let client = client();
        let unread = client.request(get(&base)).await.unwrap();
        assert_eq!(
            idle_count(&origin_of(&base)),
            0,
            "pooled before its body was read"
        );
        drop(unread);
        assert_eq!(body_of(&client, &base).await, "2");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "the unread answer's connection was reused"
        );
    }

    #[tokio::test]
    async fn a_connection_that_streamed_its_request_body_is_not_pooled() {
        let (base, accepted) = upstream(Upstream::KeepAlive);
        let client = client();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(tx); // an upload that is already complete (and empty)
        let mut request = get(&base);
        *request.body_mut() = OutboundBody::Channel(rx);
        *request.method_mut() = http::Method::POST;
        request.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from_static("0"),
        );
        let answer = client.request(request).await.unwrap();
        answer.into_body().collect().await.unwrap();
        assert_eq!(idle_count(&origin_of(&base)), 0);
        assert_eq!(body_of(&client, &base).await, "2");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_host_header_names_the_origin() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let seen = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_owned());
            }
            let mut stream = stream;
            stream
                .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .unwrap();
            head
        });
        let answer = client()
            .request(get(&format!("http://{address}")))
            .await
            .unwrap();
        assert_eq!(answer.status(), 204);
        let head = seen.join().unwrap();
        assert_eq!(head[0], "GET /items HTTP/1.1", "origin-form request line");
        assert!(head.contains(&format!("host: {address}")), "{head:?}");
    }
}
