//! Opens N graphql-transport-ws subscriptions to a running Keyway, then creates connections
//! one at a time and measures, for every event, the time from the mutation's answer to each
//! subscriber's receipt (fan-out latency). Prints the server's RSS with all subscriptions
//! open (from /proc), and p50 / p99 / max of the latencies. Used by `bench/events.sh`.
//!
//!   subscribers <base http url> <secret key> <server pid> <subscribers> <events> [first]
//!
//! `first` numbers the events' consumers (`sub-bench-<first + n>`), so that repeated runs
//! against one server create new connections.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let (base, key, pid) = (args[1].clone(), args[2].clone(), args[3].clone());
    let count: usize = args[4].parse().unwrap();
    let events: usize = args[5].parse().unwrap();
    let first: usize = args.get(6).map_or(0, |a| a.parse().unwrap());
    let ws_url = format!("{}/graphql/ws", base.replace("http://", "ws://"));
    let mut ready = Vec::new();
    let mut readers = Vec::new();
    let started = Instant::now();
    for _ in 0..count {
        let mut request = ws_url.clone().into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        // tungstenite's default 128 KiB read buffer is zeroed on every read: with 10,000
        // sockets that memset, not the server, would dominate the measurement.
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let (mut socket, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), true)
                .await
                .unwrap();
        socket
            .send(Message::text(
                json!({ "type": "connection_init", "payload": { "authorization": key } })
                    .to_string(),
            ))
            .await
            .unwrap();
        socket.next().await.unwrap().unwrap();
        socket
            .send(Message::text(json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { connectionEvents(filter: {types: [\"connection.created\"]}) { consumerId } }" } }).to_string()))
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        ready.push(rx);
        // Each reader keeps its own receipts (no lock shared by the client's threads on every
        // message); they are collected after the last event.
        readers.push(tokio::spawn(async move {
            let _ = tx.send(());
            let mut received: Vec<(usize, Instant)> = Vec::new();
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let at = Instant::now();
                // A substring search, not a JSON parse: the client's CPU is the server's loss.
                if let Some(event) = text
                    .split_once("sub-bench-")
                    .and_then(|(_, rest)| rest.split('"').next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| n.checked_sub(first))
                {
                    received.push((event, at));
                    if received.len() == events {
                        break;
                    }
                }
            }
            // The socket stays open until every reader is collected: closing it now would
            // put 10,000 close handshakes beside the last event's fan-out.
            (received, socket)
        }));
    }
    for rx in ready {
        rx.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap()
        .to_owned();
    println!(
        "subscriptions open: {count} in {:.1} s; server {rss}",
        started.elapsed().as_secs_f64()
    );

    let client = reqwest::Client::new();
    let cpu_before = (cpu_ms(&pid), cpu_ms("self"));
    let mut sent = Vec::new();
    for event in 0..events {
        let body = json!({ "query": format!("mutation {{ createConnection(input: {{consumerId: \"sub-bench-{}\", serviceId: \"stripe\", credentials: {{fields: {{api_key: \"sk_test_bench\"}}}}}}) {{ id }} }}", first + event) });
        let response = client
            .post(format!("{base}/graphql"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        sent.push(Instant::now());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut received = Vec::new();
    let mut sockets = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    for reader in readers {
        match tokio::time::timeout_at(deadline, reader).await {
            Ok(Ok((mine, socket))) => {
                received.extend(mine);
                sockets.push(socket);
            }
            _ => eprintln!("a subscriber did not receive every event in time"),
        }
    }
    let cpu_after = (cpu_ms(&pid), cpu_ms("self"));
    let mut latencies: Vec<f64> = received
        .iter()
        .map(|(event, at)| at.saturating_duration_since(sent[*event]).as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "fan-out: {} of {} deliveries; latency after commit min {:.1} ms, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        count * events,
        pick(0.0),
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
    // Both sides share the machine's cores: what each spent per delivery says whose work
    // the latency is made of.
    let per_delivery = |ms: f64| ms * 1000.0 / latencies.len().max(1) as f64;
    println!(
        "fan-out CPU per delivery: server {:.1} µs, load client {:.1} µs",
        per_delivery(cpu_after.0 - cpu_before.0),
        per_delivery(cpu_after.1 - cpu_before.1)
    );
}

/// User + system CPU time of a process so far, in milliseconds (from /proc, in 10 ms ticks:
/// fine over the whole fan-out).
fn cpu_ms(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state.
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
    (ticks(11) + ticks(12)) * 10.0
}
