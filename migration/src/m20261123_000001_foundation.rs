//! The foundation: operators and their tokens, applications (tenants), API keys, consumers.

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
                    .table(Admins::Table)
                    .col(uuid(Admins::Id).primary_key())
                    .col(string_len_uniq(Admins::Email, 320))
                    .col(text(Admins::PasswordHash))
                    .col(timestamp_with_time_zone(Admins::CreatedAt))
                    .col(timestamp_with_time_zone_null(Admins::LastLoginAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AdminTokens::Table)
                    .col(uuid(AdminTokens::Id).primary_key())
                    .col(string_len(AdminTokens::Label, 200))
                    .col(binary_len_uniq(AdminTokens::TokenHash, 32))
                    .col(string_len(AdminTokens::Prefix, 32))
                    .col(timestamp_with_time_zone(AdminTokens::CreatedAt))
                    .col(timestamp_with_time_zone_null(AdminTokens::LastUsedAt))
                    .col(timestamp_with_time_zone_null(AdminTokens::RevokedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Applications::Table)
                    .col(uuid(Applications::Id).primary_key())
                    .col(string_len(Applications::Name, 200))
                    .col(json(Applications::RedirectUris))
                    .col(text_null(Applications::DefaultRedirectUri))
                    .col(big_integer_null(Applications::RequestsPerMonth))
                    .col(big_integer_null(Applications::RequestsPerMinute))
                    .col(timestamp_with_time_zone(Applications::CreatedAt))
                    .col(timestamp_with_time_zone(Applications::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(uuid(ApiKeys::Id).primary_key())
                    .col(uuid(ApiKeys::ApplicationId))
                    // No foreign key yet: integrations arrive with their own migration.
                    .col(uuid_null(ApiKeys::IntegrationId))
                    .col(string_len(ApiKeys::Label, 200))
                    .col(binary_len_uniq(ApiKeys::SecretHash, 32))
                    .col(string_len(ApiKeys::SecretPrefix, 32))
                    .col(string_len_uniq(ApiKeys::PublicKey, 64))
                    .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::LastUsedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiKeys::Table, ApiKeys::ApplicationId)
                            .to(Applications::Table, Applications::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_api_keys_application")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::ApplicationId)
                    .col(ApiKeys::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Consumers::Table)
                    .col(uuid(Consumers::Id).primary_key())
                    .col(uuid(Consumers::ApplicationId))
                    .col(byte_ordered(
                        string_len(Consumers::ConsumerId, 255),
                        manager,
                    ))
                    .col(string_len_null(Consumers::AccountName, 255))
                    .col(string_len_null(Consumers::UserName, 255))
                    .col(string_len_null(Consumers::Email, 320))
                    .col(text_null(Consumers::Image))
                    .col(timestamp_with_time_zone(Consumers::CreatedAt))
                    .col(timestamp_with_time_zone(Consumers::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Consumers::Table, Consumers::ApplicationId)
                            .to(Applications::Table, Applications::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // One consumer id per application; also serves keyset pagination by consumer_id.
        manager
            .create_index(
                Index::create()
                    .name("uq_consumers_application_consumer_id")
                    .table(Consumers::Table)
                    .col(Consumers::ApplicationId)
                    .col(Consumers::ConsumerId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Consumers::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            Applications::Table.into_iden(),
            AdminTokens::Table.into_iden(),
            Admins::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Keyset cursors compare strings; byte order makes PostgreSQL sort exactly as SQLite does,
/// whatever the database's locale, and keeps the comparison cheap.
pub(crate) fn byte_ordered(mut column: ColumnDef, manager: &SchemaManager) -> ColumnDef {
    if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
        column.extra("COLLATE \"C\"");
    }
    column
}

#[derive(DeriveIden)]
enum Admins {
    Table,
    Id,
    Email,
    PasswordHash,
    CreatedAt,
    LastLoginAt,
}

#[derive(DeriveIden)]
enum AdminTokens {
    Table,
    Id,
    Label,
    TokenHash,
    Prefix,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Applications {
    Table,
    Id,
    Name,
    RedirectUris,
    DefaultRedirectUri,
    RequestsPerMonth,
    RequestsPerMinute,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    ApplicationId,
    IntegrationId,
    Label,
    SecretHash,
    SecretPrefix,
    PublicKey,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Consumers {
    Table,
    Id,
    ApplicationId,
    ConsumerId,
    AccountName,
    UserName,
    Email,
    Image,
    CreatedAt,
    UpdatedAt,
}
