//! A webhook receiver on a local port (a third party): records every request and answers
//! with the statuses it is told to, in turn (200 once they run out).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
pub struct ReceiverState {
    pub received: Vec<Received>,
    pub answers: VecDeque<u16>,
}

pub struct Receiver {
    pub url: String,
    pub state: Arc<Mutex<ReceiverState>>,
    handle: actix_web::dev::ServerHandle,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(addr: &str) -> Self {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .bind(addr)
        .unwrap();
        let host = server.addrs()[0].to_string();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://{host}/hook"),
            state,
            handle,
        }
    }

    pub fn answer(&self, statuses: &[u16]) {
        self.state.lock().unwrap().answers.extend(statuses);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Waits until `n` requests arrived (up to `secs` seconds).
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Received> {
        let deadline = Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let received = self.received();
            if received.len() >= n || Instant::now() > deadline {
                return received;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

async fn receive(
    state: web::Data<Arc<Mutex<ReceiverState>>>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let mut state = state.lock().unwrap();
    state.received.push(Received {
        at: Instant::now(),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
    });
    let status = state.answers.pop_front().unwrap_or(200);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
}

/// Standard Webhooks verification, written from the specification and sharing no code with
/// Keyway's signer: HMAC-SHA256 keyed with the base64 part of `whsec_…`, over
/// `id.timestamp.body`; the header holds space-separated `v1,<base64>` signatures.
pub fn verify(secret: &str, received: &Received) -> bool {
    use base64::Engine;
    use hmac::Mac;
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut signed = Vec::new();
    signed.extend_from_slice(received.header("webhook-id").as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(received.header("webhook-timestamp").as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(&received.body);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(&signed);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    received
        .header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}
