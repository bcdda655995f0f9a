//! Rows that the fields of one request read many times: each is read once per request. A page
//! of 200 connections asking for `missingScopes` (and `needsReauthorization`) read their
//! integration once per field per row, 400 queries; the page's rows resolve at once, so a
//! row being read is awaited by the others rather than read again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use entity::integration::Model;
use sea_orm::DatabaseConnection;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::auth::Tenancy;
use crate::error::Result;
use crate::service::integrations;

/// Integrations by id (and the tenancy they were read for), for one request (`Request::data`).
#[derive(Default)]
pub struct Integrations(Mutex<HashMap<(Tenancy, Uuid), Read>>);

/// One integration's read: done, or under way for whichever field asked first.
type Read = Arc<OnceCell<Model>>;

impl Integrations {
    /// The integration `id` of `tenancy` (as `integrations::get_in`), read at most once. A read
    /// that fails is not kept: the next field tries again.
    pub async fn get_in(
        &self,
        db: &DatabaseConnection,
        tenancy: Tenancy,
        id: Uuid,
    ) -> Result<Model> {
        let cell = self
            .0
            .lock()
            .ok()
            .map(|mut cells| cells.entry((tenancy, id)).or_default().clone());
        let Some(cell) = cell else {
            return integrations::get_in(db, tenancy, id).await;
        };
        let integration = cell
            .get_or_try_init(|| Box::pin(integrations::get_in(db, tenancy, id)))
            .await?;
        Ok(integration.clone())
    }
}
