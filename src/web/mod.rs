//! Plain HTTP routes beside GraphQL, and the route table.

pub mod client_ip;
mod demo_provider;
mod graphiql;
mod graphql;
mod graphql_answer;
mod health;
mod home;
mod logged_body;
mod methods;
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
        .service(methods::get_only("/graphql/ws", ws::upgrade))
        .service(
            web::scope("")
                .wrap(Compress::default())
                .configure(compressed),
        )
        .default_service(web::to(not_found));
}

fn compressed(cfg: &mut web::ServiceConfig) {
    cfg.service(methods::get("/", home::home))
        .service(methods::get_and_post(
            "/graphql",
            graphiql::graphiql,
            graphql::post,
        ))
        .service(methods::get("/healthz", health::healthz))
        .service(methods::get("/readyz", health::readyz))
        .service(methods::get("/metrics", metrics::metrics))
        // Steps of an OAuth flow act on GET (a callback spends its single-use state): a HEAD,
        // which a link scanner may send, must not.
        .service(methods::get_only("/oauth/callback", oauth::callback))
        .service(methods::get_only(
            "/oauth/authorize/{connection_id}",
            oauth::authorize,
        ))
        .service(methods::get_only(
            "/connect/{integration_id}",
            oauth::connect,
        ))
        .service(
            web::scope("/demo-provider")
                .service(methods::get_and_post(
                    "/authorize",
                    demo_provider::consent,
                    demo_provider::decide,
                ))
                .service(methods::post("/token", demo_provider::token))
                .service(methods::post("/revoke", demo_provider::revoke))
                .service(methods::get("/api/me", demo_provider::me))
                .service(methods::get("/api/contacts", demo_provider::contacts)),
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
