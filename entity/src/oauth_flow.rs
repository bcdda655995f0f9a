//! One pending OAuth authorization, found by the SHA-256 of its `state`; single use.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_flows")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub state_hash: Vec<u8>,
    pub application_id: Uuid,
    pub integration_id: Uuid,
    /// Set when re-authorizing an existing connection; a new one is created otherwise.
    pub connection_id: Option<Uuid>,
    pub consumer_id: String,
    pub redirect_uri: String,
    pub scopes: Json,
    pub environment: String,
    pub settings: Json,
    /// Sealed (`crypto::envelope`), bound to this row and application.
    pub pkce_verifier: Option<Vec<u8>>,
    pub pkce_verifier_key_id: Option<i32>,
    /// The authorization server the flow went to (mix-up defence, RFC 9207).
    pub issuer: String,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub used_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
