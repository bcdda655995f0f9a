//! Refresh leases: at most one replica refreshes a connection's token at a time. A lease is
//! a row with an owner and an expiry — never a database lock held across the HTTP call.

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
                    .table(RefreshLeases::Table)
                    .col(uuid(RefreshLeases::ConnectionId).primary_key())
                    .col(uuid(RefreshLeases::Owner))
                    .col(timestamp_with_time_zone(RefreshLeases::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RefreshLeases::Table, RefreshLeases::ConnectionId)
                            .to(Connections::Table, Connections::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RefreshLeases::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Connections {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum RefreshLeases {
    Table,
    ConnectionId,
    Owner,
    ExpiresAt,
}
