//! `request_counts`: each consumer's calls by service and API style, all time. A consumer's
//! `requestCounts` counted its log rows on every read, a scan of its whole history that grew
//! with every call and shrank when rows passed retention; the writer now adds each flush's
//! calls here, in the same transaction as the rows. The counts start from the rows already
//! logged.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RequestCounts::Table)
                    .col(uuid(RequestCounts::ApplicationId))
                    .col(string(RequestCounts::ConsumerId))
                    .col(string(RequestCounts::ServiceId))
                    .col(string(RequestCounts::ApiStyle))
                    .col(big_integer(RequestCounts::Calls))
                    .primary_key(
                        Index::create()
                            .name("request_counts_pkey")
                            .col(RequestCounts::ApplicationId)
                            .col(RequestCounts::ConsumerId)
                            .col(RequestCounts::ServiceId)
                            .col(RequestCounts::ApiStyle),
                    )
                    .to_owned(),
            )
            .await?;
        let service = Expr::cust("COALESCE(service_id, '')");
        let seed = Query::insert()
            .into_table(RequestCounts::Table)
            .columns([
                RequestCounts::ApplicationId,
                RequestCounts::ConsumerId,
                RequestCounts::ServiceId,
                RequestCounts::ApiStyle,
                RequestCounts::Calls,
            ])
            .select_from(
                Query::select()
                    .column(RequestLogs::ApplicationId)
                    .column(RequestLogs::ConsumerId)
                    .expr(service.clone())
                    .column(RequestLogs::ApiStyle)
                    .expr(Expr::col(RequestLogs::Id).count())
                    .from(RequestLogs::Table)
                    .and_where(Expr::col(RequestLogs::ConsumerId).is_not_null())
                    .group_by_col(RequestLogs::ApplicationId)
                    .group_by_col(RequestLogs::ConsumerId)
                    .add_group_by([service])
                    .group_by_col(RequestLogs::ApiStyle)
                    .to_owned(),
            )
            .map_err(|err| DbErr::Migration(err.to_string()))?
            .to_owned();
        manager.exec_stmt(seed).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RequestCounts::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum RequestCounts {
    Table,
    ApplicationId,
    ConsumerId,
    ServiceId,
    ApiStyle,
    Calls,
}

#[derive(DeriveIden)]
enum RequestLogs {
    Table,
    Id,
    ApplicationId,
    ConsumerId,
    ApiStyle,
}
