//! Token refresh, exactly once per connection across every replica.
//!
//! 1. In this process, one caller per connection goes on (`gates`); the others wait, then
//!    re-read and usually find fresh tokens.
//! 2. Across replicas, a lease row of `refresh_leases` (owner token, expiry;
//!    `refresh_lease_secs` long), never a database lock held across the HTTP call. Whoever
//!    cannot take it waits for the connection's `version` to move, or for the lease to lapse.
//! 3. After taking the lease the connection is read again (someone may just have refreshed),
//!    and the new tokens are written only if `version` is still the one read (fencing): a
//!    holder that stalled past its lease cannot overwrite newer tokens.
//!
//! A response without a refresh token keeps the old one. Failures back off; repeated
//! `invalid_grant` makes the connection `invalid` with one `connection.invalid` event.
//! When a refresh is due is `due.rs`'s business.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use entity::connection::{self, Column, Entity, Model};
use entity::refresh_lease;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set, SqlErr,
    TransactionTrait,
};
use uuid::Uuid;

use super::connections::{
    self, ConnectionState, Deps, Environment, OAuthTokens, StoredCredentials,
};
use super::events::{self, EventType};
use super::integrations;
use super::oauth::client::{TokenEndpoint, TokenError};
use crate::auth::Tenancy;
use crate::error::{Error, Result};
use crate::metrics::{Metrics, RefreshOutcome};

mod due;

use due::still_due_in_background;
pub use due::{due, due_in_background};

const WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(25);
/// `invalid_grant` answers in a row before a connection is declared invalid.
pub const INVALID_AFTER: i32 = 3;

pub struct Refresher {
    gates: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    lease: Duration,
    metrics: Arc<Metrics>,
}

impl Refresher {
    pub fn new(lease_secs: u64, metrics: Arc<Metrics>) -> Self {
        Self {
            gates: Mutex::default(),
            lease: Duration::seconds(lease_secs as i64),
            metrics,
        }
    }

    /// Makes sure connection `id` holds a live access token: refreshes it when `due`, or
    /// always with `force`.
    pub async fn ensure_fresh(&self, deps: &Deps<'_>, id: Uuid, force: bool) -> Result<()> {
        let seen = load(deps.db, id).await?;
        self.ensure_fresh_from(deps, &seen, force).await.map(|_| ())
    }

    /// As `ensure_fresh`, from a row the caller has just read. `Ok(false)`: nothing to do,
    /// `seen` is current; `Ok(true)`: a refresh ran (here or elsewhere), read the row again.
    pub async fn ensure_fresh_from(
        &self,
        deps: &Deps<'_>,
        seen: &Model,
        force: bool,
    ) -> Result<bool> {
        if !force && !due(seen) {
            return Ok(false);
        }
        let id = seen.id;
        let gate = self.gate(id);
        let result = {
            let _turn = gate.lock().await;
            let current = load(deps.db, id).await?;
            if current.version != seen.version && !due(&current) {
                // Refreshed by another caller while this one waited.
                Ok(true)
            } else {
                self.across_replicas(deps, current).await.map(|()| true)
            }
        };
        self.forget_gate(id, gate);
        result
    }

