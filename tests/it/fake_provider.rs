//! A fake OAuth2 provider on a local port: issues codes bound to a PKCE challenge, answers
//! the token endpoint as RFC 6749 says, and counts token requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Default)]
pub struct FakeState {
    /// code → PKCE challenge it was issued for.
    codes: HashMap<String, String>,
    pub token_requests: usize,
}

pub struct FakeProvider {
    pub base: String,
    pub state: Arc<Mutex<FakeState>>,
    handle: actix_web::dev::ServerHandle,
}

impl FakeProvider {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .route("/token", web::post().to(token))
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

    /// A custom provider definition pointing here.
    pub fn definition(&self) -> serde_json::Value {
        json!({
            "service_id": "fake", "name": "Fake", "unified_api": "crm", "auth_type": "oauth2",
            "oauth": {
                "authorize_url": format!("{}/authorize", self.base),
                "token_url": format!("{}/token", self.base),
                "default_scopes": ["read", "write"], "scope_separator": ",", "pkce": true
            },
            "base_url": format!("{}/api", self.base),
            "injection": { "type": "bearer" }
        })
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
    let mut state = state.lock().unwrap();
    state.token_requests += 1;
    // Client authentication: HTTP Basic (the default of RFC 6749 §2.3.1).
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !basic.starts_with("Basic ") {
        return HttpResponse::Unauthorized().json(json!({ "error": "invalid_client" }));
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return HttpResponse::BadRequest().json(json!({ "error": "unsupported_grant_type" }));
    }
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
    HttpResponse::Ok().json(json!({
        "access_token": format!("at-{code}"), "token_type": "Bearer", "expires_in": 3600,
        "refresh_token": format!("rt-{code}"), "scope": "read,write"
    }))
}
