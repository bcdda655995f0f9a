//! `GET /metrics`: this replica's Prometheus metrics (`crate::metrics`).

use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::auth::bearer::bearer_token;
use crate::crypto::tokens::{hash_secret, hashes_match};
use crate::error::Error;
use crate::state::AppState;

/// The text exposition format's media type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if let Some(expected) = &state.config.metrics_token {
        let given = bearer_token(
            req.headers()
                .get(AUTHORIZATION)
                .and_then(|h| h.to_str().ok()),
        );
        let Some(given) = given else {
            return Error::Unauthenticated.to_http();
        };
        // Digests compared in constant time: neither length nor content leaks through timing.
        if !hashes_match(&hash_secret(given), &hash_secret(expected.expose().trim())) {
            return Error::InvalidToken.to_http();
        }
    }
    match state.metrics.render(&state.db) {
        Ok(text) => HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, TEXT_FORMAT))
            .body(text),
        Err(err) => err.to_http(),
    }
}
