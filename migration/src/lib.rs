//! Schema migrations. One file per change, applied in order by `keyway migrate` and by
//! `keyway serve` on start. Every migration must run unchanged on SQLite and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_foundation;
mod m20261123_000002_connections;
mod m20261123_000003_oauth_flows;
mod m20261123_000004_refresh_leases;
mod m20261123_000005_usage;
mod m20261123_000006_webhooks;
mod m20261123_000007_request_logs_purge_by_id;
mod m20261203_000008_request_logs_keyed_by_application;
mod m20261207_000009_request_counts;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_foundation::Migration),
            Box::new(m20261123_000002_connections::Migration),
            Box::new(m20261123_000003_oauth_flows::Migration),
            Box::new(m20261123_000004_refresh_leases::Migration),
            Box::new(m20261123_000005_usage::Migration),
            Box::new(m20261123_000006_webhooks::Migration),
            Box::new(m20261123_000007_request_logs_purge_by_id::Migration),
            Box::new(m20261203_000008_request_logs_keyed_by_application::Migration),
            Box::new(m20261207_000009_request_counts::Migration),
        ]
    }
}