    /// The background pass, forever: a batch of `due_in_background` every `interval`.
    pub async fn run(&self, state: crate::state::AppState, interval: std::time::Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let deps = state.deps();
            let due = match due_in_background(deps.db, 100).await {
                Ok(ids) => ids,
                Err(err) => {
                    err.log();
                    continue;
                }
            };
            self.refresh_listed(&deps, due).await;
        }
    }

    /// Refreshes the connections a pass listed, each read again first: one refreshed since
    /// the listing (by a call that needed it while the pass worked down its list) is skipped,
    /// where forcing it would have refreshed it a second time.
    pub async fn refresh_listed(&self, deps: &Deps<'_>, listed: Vec<Uuid>) {
        for id in listed {
            let seen = match load(deps.db, id).await {
                Ok(seen) => seen,
                Err(err) => {
                    err.log();
                    continue;
                }
            };
            if still_due_in_background(&seen) {
                // Failures are recorded on the connection (cooldown, events) and logged.
                let _ = self.ensure_fresh_from(deps, &seen, true).await;
            }
        }
    }

    async fn across_replicas(&self, deps: &Deps<'_>, read: Model) -> Result<()> {
        let wait = self.lease.to_std().unwrap_or_default() + std::time::Duration::from_secs(5);
        let deadline = Instant::now() + wait;
        let owner = Uuid::new_v4();
        while !take_lease(deps.db, read.id, owner, self.lease).await? {
            tokio::time::sleep(WAIT_STEP).await;
            let now = load(deps.db, read.id).await?;
            if now.version != read.version {
                return settled(&now);
            }
            if Instant::now() > deadline {
                return Err(Error::Upstream(
                    "the token refresh is taking too long".into(),
                ));
            }
        }
        let result = self.holding_lease(deps, read).await;
        release_lease(deps.db, owner).await;
        result
    }

    async fn holding_lease(&self, deps: &Deps<'_>, read: Model) -> Result<()> {
        // Read again: another replica may have refreshed just before this one took the lease.
        let conn = load(deps.db, read.id).await?;
        if conn.version != read.version && !due(&conn) {
            return Ok(());
        }
        if let Some(until) = conn.next_refresh_at.filter(|t| *t > Utc::now()) {
            return Err(cooling_down(until));
        }
        let Some(sealed) = &conn.credentials else {
            return Err(Error::Conflict("the connection has no credentials".into()));
        };
        let StoredCredentials::Oauth2(tokens) =
            StoredCredentials::open(deps.keys, sealed, conn.id, conn.application_id)?
        else {
            return Ok(());
        };
        let Some(refresh_token) = tokens.refresh_token.clone() else {
            return Err(Error::Conflict(
                "the connection has no refresh token".into(),
            ));
        };
        let integration_id = conn.integration_id.ok_or(Error::NotFound)?;
        let integration = integrations::get_in(
            deps.db,
            Tenancy::Application(conn.application_id),
            integration_id,
        )
        .await?;
        let provider = integrations::provider(deps.catalog, &integration)?;
        let environment = Environment::parse_stored(&conn.environment);
        let endpoint =
            TokenEndpoint::new(deps, &integration, &provider, environment, &conn.settings)?;
        let answer = endpoint.refresh(deps.http, refresh_token).await;
        self.metrics.token_refreshed(match &answer {
            Ok(_) => RefreshOutcome::Refreshed,
            Err(TokenError::InvalidGrant) => RefreshOutcome::InvalidGrant,
            Err(TokenError::Other(_)) => RefreshOutcome::Failed,
        });
        match answer {
            Ok(fresh) => {
                let tokens = OAuthTokens {
                    access_token: fresh.access,
                    // RFC 6749 §6: no new refresh token means the old one stays valid.
                    refresh_token: fresh.refresh.or(tokens.refresh_token),
                    token_type: tokens.token_type,
                    expires_at: fresh.expires_at,
                    scopes: fresh.scopes.unwrap_or(tokens.scopes),
                    raw: None,
                };
                write_success(deps, &conn, tokens).await
            }
            Err(failure) => write_failure(deps, &conn, failure).await,
        }
    }

    fn gate(&self, id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates.entry(id).or_default().clone()
    }

    fn forget_gate(&self, id: Uuid, gate: Arc<tokio::sync::Mutex<()>>) {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this caller hold it: nobody waits, so the entry can go.
        if Arc::strong_count(&gate) <= 2 {
            gates.remove(&id);
        }
    }
}

/// After another replica finished: fine if it refreshed, its failure otherwise.
fn settled(conn: &Model) -> Result<()> {
    if !due(conn) {
        return Ok(());
    }
    match conn.next_refresh_at {
        Some(until) if until > Utc::now() => Err(cooling_down(until)),
        _ => Err(Error::Upstream("the token refresh failed".into())),
    }
}

fn cooling_down(until: DateTime<Utc>) -> Error {
    let secs = (until - Utc::now()).num_seconds().max(1);
    Error::Upstream(format!(
        "the last token refresh failed; the next attempt is in {secs} s"
    ))
}

async fn load(db: &DatabaseConnection, id: Uuid) -> Result<Model> {
    Entity::find_by_id(id).one(db).await?.ok_or(Error::NotFound)
}

