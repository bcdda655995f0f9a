//! When a connection's token is refreshed: before use once near expiry (`due`), and by the
//! background pass (`due_in_background`).

use chrono::{DateTime, Duration, Utc};
use entity::connection::{Column, Entity, Model};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::error::Result;

/// Tokens this close to expiry (half their lifetime, if shorter: see `margin`) are refreshed
/// before they are handed out.
pub const MARGIN_MINUTES: i64 = 5;
/// Connections not refreshed for this long are refreshed in the background.
pub const STALE_HOURS: i64 = 24;

/// A connection whose token should be refreshed before use.
pub fn due(conn: &Model) -> bool {
    conn.auth_type == "oauth2"
        && conn.credentials.is_some()
        && conn.deleted_at.is_none()
        && conn.revoked_at.is_none()
        && conn.expires_at.is_some_and(|at| {
            let obtained = conn.last_refreshed_at.unwrap_or(conn.created_at);
            at <= Utc::now() + margin(at, obtained, Duration::minutes(MARGIN_MINUTES))
        })
}

/// How long before its expiry a token is refreshed: `at_most`, or half its lifetime when
/// that is shorter. A token that lives five minutes (Keycloak's default) would otherwise be
/// inside the margin from the start and refreshed at every use. `obtained` is when the
/// tokens were last written by a refresh, else when the connection was made: for tokens
/// re-authorized since, that overstates the lifetime, which only brings back `at_most`.
pub fn margin(expires_at: DateTime<Utc>, obtained: DateTime<Utc>, at_most: Duration) -> Duration {
    ((expires_at - obtained) / 2).clamp(Duration::zero(), at_most)
}

/// Connections the background pass should refresh now: tokens within `2 × MARGIN_MINUTES`
/// of expiry (half their lifetime, for short-lived ones; see `margin`), and connections not
/// refreshed for `STALE_HOURS`. Soonest expiry first.
pub async fn due_in_background(db: &DatabaseConnection, limit: u64) -> Result<Vec<Uuid>> {
    let now = Utc::now();
    let at_most = Duration::minutes(MARGIN_MINUTES * 2);
    let stale = now - Duration::hours(STALE_HOURS);
    let stale_condition = sea_orm::Condition::any()
        .add(Column::LastRefreshedAt.lte(stale))
        .add(
            sea_orm::Condition::all()
                .add(Column::LastRefreshedAt.is_null())
                .add(Column::CreatedAt.lte(stale)),
        );
    type Candidate = (
        Uuid,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        DateTime<Utc>,
    );
    // Short-lived tokens inside the window that are not yet half-way are left for a later
    // pass, so more rows than `limit` are read; they are few at any moment.
    let candidates: Vec<Candidate> = Entity::find()
        .select_only()
        .columns([
            Column::Id,
            Column::ExpiresAt,
            Column::LastRefreshedAt,
            Column::CreatedAt,
        ])
        .filter(Column::AuthType.eq("oauth2"))
        .filter(Column::Credentials.is_not_null())
        .filter(Column::State.is_in(["callable", "authorized"]))
        .filter(
            sea_orm::Condition::any()
                .add(Column::NextRefreshAt.is_null())
                .add(Column::NextRefreshAt.lte(now)),
        )
        .filter(
            sea_orm::Condition::any()
                .add(Column::ExpiresAt.lte(now + at_most))
                .add(stale_condition),
        )
        .order_by_asc(Column::ExpiresAt)
        .limit(limit * 4)
        .into_tuple()
        .all(db)
        .await?;
    Ok(candidates
        .into_iter()
        .filter(|(_, expires_at, last_refreshed_at, created_at)| {
            due_in_background_at(*expires_at, last_refreshed_at.unwrap_or(*created_at), now)
        })
        .map(|(id, ..)| id)
        .take(limit as usize)
        .collect())
}

/// `due_in_background`'s rule for one row read again just before its refresh: a connection
/// refreshed since it was listed (by a call that needed it meanwhile) is no longer due.
pub fn still_due_in_background(conn: &Model) -> bool {
    due_in_background_at(
        conn.expires_at,
        conn.last_refreshed_at.unwrap_or(conn.created_at),
        Utc::now(),
    )
}

/// Tokens that expire at `expires_at`, obtained at `obtained`: due when within the background
/// window of expiry (see `margin`) or obtained `STALE_HOURS` ago.
fn due_in_background_at(
    expires_at: Option<DateTime<Utc>>,
    obtained: DateTime<Utc>,
    now: DateTime<Utc>,
) -> bool {
    let at_most = Duration::minutes(MARGIN_MINUTES * 2);
    obtained <= now - Duration::hours(STALE_HOURS)
        || expires_at.is_some_and(|at| at <= now + margin(at, obtained, at_most))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_half_a_short_lifetime_and_at_most_the_limit() {
        let now = Utc::now();
        let five = Duration::minutes(5);
        let margin_for = |lifetime: Duration| margin(now + lifetime, now, five);
        assert_eq!(margin_for(Duration::seconds(60)), Duration::seconds(30));
        assert_eq!(margin_for(Duration::minutes(5)), Duration::seconds(150));
        assert_eq!(margin_for(Duration::minutes(10)), five);
        assert_eq!(margin_for(Duration::hours(1)), five);
        // Obtained after it expired (a clock step, a bad import): refreshed once expired.
        assert_eq!(margin_for(Duration::seconds(-30)), Duration::zero());
    }
}
