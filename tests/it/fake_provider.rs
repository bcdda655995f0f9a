//! A fake OAuth2 provider on a local port: issues codes bound to a PKCE challenge, answers
//! the token endpoint as RFC 6749 says, and counts token requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use futures_util::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Default)]
pub struct FakeState {
    /// code → PKCE challenge it was issued for.
    codes: HashMap<String, String>,
    pub token_requests: usize,
    pub refresh_requests: usize,
    /// refresh token → (family, still the live one of its family).
    refresh_tokens: HashMap<String, (String, bool)>,
    revoked_families: std::collections::HashSet<String>,
    pub revoked: Vec<String>,
    issued: usize,
    // Knobs.
    pub expires_in: u64,
    pub delay_ms: u64,
    pub omit_refresh_token: bool,
    /// Only the first refresh request waits this long (a stalled exchange).
    pub delay_first_refresh_ms: u64,
    /// Accept a rotated refresh token again instead of revoking its family.
    pub allow_reuse: bool,
    /// Answer the token endpoint with a 302 to this URL.
    pub redirect_token_to: Option<String>,
    /// Requests that reached `/elsewhere` (a redirect target that must never be hit).
    pub elsewhere_hits: usize,
    pub fail_with: Option<String>,
    /// Answer as some real providers do: no `token_type`, `expires_in` as a string, JSON
    /// labelled `text/plain`, and errors with a 200 status.
    pub quirks: bool,
    /// Calls that reached the fake API (`/api/…`), in order.
    pub api_requests: Vec<ApiRequest>,
    /// Access tokens the API answers 401 to (revoked early at the provider).
    pub rejected_tokens: std::collections::HashSet<String>,
}

/// One call the fake API received, as it arrived.
#[derive(Clone, Debug)]
pub struct ApiRequest {
    pub method: String,
    /// The raw request path.
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct FakeProvider {
    pub base: String,
    pub state: Arc<Mutex<FakeState>>,
    handle: actix_web::dev::ServerHandle,
}

impl FakeProvider {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            expires_in: 3600,
            ..FakeState::default()
        }));
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .route("/token", web::post().to(token))
                .route("/revoke", web::post().to(revoke))
                .route("/elsewhere", web::to(elsewhere))
                .route("/api/{tail:.*}", web::to(api))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let base = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            base,
            state,
            handle,
        }
    }

    pub fn host(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// The consent step: a code for the flow whose authorize URL carried this challenge.
    pub fn issue_code(&self, challenge: &str) -> String {
        let code = format!("code-{}", uuid::Uuid::new_v4());
        self.state
            .lock()
            .unwrap()
            .codes
            .insert(code.clone(), challenge.to_owned());
        code
    }

    pub fn token_requests(&self) -> usize {
        self.state.lock().unwrap().token_requests
    }

    pub fn refresh_requests(&self) -> usize {
        self.state.lock().unwrap().refresh_requests
    }

    pub fn set(&self, knobs: impl FnOnce(&mut FakeState)) {
        knobs(&mut self.state.lock().unwrap());
    }

    /// A custom provider definition pointing here.
    pub fn definition(&self) -> serde_json::Value {
        json!({
            "service_id": "fake", "name": "Fake", "unified_api": "crm", "auth_type": "oauth2",
            "oauth": {
                "authorize_url": format!("{}/authorize", self.base),
                "token_url": format!("{}/token", self.base),
                "revoke_url": format!("{}/revoke", self.base),
                "default_scopes": ["read", "write"], "scope_separator": ",", "pkce": true
            },
            "base_url": format!("{}/api", self.base),
            "injection": { "type": "bearer" }
        })
    }

    pub fn api_requests(&self) -> Vec<ApiRequest> {
        self.state.lock().unwrap().api_requests.clone()
    }

    pub fn elsewhere_hits(&self) -> usize {
        self.state.lock().unwrap().elsewhere_hits
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

async fn token(
    state: web::Data<Arc<Mutex<FakeState>>>,
    form: web::Form<HashMap<String, String>>,
    req: actix_web::HttpRequest,
) -> HttpResponse {
    let delay = state.lock().unwrap().delay_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    // A stalled exchange: only the first refresh request waits, without holding the lock.
    let first_delay = if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        std::mem::take(&mut state.lock().unwrap().delay_first_refresh_ms)
    } else {
        0
    };
    if first_delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(first_delay)).await;
    }
    let mut state = state.lock().unwrap();
    if let Some(to) = state.redirect_token_to.clone() {
        state.token_requests += 1;
        return HttpResponse::Found()
            .insert_header(("location", to))
            .finish();
    }
    // Client authentication: HTTP Basic (the default of RFC 6749 §2.3.1).
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !basic.starts_with("Basic ") {
        return HttpResponse::Unauthorized().json(json!({ "error": "invalid_client" }));
    }
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            state.token_requests += 1;
            let code = form.get("code").cloned().unwrap_or_default();
            let Some(challenge) = state.codes.remove(&code) else {
                return HttpResponse::BadRequest().json(json!({ "error": "invalid_grant" }));
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes()));
            if computed != challenge {
                return HttpResponse::BadRequest()
                    .json(json!({ "error": "invalid_grant", "error_description": "PKCE" }));
            }
            issue(&mut state, &code)
        }
        Some("refresh_token") => {
            state.refresh_requests += 1;
            if let Some(error) = state.fail_with.clone() {
                if state.quirks {
                    return HttpResponse::Ok().json(json!({ "error": error }));
                }
                return HttpResponse::BadRequest().json(json!({ "error": error }));
            }
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            let Some((family, live)) = state.refresh_tokens.get(&presented).cloned() else {
                return HttpResponse::BadRequest().json(json!({ "error": "invalid_grant" }));
            };
            if (!live && !state.allow_reuse) || state.revoked_families.contains(&family) {
                // Reuse of a rotated refresh token: the whole family dies (RFC 9700 §4.14.2).
                state.revoked_families.insert(family);
                return HttpResponse::BadRequest().json(json!({ "error": "invalid_grant" }));
            }
            state
                .refresh_tokens
                .insert(presented, (family.clone(), false));
            issue(&mut state, &family)
        }
        _ => HttpResponse::BadRequest().json(json!({ "error": "unsupported_grant_type" })),
    }
}

