//! The sealed columns (values encrypted under a data key, with the key's id beside them):
//! counting them per key, and moving them to the current key.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use crate::crypto::envelope::{Binding, Keyring};
use crate::error::{Error, Result};

/// A sealed column and the columns that say where it lives.
#[derive(Clone, Copy)]
pub(super) enum SealedColumn {
    IntegrationClientSecret,
    ConnectionCredentials,
    WebhookSecret,
}

pub(super) const SEALED_COLUMNS: [SealedColumn; 3] = [
    SealedColumn::IntegrationClientSecret,
    SealedColumn::ConnectionCredentials,
    SealedColumn::WebhookSecret,
];

impl SealedColumn {
    /// Also the `table` of the values' binding.
    pub(super) fn name(self) -> &'static str {
        match self {
            SealedColumn::IntegrationClientSecret => "integrations.client_secret",
            SealedColumn::ConnectionCredentials => "connections.credentials",
            SealedColumn::WebhookSecret => "webhook_endpoints.secret",
        }
    }

    pub(super) async fn count_by_key(
        self,
        db: &DatabaseConnection,
    ) -> Result<Vec<(Option<i32>, u64)>> {
        use entity::{connection as c, integration as i, webhook_endpoint as w};
        match self {
            SealedColumn::IntegrationClientSecret => {
                count_by_key::<i::Entity>(db, i::Column::ClientSecret, i::Column::ClientSecretKeyId)
                    .await
            }
            SealedColumn::ConnectionCredentials => {
                count_by_key::<c::Entity>(db, c::Column::Credentials, c::Column::CredentialsKeyId)
                    .await
            }
            SealedColumn::WebhookSecret => {
                count_by_key::<w::Entity>(db, w::Column::Secret, w::Column::SecretKeyId).await
            }
        }
    }

    pub(super) async fn reencrypt(
        self,
        db: &DatabaseConnection,
        ring: &Keyring,
        current: i32,
        limit: u64,
    ) -> Result<usize> {
        use entity::{connection as c, integration as i, webhook_endpoint as w};
        let job = Job {
            ring,
            current,
            limit,
            table: self.name(),
        };
        match self {
            SealedColumn::IntegrationClientSecret => {
                let place = (i::Column::Id, i::Column::ApplicationId);
                let sealed = (i::Column::ClientSecret, i::Column::ClientSecretKeyId);
                reencrypt::<i::Entity>(db, place, sealed, job).await
            }
            SealedColumn::ConnectionCredentials => {
                let place = (c::Column::Id, c::Column::ApplicationId);
                let sealed = (c::Column::Credentials, c::Column::CredentialsKeyId);
                reencrypt::<c::Entity>(db, place, sealed, job).await
            }
            SealedColumn::WebhookSecret => {
                let place = (w::Column::Id, w::Column::ApplicationId);
                let sealed = (w::Column::Secret, w::Column::SecretKeyId);
                reencrypt::<w::Entity>(db, place, sealed, job).await
            }
        }
    }
}

/// One pass of re-encryption: move up to `limit` values to the `current` key.
struct Job<'a> {
    ring: &'a Keyring,
    current: i32,
    limit: u64,
    table: &'static str,
}

async fn count_by_key<E: EntityTrait>(
    db: &DatabaseConnection,
    sealed: E::Column,
    key_id: E::Column,
) -> Result<Vec<(Option<i32>, u64)>> {
    let rows: Vec<(Option<i32>, i64)> = E::find()
        .select_only()
        .column(key_id)
        .column_as(sealed.count(), "n")
        .filter(sealed.is_not_null())
        .group_by(key_id)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(k, n)| (k, n as u64)).collect())
}

/// Each value moves in its own conditional UPDATE (the same ciphertext still there), so a
/// racing writer wins and nothing is lost; a crash leaves every value old or new, both valid.
async fn reencrypt<E: EntityTrait>(
    db: &DatabaseConnection,
    (id_col, app_col): (E::Column, E::Column),
    (sealed_col, key_col): (E::Column, E::Column),
    job: Job<'_>,
) -> Result<usize> {
    let Job {
        ring,
        current,
        limit,
        table,
    } = job;
    let rows: Vec<(Uuid, Uuid, Vec<u8>)> = E::find()
        .select_only()
        .column(id_col)
        .column(app_col)
        .column(sealed_col)
        .filter(sealed_col.is_not_null())
        .filter(key_col.ne(current))
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    let mut moved = 0;
    for (id, application_id, old) in rows {
        let binding = Binding {
            table,
            row_id: id,
            application_id,
        };
        let Some(new) = reseal(ring, &old, binding)? else {
            continue;
        };
        let result = E::update_many()
            .col_expr(sealed_col, Expr::value(new))
            .col_expr(key_col, Expr::value(current))
            .filter(id_col.eq(id))
            .filter(sealed_col.eq(old))
            .exec(db)
            .await?;
        moved += result.rows_affected as usize;
    }
    Ok(moved)
}

/// `None` when the value does not open (it is logged; such a row needs an operator).
fn reseal(ring: &Keyring, old: &[u8], binding: Binding<'_>) -> Result<Option<Vec<u8>>> {
    match ring.open(old, binding) {
        Ok(plain) => Ok(Some(ring.seal(&plain, binding).map_err(Error::internal)?)),
        Err(err) => {
            tracing::error!(table = binding.table, row = %binding.row_id, error = %err,
                "a sealed value does not open; left as it is");
            Ok(None)
        }
    }
}

pub fn integration_binding(id: Uuid, application_id: Uuid) -> Binding<'static> {
    Binding {
        table: SealedColumn::IntegrationClientSecret.name(),
        row_id: id,
        application_id,
    }
}

pub fn webhook_binding(id: Uuid, application_id: Uuid) -> Binding<'static> {
    Binding {
        table: SealedColumn::WebhookSecret.name(),
        row_id: id,
        application_id,
    }
}

pub fn connection_binding(id: Uuid, application_id: Uuid) -> Binding<'static> {
    Binding {
        table: SealedColumn::ConnectionCredentials.name(),
        row_id: id,
        application_id,
    }
}
