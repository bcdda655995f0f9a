//! An application's API key: a secret (`kw_sk_…`, stored as a SHA-256 hash only) and its
//! non-secret public twin (`kw_pk_…`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub application_id: Uuid,
    pub integration_id: Option<Uuid>,
    pub label: String,
    #[sea_orm(unique)]
    pub secret_hash: Vec<u8>,
    pub secret_prefix: String,
    #[sea_orm(unique)]
    pub public_key: String,
    pub created_at: DateTimeUtc,
    pub last_used_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
