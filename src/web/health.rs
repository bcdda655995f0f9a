//! Liveness and readiness probes.

use actix_web::{HttpResponse, web};

use crate::state::AppState;
use crate::store;

/// The process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The database answers and the schema is current.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match store::readiness(&state.db).await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(reason) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "unavailable", "reason": reason })),
    }
}
