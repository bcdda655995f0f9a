//! Rows that the fields of one request read many times: each is read once per request. A page
//! of 200 connections asking for `missingScopes` (and `needsReauthorization`) read their
//! integration once per field per row, 400 queries; the page's rows resolve at once, so a
//! row being read is awaited by the others rather than read again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use entity::connection::Model as ConnectionModel;
use entity::integration::Model;
use sea_orm::DatabaseConnection;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::auth::{AppScope, Tenancy};
use crate::error::Result;
use crate::service::usage::request_counts::{self, RequestCounts};
use crate::service::{connections, integrations};

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

/// What the fields of the consumers a page listed read, for one request (`Request::data`). A
/// page of 200 consumers asking each for its `connections` (or `services`) or its
/// `requestCounts` ran 200 queries; the page offers its consumers here, and the first of them
/// to ask reads all of theirs in one query, which the others await.
#[derive(Default)]
pub struct ConsumerPages(Mutex<HashMap<(Uuid, String), Arc<PageRead>>>);

/// One page's consumers and, once read, their connections and request counts.
struct PageRead {
    consumers: Vec<String>,
    connections: OnceCell<HashMap<String, Vec<ConnectionModel>>>,
    counts: OnceCell<HashMap<String, RequestCounts>>,
}

impl ConsumerPages {
    /// The consumers of one page of `application`, read together when one of them asks.
    pub fn offer(&self, application: Uuid, consumers: Vec<String>) {
        let Ok(mut pages) = self.0.lock() else {
            return;
        };
        let keys: Vec<(Uuid, String)> =
            consumers.iter().map(|c| (application, c.clone())).collect();
        let page = Arc::new(PageRead {
            consumers,
            connections: OnceCell::new(),
            counts: OnceCell::new(),
        });
        for key in keys {
            pages.insert(key, page.clone());
        }
    }

    /// The page that offered the consumer, if one did.
    fn page_of(&self, scope: &AppScope, consumer_id: &str) -> Option<Arc<PageRead>> {
        let pages = self.0.lock().ok()?;
        pages
            .get(&(scope.application_id(), consumer_id.to_owned()))
            .cloned()
    }

    /// The consumer's live connections (as `connections::of_consumer`): from its page's one
    /// read when a page offered it, else read on their own (so too without `pages`: a
    /// subscription's events carry no request memo). A read that fails is not kept.
    pub async fn connections(
        pages: Option<&Self>,
        deps: &connections::Deps<'_>,
        scope: &AppScope,
        consumer_id: &str,
    ) -> Result<Vec<ConnectionModel>> {
        let Some(page) = pages.and_then(|p| p.page_of(scope, consumer_id)) else {
            return connections::of_consumer(deps, scope, consumer_id).await;
        };
        let all = page
            .connections
            .get_or_try_init(|| {
                Box::pin(connections::of_consumers(
                    deps.db,
                    deps.catalog,
                    scope,
                    &page.consumers,
                ))
            })
            .await?;
        Ok(all.get(consumer_id).cloned().unwrap_or_default())
    }

    /// The consumer's all-time request counts, read as `connections` are.
    pub async fn request_counts(
        pages: Option<&Self>,
        db: &DatabaseConnection,
        scope: &AppScope,
        consumer_id: &str,
    ) -> Result<RequestCounts> {
        let Some(page) = pages.and_then(|p| p.page_of(scope, consumer_id)) else {
            return request_counts::consumer_counts(db, scope, consumer_id, None, None).await;
        };
        let all = page
            .counts
            .get_or_try_init(|| {
                Box::pin(request_counts::consumers_totals(db, scope, &page.consumers))
            })
            .await?;
        Ok(all.get(consumer_id).copied().unwrap_or_default())
    }
}
