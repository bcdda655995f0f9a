//! Data keys (the keyring), integrations, connections with sealed credentials, and the
//! events outbox.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::m20261123_000001_foundation::byte_ordered;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DataKeys::Table)
                    .col(integer(DataKeys::Id).primary_key())
                    .col(binary(DataKeys::Wrapped))
                    .col(timestamp_with_time_zone(DataKeys::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Integrations::Table)
                    .col(uuid(Integrations::Id).primary_key())
                    .col(uuid(Integrations::ApplicationId))
                    .col(byte_ordered(
                        string_len(Integrations::ServiceId, 64),
                        manager,
                    ))
                    .col(string_len_null(Integrations::ClientId, 512))
                    .col(binary_null(Integrations::ClientSecret))
                    .col(integer_null(Integrations::ClientSecretKeyId))
                    .col(json(Integrations::Scopes))
                    .col(boolean(Integrations::Enabled))
                    .col(json_null(Integrations::CustomProvider))
                    .col(timestamp_with_time_zone(Integrations::CreatedAt))
                    .col(timestamp_with_time_zone(Integrations::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Integrations::Table, Integrations::ApplicationId)
                            .to(Applications::Table, Applications::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_integrations_application_service")
                    .table(Integrations::Table)
                    .col(Integrations::ApplicationId)
                    .col(Integrations::ServiceId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_integrations_key")
                    .table(Integrations::Table)
                    .col(Integrations::ClientSecretKeyId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Connections::Table)
                    .col(uuid(Connections::Id).primary_key())
                    .col(uuid(Connections::ApplicationId))
                    // Tombstones outlive their consumer and integration rows.
                    .col(uuid_null(Connections::ConsumerRef))
                    .col(byte_ordered(
                        string_len(Connections::ConsumerId, 255),
                        manager,
                    ))
                    .col(uuid_null(Connections::IntegrationId))
                    .col(string_len(Connections::ServiceId, 64))
                    .col(string_len(Connections::AuthType, 16))
                    .col(string_len(Connections::State, 16))
                    .col(string_len(Connections::Environment, 16))
                    .col(boolean(Connections::Enabled))
                    .col(boolean(Connections::Configured))
                    .col(json(Connections::Settings))
                    .col(json(Connections::Metadata))
                    .col(json(Connections::Configuration))
                    .col(json(Connections::GrantedScopes))
                    .col(binary_null(Connections::Credentials))
                    .col(integer_null(Connections::CredentialsKeyId))
                    .col(timestamp_with_time_zone_null(Connections::ExpiresAt))
                    .col(timestamp_with_time_zone_null(Connections::LastRefreshedAt))
                    .col(timestamp_with_time_zone_null(Connections::NextRefreshAt))
                    .col(integer(Connections::RefreshFailures).default(0))
                    .col(big_integer(Connections::Version).default(0))
                    .col(string_len_null(Connections::UserEmail, 320))
                    .col(timestamp_with_time_zone(Connections::CreatedAt))
                    .col(timestamp_with_time_zone(Connections::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Connections::RevokedAt))
                    .col(timestamp_with_time_zone_null(Connections::DeletedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Connections::Table, Connections::ApplicationId)
                            .to(Applications::Table, Applications::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Connections::Table, Connections::ConsumerRef)
                            .to(Consumers::Table, Consumers::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Connections::Table, Connections::IntegrationId)
                            .to(Integrations::Table, Integrations::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        // Keyset listing (by id) under each filter the API offers.
        for (name, cols) in [
            (
                "idx_connections_app",
                vec![Connections::ApplicationId, Connections::Id],
            ),
            (
                "idx_connections_state",
                vec![
                    Connections::ApplicationId,
                    Connections::State,
                    Connections::Id,
                ],
            ),
            (
                "idx_connections_consumer",
                vec![
                    Connections::ApplicationId,
                    Connections::ConsumerId,
                    Connections::Id,
                ],
            ),
            (
                "idx_connections_service",
                vec![
                    Connections::ApplicationId,
                    Connections::ServiceId,
                    Connections::Id,
                ],
            ),
            ("idx_connections_key", vec![Connections::CredentialsKeyId]),
            ("idx_connections_refresh", vec![Connections::NextRefreshAt]),
        ] {
            let mut index = Index::create();
            index.name(name).table(Connections::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            // Case-insensitive substring search on user_email without a scan.
            let db = manager.get_connection();
            db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                .await?;
            db.execute_unprepared(
                "CREATE INDEX idx_connections_user_email_trgm ON connections \
                 USING gin (lower(user_email) gin_trgm_ops)",
            )
            .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(uuid(Events::Id).primary_key())
                    .col(uuid(Events::ApplicationId))
                    .col(string_len(Events::EventType, 64))
                    .col(uuid_null(Events::ConnectionId))
                    .col(string_len_null(Events::ConsumerId, 255))
                    .col(string_len_null(Events::ServiceId, 64))
                    .col(json(Events::Payload))
                    .col(timestamp_with_time_zone(Events::OccurredAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Events::Table, Events::ApplicationId)
                            .to(Applications::Table, Applications::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_events_application")
                    .table(Events::Table)
                    .col(Events::ApplicationId)
                    .col(Events::Id)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Events::Table.into_iden(),
            Connections::Table.into_iden(),
            Integrations::Table.into_iden(),
            DataKeys::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Applications {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Consumers {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum DataKeys {
    Table,
    Id,
    Wrapped,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Integrations {
    Table,
    Id,
    ApplicationId,
    ServiceId,
    ClientId,
    ClientSecret,
    ClientSecretKeyId,
    Scopes,
    Enabled,
    CustomProvider,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Connections {
    Table,
    Id,
    ApplicationId,
    ConsumerRef,
    ConsumerId,
    IntegrationId,
    ServiceId,
    AuthType,
    State,
    Environment,
    Enabled,
    Configured,
    Settings,
    Metadata,
    Configuration,
    GrantedScopes,
    Credentials,
    CredentialsKeyId,
    ExpiresAt,
    LastRefreshedAt,
    NextRefreshAt,
    RefreshFailures,
    Version,
    UserEmail,
    CreatedAt,
    UpdatedAt,
    RevokedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    ApplicationId,
    EventType,
    ConnectionId,
    ConsumerId,
    ServiceId,
    Payload,
    OccurredAt,
}
