//! One consumer's link to one integration. Credentials are sealed; deleted connections stay
//! as tombstones with their credentials wiped.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "connections")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub application_id: Uuid,
    pub consumer_ref: Option<Uuid>,
    pub consumer_id: String,
    pub integration_id: Option<Uuid>,
    pub service_id: String,
    pub auth_type: String,
    /// added | authorized | callable | invalid | revoked | deleted
    pub state: String,
    /// production | sandbox
    pub environment: String,
    pub enabled: bool,
    /// Every required setting is present.
    pub configured: bool,
    pub settings: Json,
    pub metadata: Json,
    pub configuration: Json,
    pub granted_scopes: Json,
    /// Sealed (`crypto::envelope`), bound to this row and application.
    pub credentials: Option<Vec<u8>>,
    pub credentials_key_id: Option<i32>,
    pub expires_at: Option<DateTimeUtc>,
    pub last_refreshed_at: Option<DateTimeUtc>,
    pub next_refresh_at: Option<DateTimeUtc>,
    pub refresh_failures: i32,
    /// Bumped on every write; refresh writes are fenced on it.
    pub version: i64,
    pub user_email: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
    pub deleted_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
