//! Plain HTTP routes beside GraphQL, and the route table.

mod graphql;
mod health;
mod home;
mod oauth;
pub mod request_id;

use actix_web::{HttpResponse, web};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home::home))
        .route("/graphql", web::post().to(graphql::post))
        .route("/graphql", web::get().to(graphql::graphiql))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/oauth/callback", web::get().to(oauth::callback))
        .route("/connect/{integration_id}", web::get().to(oauth::connect))
        .default_service(web::to(not_found));
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .json(serde_json::json!({ "error": { "code": "NOT_FOUND", "message": "no such route" } }))
}
