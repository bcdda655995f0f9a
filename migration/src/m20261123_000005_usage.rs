//! Request logs (Apideck's log model) and usage counters for plan and rate limits.
//!
//! Log rows are written in batches off the request path; counters are shared across replicas
//! (each replica adds its local counts every second).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RequestLogs::Table)
                    .col(uuid(RequestLogs::Id).primary_key())
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
                    .col(timestamp_with_time_zone(RequestLogs::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // Newest first per application (ids are UUIDv7, so id order is time order).
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
        // A consumer's logs and stats in a date range.
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
        manager
            .create_index(
                Index::create()
                    .name("request_logs_created_at")
                    .table(RequestLogs::Table)
                    .col(RequestLogs::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UsageCounters::Table)
                    .col(string(UsageCounters::Key))
                    .col(big_integer(UsageCounters::WindowStart))
                    .col(big_integer(UsageCounters::Count))
                    .primary_key(
                        Index::create()
                            .col(UsageCounters::Key)
                            .col(UsageCounters::WindowStart),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UsageCounters::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(RequestLogs::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
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

#[derive(DeriveIden)]
enum UsageCounters {
    Table,
    Key,
    WindowStart,
    Count,
}