fn issue(state: &mut FakeState, family: &str) -> HttpResponse {
    state.issued += 1;
    let n = state.issued;
    let mut body = json!({
        "access_token": format!("at-{n}"), "token_type": "Bearer",
        "expires_in": state.expires_in, "scope": "read,write"
    });
    if !state.omit_refresh_token || n == 1 {
        let refresh = format!("rt-{n}");
        state
            .refresh_tokens
            .insert(refresh.clone(), (family.to_owned(), true));
        body["refresh_token"] = json!(refresh);
    }
    if state.quirks {
        body.as_object_mut().unwrap().remove("token_type");
        body["expires_in"] = json!(state.expires_in.to_string());
        return HttpResponse::Ok()
            .content_type("text/plain")
            .body(body.to_string());
    }
    HttpResponse::Ok().json(body)
}

async fn revoke(
    state: web::Data<Arc<Mutex<FakeState>>>,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let mut state = state.lock().unwrap();
    if let Some(token) = form.get("token") {
        state.revoked.push(token.clone());
    }
    HttpResponse::Ok().finish()
}

async fn elsewhere(state: web::Data<Arc<Mutex<FakeState>>>) -> HttpResponse {
    state.lock().unwrap().elsewhere_hits += 1;
    HttpResponse::Ok().json(json!({ "access_token": "stolen", "token_type": "Bearer" }))
}

