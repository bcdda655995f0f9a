//! Where an application wants its events delivered.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub application_id: Uuid,
    pub url: String,
    pub description: Option<String>,
    /// A JSON array of event types; empty means every type.
    pub event_types: Json,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Sealed: the signing secret(s), the previous one kept during a rotation's overlap.
    pub secret: Vec<u8>,
    pub secret_key_id: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
