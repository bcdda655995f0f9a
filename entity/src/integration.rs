//! An application's use of one provider: its OAuth client. The client secret is sealed.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "integrations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub application_id: Uuid,
    pub service_id: String,
    pub client_id: Option<String>,
    /// Sealed (`crypto::envelope`), bound to this row and application.
    pub client_secret: Option<Vec<u8>>,
    pub client_secret_key_id: Option<i32>,
    /// JSON array of scope strings.
    pub scopes: Json,
    pub enabled: bool,
    /// A provider definition of its own, for APIs outside the catalog.
    pub custom_provider: Option<Json>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
