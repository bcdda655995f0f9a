//! Plain HTTP routes beside GraphQL, and the route table.

pub mod client_ip;
mod demo_provider;
mod graphiql;
mod graphql;
mod graphql_answer;
mod health;
mod home;
mod logged_body;
mod metrics;
mod oauth;
pub mod proxy;
pub mod request_id;
mod unread_body;
mod ws;

pub use ws::SharedSubscriptions;

use actix_web::middleware::Compress;
use actix_web::{HttpResponse, web};

pub fn routes(cfg: &mut web::ServiceConfig) {
    // First, and a scope (a plain prefix test) rather than a `{path:.*}` pattern: the proxy
    // parses its own path, and routing by regular expression costs the hot path.
    // Neither the proxy (the provider's bytes, passed as they came) nor WebSocket frames are
    // compressed; everything else may be.
    cfg.service(web::scope("/proxy").default_service(web::to(proxy::proxy)))
        .route("/graphql/ws", web::get().to(ws::upgrade))
        .service(
            web::scope("")
                .wrap(Compress::default())
                .configure(compressed),
        )
        .default_service(web::to(not_found));
}

fn compressed(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home::home))
        .route("/graphql", web::post().to(graphql::post))
        .route("/graphql", web::get().to(graphiql::graphiql))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/oauth/callback", web::get().to(oauth::callback))
        .route(
            "/oauth/authorize/{connection_id}",
            web::get().to(oauth::authorize),
        )
        .route("/connect/{integration_id}", web::get().to(oauth::connect))
        .service(
            web::scope("/demo-provider")
                .route("/authorize", web::get().to(demo_provider::consent))
                .route("/authorize", web::post().to(demo_provider::decide))
                .route("/token", web::post().to(demo_provider::token))
                .route("/revoke", web::post().to(demo_provider::revoke))
                .route("/api/me", web::get().to(demo_provider::me))
                .route("/api/contacts", web::get().to(demo_provider::contacts)),
        );
}

/// The principal of a request's `Authorization: Bearer …` header (401 when absent or wrong).
async fn authenticate_request(
    state: &crate::state::AppState,
    req: &actix_web::HttpRequest,
) -> crate::error::Result<crate::auth::Principal> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    match crate::auth::bearer::bearer_token(header) {
        Some(token) => {
            crate::auth::bearer::authenticate(&state.db, &state.last_used, &state.principals, token)
                .await
        }
        None => Err(crate::error::Error::Unauthenticated),
    }
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .json(serde_json::json!({ "error": { "code": "NOT_FOUND", "message": "no such route" } }))
}
