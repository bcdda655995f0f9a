//! Pending OAuth authorizations: one row per flow, found by the hash of its `state`, used once.

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
                    .table(OauthFlows::Table)
                    .col(uuid(OauthFlows::Id).primary_key())
                    .col(binary_len_uniq(OauthFlows::StateHash, 32))
                    .col(uuid(OauthFlows::ApplicationId))
                    .col(uuid(OauthFlows::IntegrationId))
                    .col(uuid_null(OauthFlows::ConnectionId))
                    .col(string_len(OauthFlows::ConsumerId, 255))
                    .col(text(OauthFlows::RedirectUri))
                    .col(json(OauthFlows::Scopes))
                    .col(string_len(OauthFlows::Environment, 16))
                    .col(json(OauthFlows::Settings))
                    .col(binary_null(OauthFlows::PkceVerifier))
                    .col(integer_null(OauthFlows::PkceVerifierKeyId))
                    .col(text(OauthFlows::Issuer))
                    .col(timestamp_with_time_zone(OauthFlows::CreatedAt))
                    .col(timestamp_with_time_zone(OauthFlows::ExpiresAt))
                    .col(timestamp_with_time_zone_null(OauthFlows::UsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OauthFlows::Table, OauthFlows::ApplicationId)
                            .to(Applications::Table, Applications::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(OauthFlows::Table, OauthFlows::IntegrationId)
                            .to(Integrations::Table, Integrations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_oauth_flows_expires")
                    .table(OauthFlows::Table)
                    .col(OauthFlows::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OauthFlows::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Applications {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Integrations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum OauthFlows {
    Table,
    Id,
    StateHash,
    ApplicationId,
    IntegrationId,
    ConnectionId,
    ConsumerId,
    RedirectUri,
    Scopes,
    Environment,
    Settings,
    PkceVerifier,
    PkceVerifierKeyId,
    Issuer,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}
