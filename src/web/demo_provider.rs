//! HTTP face of the demo provider (`crate::demo`): consent page, token and revocation
//! endpoints, and a tiny bearer-protected JSON API.

use std::collections::HashMap;

use actix_web::http::header::{AUTHORIZATION, CACHE_CONTROL, LOCATION};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use base64::Engine;
use serde_json::json;

use crate::demo::{DemoProvider, OAuthError, TokenSet};
use crate::state::AppState;

#[derive(Template, WebTemplate)]
#[template(path = "demo_consent.html")]
pub struct ConsentPage {
    client_id: String,
    redirect_uri: String,
    scope: String,
    scopes: Vec<String>,
    state: String,
    code_challenge: String,
}

type Form = web::Form<HashMap<String, String>>;
type Query = web::Query<HashMap<String, String>>;

fn demo(state: &AppState) -> Option<&DemoProvider> {
    state.demo.as_deref()
}

pub async fn consent(state: web::Data<AppState>, query: Query) -> HttpResponse {
    if demo(&state).is_none() {
        return HttpResponse::NotFound().finish();
    }
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code"
        || get("client_id").is_empty()
        || get("redirect_uri").is_empty()
    {
        return HttpResponse::BadRequest()
            .body("response_type=code, client_id and redirect_uri are required");
    }
    if !query.contains_key("code_challenge") || get("code_challenge_method") != "S256" {
        return HttpResponse::BadRequest().body("this provider requires PKCE with S256");
    }
    let scope = get("scope");
    let page = ConsentPage {
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        scopes: scope.split_whitespace().map(str::to_owned).collect(),
        scope,
        state: get("state"),
        code_challenge: get("code_challenge"),
    };
    match page.render() {
        Ok(html) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

pub async fn decide(state: web::Data<AppState>, form: Form) -> HttpResponse {
    let Some(demo) = demo(&state) else {
        return HttpResponse::NotFound().finish();
    };
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let Ok(mut back) = url::Url::parse(&get("redirect_uri")) else {
        return HttpResponse::BadRequest().body("redirect_uri is not a URL");
    };
    {
        let mut query = back.query_pairs_mut();
        if get("decision") == "approve" {
            let challenge = Some(get("code_challenge")).filter(|c| !c.is_empty());
            let code = demo.issue_code(
                &get("client_id"),
                &get("redirect_uri"),
                &get("scope"),
                challenge.as_deref(),
            );
            query.append_pair("code", &code);
        } else {
            query.append_pair("error", "access_denied");
        }
        query.append_pair("state", &get("state"));
        // RFC 9207: say who is answering, so the client can detect mix-ups.
        query.append_pair("iss", &state.config.public_base_url());
    }
    HttpResponse::Found()
        .insert_header((LOCATION, back.to_string()))
        .finish()
}

pub async fn token(state: web::Data<AppState>, req: HttpRequest, form: Form) -> HttpResponse {
    let Some(demo) = demo(&state) else {
        return HttpResponse::NotFound().finish();
    };
    let Some(client_id) = client_id(&req, &form) else {
        return oauth_error("invalid_client");
    };
    let get = |k: &str| form.get(k).map(String::as_str);
    let result = match get("grant_type") {
        Some("authorization_code") => demo.exchange_code(
            &client_id,
            get("code").unwrap_or_default(),
            get("redirect_uri").unwrap_or_default(),
            get("code_verifier"),
        ),
        Some("refresh_token") => demo.refresh(&client_id, get("refresh_token").unwrap_or_default()),
        _ => Err("unsupported_grant_type"),
    };
    match result {
        Ok(TokenSet {
            access_token,
            refresh_token,
            expires_in,
            scope,
        }) => HttpResponse::Ok()
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(json!({
                "access_token": access_token, "token_type": "Bearer", "expires_in": expires_in,
                "refresh_token": refresh_token, "scope": scope,
            })),
        Err(error) => oauth_error(error),
    }
}

pub async fn revoke(state: web::Data<AppState>, form: Form) -> HttpResponse {
    if let (Some(demo), Some(token)) = (demo(&state), form.get("token")) {
        demo.revoke(token);
    }
    HttpResponse::Ok().finish()
}

pub async fn me(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match bearer(&state, &req) {
        Some(grant) => HttpResponse::Ok().json(json!({
            "id": format!("demo-user-{grant}"), "name": "Dana Demo", "email": "dana@demo.example",
        })),
        None => unauthorized(),
    }
}

pub async fn contacts(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match bearer(&state, &req) {
        Some(_) => HttpResponse::Ok().json(json!({ "data": [
            { "id": 1, "name": "Ada Lovelace", "email": "ada@demo.example" },
            { "id": 2, "name": "Alan Turing", "email": "alan@demo.example" },
        ]})),
        None => unauthorized(),
    }
}

fn bearer(state: &AppState, req: &HttpRequest) -> Option<String> {
    let token = crate::auth::bearer::bearer_token(
        req.headers()
            .get(AUTHORIZATION)
            .and_then(|h| h.to_str().ok()),
    )?;
    demo(state)?.check_access(token)
}

/// HTTP Basic (RFC 6749 §2.3.1) or `client_id` in the body; any non-empty secret is accepted.
fn client_id(req: &HttpRequest, form: &Form) -> Option<String> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    if let Some(encoded) = header.and_then(|h| h.strip_prefix("Basic ")) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        let id = url::form_urlencoded::parse(format!("x={id}").as_bytes())
            .next()?
            .1
            .into_owned();
        return (!id.is_empty() && !secret.is_empty()).then_some(id);
    }
    let id = form.get("client_id")?;
    form.get("client_secret").filter(|s| !s.is_empty())?;
    Some(id.clone())
}

fn oauth_error(error: OAuthError) -> HttpResponse {
    let status = if error == "invalid_client" {
        actix_web::http::StatusCode::UNAUTHORIZED
    } else {
        actix_web::http::StatusCode::BAD_REQUEST
    };
    HttpResponse::build(status)
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(json!({ "error": error }))
}

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header(("WWW-Authenticate", "Bearer error=\"invalid_token\""))
        .json(json!({ "error": "invalid_token" }))
}
