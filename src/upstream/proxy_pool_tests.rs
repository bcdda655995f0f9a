//! The proxy pool against a raw local upstream that counts the connections it accepts.

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

/// A raw upstream's base URL, and the connections it has accepted and seen closed.
struct Served {
    base: String,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

/// Counts one closed connection when its thread ends, however it ends.
struct CountsClose(Arc<AtomicUsize>);

impl Drop for CountsClose {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A raw HTTP/1.1 upstream on a local port: each answer's body is the number of requests
/// it has seen so far, 10 bytes long.
fn upstream(mode: Upstream) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (counted, closes) = (accepted.clone(), closed.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let first_connection = counted.fetch_add(1, Ordering::SeqCst) == 0;
            let requests = requests.clone();
            let closes = CountsClose(closes.clone());
            std::thread::spawn(move || {
                let _closes = closes;
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
                    let answer =
                        format!("HTTP/1.1 200 OK\r\n{close}content-length: 10\r\n\r\n{seen:>10}");
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
    Served {
        base,
        accepted,
        closed,
    }
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

/// No call comes for the connection: the thread's sweeper closes it once it has been idle
/// past the timeout (not before), forgets its origin, and stops.
#[tokio::test]
async fn the_sweeper_closes_connections_idle_past_the_timeout() {
    let Served { base, closed, .. } = upstream(Upstream::KeepAlive);
    assert_eq!(body_of(&client(), &base).await, "1");
    assert!(SWEEPING.get());
    tokio::time::pause();
    tokio::time::advance(SWEEP_EVERY).await;
    settle(&closed, 1).await;
    assert_eq!(idle_count(&origin_of(&base)), 1, "closed before its time");
    assert_eq!(closed.load(Ordering::SeqCst), 0);

    tokio::time::advance(IDLE_TIMEOUT).await;
    settle(&closed, 1).await;
    assert_eq!(
        closed.load(Ordering::SeqCst),
        1,
        "the upstream saw the close"
    );
    assert_eq!(origins_held(), 0);
    assert!(
        !SWEEPING.get(),
        "the sweeper runs only while connections are idle"
    );
}

/// Lets this thread's tasks run (time is paused) while the upstream's threads see what they
/// do, until `closed` reaches `count` or a second has passed.
async fn settle(closed: &AtomicUsize, count: usize) {
    for _ in 0..200 {
        tokio::task::yield_now().await;
        if closed.load(Ordering::SeqCst) >= count {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test]
async fn a_connection_is_reused_once_its_answer_is_read() {
    let Served { base, accepted, .. } = upstream(Upstream::KeepAlive);
    let client = client();
    for expected in 1..=5 {
        assert_eq!(body_of(&client, &base).await, expected.to_string());
        assert_eq!(idle_count(&origin_of(&base)), 1);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection for all");
}

/// A provider closing after each answer, whether it says so (`Connection: close`) or
/// closes while the connection sits idle: the client learns of it when it puts the
/// connection back, takes it out, or waits for it to be ready, and the next call opens
/// another without failing.
#[tokio::test]
async fn a_connection_the_provider_closes_is_replaced() {
    // Silent closes are seen only once they arrive: the calls pause between them.
    for (mode, pause) in [
        (Upstream::AnnouncedClose, Duration::ZERO),
        (Upstream::SilentClose, Duration::from_millis(200)),
    ] {
        let Served { base, accepted, .. } = upstream(mode);
        let client = client();
        for expected in 1..=3 {
            assert_eq!(body_of(&client, &base).await, expected.to_string());
            tokio::time::sleep(pause).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }
}

/// The request went out and the connection closed under it: an idempotent one is sent
/// again on a new connection, anything else fails.
#[tokio::test]
async fn an_idempotent_request_a_long_idle_connection_fails_under_is_sent_again() {
    for (method, retried) in [(http::Method::GET, true), (http::Method::POST, false)] {
        let Served { base, accepted, .. } = upstream(Upstream::DropsSecond);
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
    let Served { base, accepted, .. } = upstream(Upstream::KeepAlive);
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
    let Served { base, accepted, .. } = upstream(Upstream::KeepAlive);
    let client = client();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    drop(tx); // an upload that is already complete (and empty)
    let mut request = get(&base);
    *request.body_mut() = OutboundBody::Channel {
        chunks: rx,
        length: None,
    };
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