async fn take_lease(
    db: &DatabaseConnection,
    id: Uuid,
    owner: Uuid,
    lease: Duration,
) -> Result<bool> {
    let now = Utc::now();
    refresh_lease::Entity::delete_many()
        .filter(refresh_lease::Column::ConnectionId.eq(id))
        .filter(refresh_lease::Column::ExpiresAt.lt(now))
        .exec(db)
        .await?;
    let lease = refresh_lease::ActiveModel {
        connection_id: Set(id),
        owner: Set(owner),
        expires_at: Set(now + lease),
    };
    match lease.insert(db).await {
        Ok(_) => Ok(true),
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            Ok(false)
        }
        Err(err) => Err(err.into()),
    }
}

async fn release_lease(db: &DatabaseConnection, owner: Uuid) {
    let released = refresh_lease::Entity::delete_many()
        .filter(refresh_lease::Column::Owner.eq(owner))
        .exec(db)
        .await;
    if let Err(err) = released {
        // It lapses on its own when its time is up.
        tracing::warn!(error = %err, "releasing a refresh lease failed");
    }
}

/// Writes new tokens if nobody changed the connection since `read` (fencing on `version`).
async fn write_success(deps: &Deps<'_>, read: &Model, tokens: OAuthTokens) -> Result<()> {
    let expires_at = tokens.expires_at;
    let stored = StoredCredentials::Oauth2(tokens);
    let (sealed, key_id) = stored.seal(deps.keys, read.id, read.application_id)?;
    let state = ConnectionState::derive(true, read.configured, false);
    let txn = deps.db.begin().await?;
    let written = Entity::update_many()
        .col_expr(Column::Credentials, Expr::value(sealed))
        .col_expr(Column::CredentialsKeyId, Expr::value(key_id))
        .col_expr(Column::ExpiresAt, Expr::value(expires_at))
        .col_expr(Column::LastRefreshedAt, Expr::value(Utc::now()))
        .col_expr(
            Column::NextRefreshAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(Column::RefreshFailures, Expr::value(0))
        .col_expr(Column::State, Expr::value(state.as_str()))
        .col_expr(Column::Version, Expr::value(read.version + 1))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(read.id))
        .filter(Column::Version.eq(read.version))
        .exec(&txn)
        .await?;
    if written.rows_affected != 1 {
        // Someone wrote meanwhile (a newer refresh, an update): theirs stands.
        tracing::warn!(connection = %read.id, "refresh result discarded: the connection changed");
        return Ok(());
    }
    let model = load_in(&txn, read.id).await?;
    events::record(&txn, EventType::Refreshed, &model).await?;
    txn.commit().await?;
    deps.cache.forget(read.id);
    deps.bus.committed();
    tracing::info!(connection = %read.id, "token refreshed");
    Ok(())
}

async fn write_failure(deps: &Deps<'_>, read: &Model, failure: TokenError) -> Result<()> {
    let failures = read.refresh_failures + 1;
    let permanent = matches!(failure, TokenError::InvalidGrant);
    let now_invalid = permanent && failures >= INVALID_AFTER;
    // 30 s, 1 min, 2 min … capped at an hour.
    let backoff = Duration::seconds((30_i64 << failures.clamp(0, 7) as u32).min(3600));
    let mut row: connection::ActiveModel = read.clone().into();
    row.refresh_failures = Set(failures);
    row.next_refresh_at = Set(Some(Utc::now() + backoff));
    if now_invalid {
        row.state = Set(ConnectionState::Invalid.as_str().to_owned());
    }
    let txn = deps.db.begin().await?;
    if let Some(model) = connections::write_fenced(&txn, read, row).await? {
        let was_invalid = read.state == ConnectionState::Invalid.as_str();
        let kind = if now_invalid && !was_invalid {
            EventType::Invalid
        } else {
            EventType::RefreshFailed
        };
        events::record(&txn, kind, &model).await?;
        txn.commit().await?;
        deps.cache.forget(read.id);
        deps.bus.committed();
    }
    tracing::warn!(connection = %read.id, failures, error = %failure, "token refresh failed");
    Err(Error::Upstream(if permanent {
        "the provider refused the refresh token; the consumer may need to reconnect".into()
    } else {
        "the token refresh failed; it will be retried".into()
    }))
}

async fn load_in<C: sea_orm::ConnectionTrait>(db: &C, id: Uuid) -> Result<Model> {
    Entity::find_by_id(id).one(db).await?.ok_or(Error::NotFound)
}
