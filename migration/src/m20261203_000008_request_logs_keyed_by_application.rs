//! Request logs are keyed by `(application_id, id)`, and on SQLite stored `WITHOUT ROWID`.
//!
//! Every proxied call writes a row, so each B-tree a row lands in is paid for at proxy rates.
//! Before: the table (by rowid), the `id` key, `(application_id, id)` for listing and the
//! consumer index, four in all. Every read is within one application and newest first, which
//! is exactly the composite key's order, so that key replaces both the `id` key and the
//! listing index; `WITHOUT ROWID` makes the key the table itself. Two B-trees per row remain:
//! the table and the consumer index.
//!
//! The table is rebuilt (SQLite cannot change a primary key in place) and its rows copied:
//! the old one is renamed aside first (SQLite refuses to rename a new table onto the name of
//! one dropped in the same transaction).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on SQLite too: the rebuild is several statements, which must run on one
    /// connection (another may still read the old schema) and land together or not at all.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rebuild(manager, Key::ByApplication).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rebuild(manager, Key::ById).await
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Key {
    /// `(application_id, id)`, without rowid on SQLite.
    ByApplication,
    /// `id`, with the `(application_id, id)` listing index (the schema before this migration).
    ById,
}

async fn rebuild(manager: &SchemaManager<'_>, key: Key) -> Result<(), DbErr> {
    manager
        .rename_table(
            Table::rename()
                .table(RequestLogs::Table, Alias::new(PREVIOUS))
                .to_owned(),
        )
        .await?;
    // Constraint names are per schema too, and the table being replaced still holds its own:
    // each key has a name of its own.
    let mut table = Table::create();
    table
        .table(RequestLogs::Table)
        .col(uuid(RequestLogs::Id))
        .col(uuid(RequestLogs::ApplicationId))
        .col(string_null(RequestLogs::RequestId))
        .col(string(RequestLogs::ApiStyle))
        .col(string(RequestLogs::Operation))
        .col(string(RequestLogs::HttpMethod))
        .col(string(RequestLogs::Path))
        .col(string_null(RequestLogs::BaseUrl))
        .col(integer(RequestLogs::StatusCode))
        .col(boolean(RequestLogs::Success))
        .col(double(RequestLogs::DurationMs))
        .col(double_null(RequestLogs::LatencyMs))
        .col(string_null(RequestLogs::ServiceId))
        .col(string_null(RequestLogs::UnifiedApi))
        .col(string_null(RequestLogs::ConsumerId))
        .col(uuid_null(RequestLogs::ConnectionId))
        .col(string_null(RequestLogs::SourceIp))
        .col(string_null(RequestLogs::ErrorMessage))
        .col(boolean(RequestLogs::Sandbox))
        .col(timestamp_with_time_zone(RequestLogs::CreatedAt));
    match key {
        Key::ByApplication => {
            table.primary_key(
                Index::create()
                    .name("request_logs_by_application_pkey")
                    .col(RequestLogs::ApplicationId)
                    .col(RequestLogs::Id),
            );
            if manager.get_database_backend() == DatabaseBackend::Sqlite {
                table.extra("WITHOUT ROWID");
            }
        }
        Key::ById => {
            table.primary_key(
                Index::create()
                    .name("request_logs_by_id_pkey")
                    .col(RequestLogs::Id),
            );
        }
    }
    manager.create_table(table.to_owned()).await?;

    let columns = [
        RequestLogs::Id,
        RequestLogs::ApplicationId,
        RequestLogs::RequestId,
        RequestLogs::ApiStyle,
        RequestLogs::Operation,
        RequestLogs::HttpMethod,
        RequestLogs::Path,
        RequestLogs::BaseUrl,
        RequestLogs::StatusCode,
        RequestLogs::Success,
        RequestLogs::DurationMs,
        RequestLogs::LatencyMs,
        RequestLogs::ServiceId,
        RequestLogs::UnifiedApi,
        RequestLogs::ConsumerId,
        RequestLogs::ConnectionId,
        RequestLogs::SourceIp,
        RequestLogs::ErrorMessage,
        RequestLogs::Sandbox,
        RequestLogs::CreatedAt,
    ];
    let copy = Query::insert()
        .into_table(RequestLogs::Table)
        .columns(columns)
        .select_from(
            Query::select()
                .columns(columns)
                .from(Alias::new(PREVIOUS))
                .to_owned(),
        )
        .map_err(|err| DbErr::Migration(err.to_string()))?
        .to_owned();
    manager.exec_stmt(copy).await?;
    manager
        .drop_table(Table::drop().table(Alias::new(PREVIOUS)).to_owned())
        .await?;

    // Index names are per schema: the old table's went with it.
    manager
        .create_index(
            Index::create()
                .name("request_logs_consumer_time")
                .table(RequestLogs::Table)
                .col(RequestLogs::ApplicationId)
                .col(RequestLogs::ConsumerId)
                .col(RequestLogs::CreatedAt)
                .to_owned(),
        )
        .await?;
    if key == Key::ById {
        manager
            .create_index(
                Index::create()
                    .name("request_logs_application_id")
                    .table(RequestLogs::Table)
                    .col(RequestLogs::ApplicationId)
                    .col(RequestLogs::Id)
                    .to_owned(),
            )
            .await?;
    }
    Ok(())
}

/// The table being replaced, while its rows are copied.
const PREVIOUS: &str = "request_logs_previous";

#[derive(DeriveIden, Clone, Copy)]
enum RequestLogs {
    Table,
    Id,
    ApplicationId,
    RequestId,
    ApiStyle,
    Operation,
    HttpMethod,
    Path,
    BaseUrl,
    StatusCode,
    Success,
    DurationMs,
    LatencyMs,
    ServiceId,
    UnifiedApi,
    ConsumerId,
    ConnectionId,
    SourceIp,
    ErrorMessage,
    Sandbox,
    CreatedAt,
}