/// The fake provider's API: records every call; `/api/redirect?to=…` answers 302,
/// `/api/limited` 429 (`Retry-After: 7`), `/api/busy?…` 429 (`Retry-After: 1`) to the first
/// call with each query string and an echo after, `/api/big?bytes=n` a body of n bytes, `/api/binary` non-UTF-8 bytes,
/// `/api/slow?ms=n` answers after n ms, `/api/stall?ms=n` sends its head and a first chunk at
/// once and the rest n ms later; anything else echoes the request as JSON (401 for a rejected
/// token).
async fn api(
    state: web::Data<Arc<Mutex<FakeState>>>,
    req: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let request = ApiRequest {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().unwrap_or("").to_owned(),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let query: HashMap<String, String> = url::form_urlencoded::parse(request.query.as_bytes())
        .into_owned()
        .collect();
    if matches!(request.path.as_str(), "/api/slow" | "/api/stall") {
        state.lock().unwrap().api_requests.push(request.clone());
        let wait: u64 = query.get("ms").and_then(|b| b.parse().ok()).unwrap_or(0);
        return delayed(
            request.path == "/api/slow",
            std::time::Duration::from_millis(wait),
        )
        .await;
    }
    let mut state = state.lock().unwrap();
    state.api_requests.push(request.clone());
    match request.path.as_str() {
        "/api/redirect" => {
            return HttpResponse::Found()
                .insert_header(("location", query.get("to").cloned().unwrap_or_default()))
                .finish();
        }
        "/api/limited" => {
            return HttpResponse::TooManyRequests()
                .insert_header(("retry-after", "7"))
                .json(json!({ "error": "slow down" }));
        }
        "/api/busy" => {
            let seen = state
                .api_requests
                .iter()
                .filter(|r| r.path == request.path && r.query == request.query)
                .count();
            if seen == 1 {
                return HttpResponse::TooManyRequests()
                    .insert_header(("retry-after", "1"))
                    .json(json!({ "error": "busy" }));
            }
        }
        "/api/big" => {
            let n: usize = query.get("bytes").and_then(|b| b.parse().ok()).unwrap_or(0);
            return HttpResponse::Ok().body(vec![b'x'; n]);
        }
        "/api/binary" => return HttpResponse::Ok().body(vec![0xff_u8, 0xfe, 0x00, 0x01]),
        // A provider that compresses when asked: JSON (or `bytes` x's), gzip'd; `broken`
        // says gzip and sends something else.
        "/api/gzipped" => {
            let body = match query.get("bytes").and_then(|b| b.parse().ok()) {
                Some(n) => vec![b'x'; n],
                None => br#"{"contacts":[{"name":"Ada"}]}"#.to_vec(),
            };
            let asked = request
                .header("accept-encoding")
                .is_some_and(|a| a.contains("gzip"));
            if !asked {
                return HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body);
            }
            let encoded = if query.contains_key("broken") {
                b"this is not gzip".to_vec()
            } else {
                use std::io::Write;
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(&body).unwrap();
                encoder.finish().unwrap()
            };
            return HttpResponse::Ok()
                .content_type("application/json")
                .insert_header(("content-encoding", "gzip"))
                .body(encoded);
        }
        // The provider's own request id, as many APIs send one.
        "/api/traced" => {
            return HttpResponse::Ok()
                .insert_header(("x-request-id", "provider-trace-7"))
                .insert_header(("keyway-request-id", "forged"))
                .finish();
        }
        _ => {}
    }
    let bearer = request
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    if state.rejected_tokens.contains(bearer) {
        return HttpResponse::Unauthorized().json(json!({ "error": "invalid_token" }));
    }
    HttpResponse::Ok()
        .insert_header(("set-cookie", "provider_session=secret"))
        .insert_header(("x-upstream", "fake"))
        .json(json!({
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "body": String::from_utf8_lossy(&request.body),
            "body_len": request.body.len(),
        }))
}

/// `/api/slow`: the whole answer after `wait`; `/api/stall`: the head and a first chunk at
/// once, the rest after `wait`.
async fn delayed(whole: bool, wait: std::time::Duration) -> HttpResponse {
    if whole {
        tokio::time::sleep(wait).await;
        return HttpResponse::Ok().body("late");
    }
    let chunks = futures_util::stream::iter([false, true]).then(move |late| async move {
        if late {
            tokio::time::sleep(wait).await;
        }
        Ok::<_, std::io::Error>(web::Bytes::from_static(if late {
            b"second"
        } else {
            b"first"
        }))
    });
    // Not `streaming`, which would add a Content-Type: this answer has none, like some APIs'.
    HttpResponse::Ok().body(actix_web::body::BodyStream::new(chunks))
}
