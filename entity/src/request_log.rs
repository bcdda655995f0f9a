//! One call through Keyway (GraphQL, proxy, vault pages), in Apideck's log model.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "request_logs")]
pub struct Model {
    /// UUIDv7: in time order.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Keyed by application first: every read is one application's rows, newest first.
    #[sea_orm(primary_key, auto_increment = false)]
    pub application_id: Uuid,
    pub request_id: Option<String>,
    /// `unify` (the GraphQL API), `proxy` or `vault`.
    pub api_style: String,
    pub operation: String,
    pub http_method: String,
    /// The path only: query strings are never logged.
    pub path: String,
    pub base_url: Option<String>,
    pub status_code: i32,
    pub success: bool,
    /// Total time in Keyway, in milliseconds.
    pub duration_ms: f64,
    /// Time waiting for the provider, in milliseconds.
    pub latency_ms: Option<f64>,
    pub service_id: Option<String>,
    pub unified_api: Option<String>,
    pub consumer_id: Option<String>,
    pub connection_id: Option<Uuid>,
    pub source_ip: Option<String>,
    pub error_message: Option<String>,
    pub sandbox: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
