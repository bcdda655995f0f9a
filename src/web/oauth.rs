//! `GET /oauth/callback` (the one redirect URI registered at every provider) and the
//! Appnigma-style browser link `GET /connect/{integration_id}?public_key=…`.
//!
//! Both answer with `Referrer-Policy: no-referrer` and `Cache-Control: no-store`: the URLs
//! carry codes and states that must not leak to the next page or a cache.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, REFERRER_POLICY};
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::error::Error;
use crate::ids::{self, NodeType};
use crate::service::api_keys;
use crate::service::connections::{Environment, IntegrationRef};
use crate::service::oauth::{self, CallbackParams, Outcome, StartFlow};
use crate::state::AppState;

pub async fn callback(
    state: web::Data<AppState>,
    query: web::Query<CallbackParams>,
) -> HttpResponse {
    match oauth::callback(&state.deps(), &state.http, query.into_inner()).await {
        Ok(Outcome::Redirect(to)) => redirect(&to),
        Ok(Outcome::Rejected(why)) => page(StatusCode::BAD_REQUEST, why),
        Err(err) => {
            err.log();
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the connection could not be completed",
            )
        }
    }
}

#[derive(Deserialize)]
pub struct ConnectQuery {
    public_key: String,
    consumer_id: String,
    redirect_uri: Option<String>,
    scopes: Option<String>,
    environment: Option<String>,
}

/// A public key may only start a flow that creates a **new** connection for its own
/// application's integration: it can never read, pick or overwrite a connection.
pub async fn connect(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ConnectQuery>,
) -> HttpResponse {
    let result = async {
        let integration =
            ids::decode_as(NodeType::Integration, &async_graphql::ID(path.into_inner()))?;
        let scope = api_keys::scope_of_public_key(&state.db, &query.public_key).await?;
        let environment = match query.environment.as_deref() {
            None | Some("production") => Environment::Production,
            Some("sandbox") => Environment::Sandbox,
            Some(_) => return Err(Error::bad_input("environment is production or sandbox")),
        };
        let start = StartFlow {
            consumer_id: query.consumer_id.clone(),
            integration: IntegrationRef::Id(integration),
            redirect_uri: query.redirect_uri.clone(),
            scopes: query.scopes.as_ref().map(|s| {
                s.split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
            environment,
            settings: None,
            connection_id: None,
        };
        oauth::start(&state.deps(), &scope, start).await
    }
    .await;
    match result {
        Ok(started) => redirect(&started.authorize_url),
        Err(err) => {
            err.log();
            page(err.status(), &err.message())
        }
    }
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((LOCATION, to))
        .insert_header((REFERRER_POLICY, "no-referrer"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .finish()
}

/// A small page for a person whose browser landed here; the message is never secret.
fn page(status: StatusCode, message: &str) -> HttpResponse {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((REFERRER_POLICY, "no-referrer"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(format!(
            "<!doctype html><meta charset=utf-8><title>Keyway</title><h1>Connection not completed</h1><p>{escaped}</p>"
        ))
}

#[derive(Deserialize)]
pub struct AuthorizeQuery {
    exp: i64,
    sig: String,
}

/// `GET /oauth/authorize/{connection_id}?exp=…&sig=…`: a connection's signed `authorizeUrl`.
pub async fn authorize(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<AuthorizeQuery>,
) -> HttpResponse {
    let result = async {
        let id = ids::decode_as(NodeType::Connection, &async_graphql::ID(path.into_inner()))?;
        oauth::open_authorize_link(&state.deps(), id, query.exp, &query.sig).await
    }
    .await;
    match result {
        Ok(started) => redirect(&started.authorize_url),
        Err(err) => {
            err.log();
            page(err.status(), &err.message())
        }
    }
}
