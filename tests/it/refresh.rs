//! Token refresh: on demand near expiry, exactly once under concurrency (one process, and
//! two instances sharing one PostgreSQL), rotation, backoff, invalid, and revocation.

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::fake_provider::FakeProvider;
use crate::oauth::{consent_and_return, query_of, setup};
use crate::support::{Backend, Tenant, TestApp, by_outcome, event_types};

const CREDS: &str = "query($id: ID!, $f: Boolean) { connectionCredentials(id: $id, forceRefresh: $f, includeRefreshToken: true) { accessToken refreshToken expiresAt } }";

/// Runs the OAuth flow once and returns the new connection's id.
pub async fn connected(app: &TestApp, fake: &FakeProvider, tenant: &Tenant) -> String {
    let location = consent_and_return(app, fake, &tenant.key).await;
    query_of(&location)["connection_id"].clone()
}

macro_rules! refresh_test {
    ($name:ident, |$app:ident, $fake:ident, $tenant:ident| $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let ($app, $fake, $tenant, _) = setup(Backend::Sqlite).await.unwrap();
                $body.await;
                $app.stop().await;
                $fake.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some(($app, $fake, $tenant, _)) = setup(Backend::Postgres).await else {
                    return;
                };
                $body.await;
                $app.stop().await;
                $fake.stop().await;
            }
        }
    };
}

refresh_test!(
    near_expiry_tokens_are_refreshed_and_rotated,
    |app, fake, tenant| async {
        // A token that lives 60 s is inside the 5-minute margin from the start: it is handed
        // out for the first half of its life, not refreshed at every read.
        fake.set(|s| s.expires_in = 60);
        let id = connected(&app, &fake, &tenant).await;
        let data = app.ok(&tenant.key, CREDS, json!({ "id": id })).await;
        assert_eq!(data["connectionCredentials"]["accessToken"], "at-1");
        assert_eq!(fake.refresh_requests(), 0);
        // Past that (obtained long ago), the read refreshes first.
        app.db()
            .execute_unprepared("UPDATE connections SET created_at = '2000-01-01T00:00:00Z'")
            .await
            .unwrap();
        let data = app.ok(&tenant.key, CREDS, json!({ "id": id })).await;
        assert_eq!(data["connectionCredentials"]["accessToken"], "at-2");
        assert_eq!(
            data["connectionCredentials"]["refreshToken"], "rt-2",
            "rotated"
        );
        let data = app.ok(&tenant.key, CREDS, json!({ "id": id })).await;
        assert_eq!(data["connectionCredentials"]["accessToken"], "at-2");
        assert_eq!(fake.refresh_requests(), 1);

        // Long-lived tokens are handed out as they are.
        fake.set(|s| s.expires_in = 3600);
        let data = app
            .ok(&tenant.key, CREDS, json!({ "id": id, "f": true }))
            .await;
        assert_eq!(data["connectionCredentials"]["accessToken"], "at-3");
        let data = app.ok(&tenant.key, CREDS, json!({ "id": id })).await;
        assert_eq!(data["connectionCredentials"]["accessToken"], "at-3");
        assert_eq!(fake.refresh_requests(), 2);

        // A response without refresh_token keeps the old one.
        fake.set(|s| s.omit_refresh_token = true);
        let data = app
            .ok(&tenant.key, CREDS, json!({ "id": id, "f": true }))
            .await;
        assert_eq!(data["connectionCredentials"]["accessToken"], "at-4");
        assert_eq!(data["connectionCredentials"]["refreshToken"], "rt-3");
        assert!(
            event_types(&app)
                .await
                .iter()
                .filter(|e| *e == "connection.refreshed")
                .count()
                == 3
        );
    }
);

refresh_test!(
    two_hundred_concurrent_readers_cause_one_refresh,
    |app, fake, tenant| async {
        let id = connected(&app, &fake, &tenant).await;
        expire(&app, &id).await;
        fake.set(|s| s.delay_ms = 200);
        let reads = (0..200).map(|_| app.graphql(&tenant.key, CREDS, json!({ "id": id })));
        let answers = futures_util::future::join_all(reads).await;
        let ok = answers
            .iter()
            .filter(|(_, body)| body["data"]["connectionCredentials"]["accessToken"] == "at-2")
            .count();
        assert_eq!(
            ok,
            200,
            "{:?}",
            answers.iter().find(|(_, b)| b.get("errors").is_some())
        );
        assert_eq!(fake.refresh_requests(), 1);
    }
);

refresh_test!(
    repeated_invalid_grant_makes_the_connection_invalid_once,
    |app, fake, tenant| async {
        let id = connected(&app, &fake, &tenant).await;
        fake.set(|s| s.fail_with = Some("invalid_grant".into()));
        for attempt in 1..=3 {
            // Let the cooldown pass, as time would.
            clear_cooldown(&app).await;
            let (_, body) = app
                .graphql(&tenant.key, CREDS, json!({ "id": id, "f": true }))
                .await;
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "UPSTREAM_ERROR",
                "attempt {attempt}"
            );
        }
        let data = app
            .ok(
                &tenant.key,
                "query($id: ID!) { connection(id: $id) { state } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(data["connection"]["state"], "INVALID");
        let events = event_types(&app).await;
        assert_eq!(
            events.iter().filter(|e| *e == "connection.invalid").count(),
            1
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| *e == "connection.refresh_failed")
                .count(),
            2
        );

        // While cooling down, no request reaches the provider.
        let before = fake.refresh_requests();
        let (_, body) = app
            .graphql(&tenant.key, CREDS, json!({ "id": id, "f": true }))
            .await;
        assert_eq!(body["errors"][0]["extensions"]["code"], "UPSTREAM_ERROR");
        assert_eq!(fake.refresh_requests(), before);
        // Dead grants are told apart from failures worth retrying.
        let metrics = app.metrics().await;
        let refreshes = |outcome| by_outcome(&metrics, "keyway_token_refreshes_total", outcome);
        assert_eq!(refreshes("invalid_grant"), Some(3.0));
        assert_eq!(refreshes("refreshed"), None);
    }
);

refresh_test!(
    revoke_calls_the_provider_and_wipes_credentials,
    |app, fake, tenant| async {
        let id = connected(&app, &fake, &tenant).await;
        let data = app
        .ok(&tenant.key, "mutation($id: ID!) { revokeConnection(id: $id) { state hasCredentials revokedAt } }", json!({ "id": id }))
        .await;
        assert_eq!(data["revokeConnection"]["state"], "REVOKED");
        assert_eq!(data["revokeConnection"]["hasCredentials"], false);
        assert_eq!(fake.state.lock().unwrap().revoked, vec!["rt-1".to_owned()]);
        let (_, body) = app.graphql(&tenant.key, CREDS, json!({ "id": id })).await;
        assert_eq!(body["errors"][0]["extensions"]["code"], "CONFLICT");
        assert_eq!(
            event_types(&app).await.last().unwrap(),
            "connection.revoked"
        );
    }
);

refresh_test!(
    answers_that_bend_rfc_6749_are_read_as_meant,
    |app, fake, tenant| async {
        fake.set(|s| s.quirks = true);
        let id = connected(&app, &fake, &tenant).await;
        let data = app
            .ok(&tenant.key, "query($id: ID!) { connection(id: $id) { state expiresAt } connectionCredentials(id: $id) { accessToken tokenType } }", json!({ "id": id }))
            .await;
        assert_eq!(data["connection"]["state"], "CALLABLE");
        assert_eq!(data["connectionCredentials"]["accessToken"], "at-1");
        assert_eq!(data["connectionCredentials"]["tokenType"], "Bearer");
        let expires_at: chrono::DateTime<chrono::Utc> = data["connection"]["expiresAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let left = expires_at - chrono::Utc::now();
        assert!(left > chrono::Duration::minutes(59), "{left}");
        // A dead grant answered with 200, under GitHub's name for it, is still a dead grant,
        // not a failure worth retrying.
        fake.set(|s| s.fail_with = Some("bad_refresh_token".into()));
        let (_, body) = app
            .graphql(&tenant.key, CREDS, json!({ "id": id, "f": true }))
            .await;
        assert_eq!(body["errors"][0]["extensions"]["code"], "UPSTREAM_ERROR");
        let metrics = app.metrics().await;
        let refreshes = |outcome| by_outcome(&metrics, "keyway_token_refreshes_total", outcome);
        assert_eq!(refreshes("invalid_grant"), Some(1.0));
    }
);

refresh_test!(refresh_connection_forces_one, |app, fake, tenant| async {
    let id = connected(&app, &fake, &tenant).await;
    let data = app
        .ok(
            &tenant.key,
            "mutation($id: ID!) { refreshConnection(id: $id) { state expiresAt } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["refreshConnection"]["state"], "CALLABLE");
    assert_eq!(fake.refresh_requests(), 1);
});

/// Two instances on one PostgreSQL database, 100 readers each: one token request in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_postgres_refresh_once() {
    let Some((first, fake, tenant, _)) = setup_with_key(Backend::Postgres).await else {
        return;
    };
    let host = fake.host();
    let second = first
        .replica(|c| c.allowed_private_hosts = vec![host])
        .await;
    let id = connected(&first, &fake, &tenant).await;
    expire(&first, &id).await;
    fake.set(|s| s.delay_ms = 300);
    let reads = (0..200).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        app.graphql(&tenant.key, CREDS, json!({ "id": id }))
    });
    let answers: Vec<(reqwest::StatusCode, Value)> = futures_util::future::join_all(reads).await;
    let ok = answers
        .iter()
        .filter(|(_, body)| body["data"]["connectionCredentials"]["accessToken"] == "at-2")
        .count();
    assert_eq!(
        ok,
        200,
        "{:?}",
        answers.iter().find(|(_, b)| b.get("errors").is_some())
    );
    assert_eq!(fake.refresh_requests(), 1);
    second.stop().await;
    first.stop().await;
    fake.stop().await;
}

async fn setup_with_key(backend: Backend) -> Option<(TestApp, FakeProvider, Tenant, String)> {
    crate::oauth::setup_with(backend, |c| {
        c.master_key = Some(keyway::crypto::Secret::new("42".repeat(32)))
    })
    .await
}

async fn expire(app: &TestApp, _id: &str) {
    app.db()
        .execute_unprepared("UPDATE connections SET expires_at = created_at")
        .await
        .unwrap();
}

async fn clear_cooldown(app: &TestApp) {
    app.db()
        .execute_unprepared("UPDATE connections SET next_refresh_at = NULL")
        .await
        .unwrap();
}

/// Instance A's refresh stalls past its lease; instance B (same store) takes over and writes
/// newer tokens; A's late answer is discarded by the version fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_lease_holder_cannot_overwrite_newer_tokens() {
    let (a, fake, tenant, _) =
        crate::oauth::setup_with(Backend::Sqlite, |c| c.refresh_lease_secs = 1)
            .await
            .unwrap();
    let dir = a.data_dir().to_path_buf();
    let host = fake.host();
    let b = TestApp::with_config(Backend::Sqlite, |c| {
        c.data_dir = dir;
        c.allowed_private_hosts = vec![host];
        c.refresh_lease_secs = 1;
    })
    .await
    .unwrap();
    let id = connected(&a, &fake, &tenant).await;
    expire(&a, &id).await;
    fake.set(|s| {
        s.delay_first_refresh_ms = 2500;
        s.allow_reuse = true;
    });
    let (from_a, from_b) =
        tokio::join!(a.graphql(&tenant.key, CREDS, json!({ "id": id })), async {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            b.graphql(&tenant.key, CREDS, json!({ "id": id })).await
        });
    // B refreshed first (at-2); A's stalled exchange came back later (at-3) and lost.
    assert_eq!(
        from_b.1["data"]["connectionCredentials"]["accessToken"], "at-2",
        "{}",
        from_b.1
    );
    assert_eq!(
        from_a.1["data"]["connectionCredentials"]["accessToken"], "at-2",
        "{}",
        from_a.1
    );
    assert_eq!(fake.refresh_requests(), 2);
    let data = b.ok(&tenant.key, CREDS, json!({ "id": id })).await;
    assert_eq!(data["connectionCredentials"]["accessToken"], "at-2");
    assert_eq!(
        event_types(&a)
            .await
            .iter()
            .filter(|e| *e == "connection.refreshed")
            .count(),
        1
    );
    b.stop().await;
    a.stop().await;
    fake.stop().await;
}

refresh_test!(
    the_background_pass_picks_expiring_and_stale_connections,
    |app, fake, tenant| async {
        let id = connected(&app, &fake, &tenant).await;
        let uuid = |gid: &str| {
            use base64::Engine;
            let text = String::from_utf8(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(gid)
                    .unwrap(),
            )
            .unwrap();
            uuid::Uuid::parse_str(text.split_once(':').unwrap().1).unwrap()
        };
        let due = || keyway::service::refresh::due_in_background(app.db(), 100);
        // A fresh token an hour from expiry, refreshed just now: not due.
        assert!(due().await.unwrap().is_empty());
        expire(&app, &id).await;
        assert_eq!(due().await.unwrap(), vec![uuid(&id)]);
        // Listed by a pass, then refreshed by a call that needed it before the pass came to
        // it: the pass leaves it alone.
        let state = app.server().state();
        let listed = due().await.unwrap();
        let before = fake.refresh_requests();
        app.ok(&tenant.key, CREDS, json!({ "id": id })).await;
        assert_eq!(fake.refresh_requests(), before + 1);
        state.refresher.refresh_listed(&state.deps(), listed).await;
        assert_eq!(fake.refresh_requests(), before + 1, "refreshed twice");
        expire(&app, &id).await;
        // The pass refreshes it; then it is no longer due.
        state
            .refresher
            .ensure_fresh(&state.deps(), uuid(&id), true)
            .await
            .unwrap();
        assert!(due().await.unwrap().is_empty());
        // Not refreshed for over 24 hours, though not expiring: due again.
        app.db()
            .execute_unprepared("UPDATE connections SET last_refreshed_at = '2000-01-01T00:00:00Z'")
            .await
            .unwrap();
        assert_eq!(due().await.unwrap(), vec![uuid(&id)]);

        // A two-minute token inside the 10-minute window is left for the first half of its
        // life, then due.
        use entity::connection::{Column, Entity};
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        let two_minute_token = |age: i64| {
            let now = chrono::Utc::now();
            Entity::update_many()
                .col_expr(
                    Column::LastRefreshedAt,
                    Expr::value(now - chrono::Duration::seconds(age)),
                )
                .col_expr(
                    Column::ExpiresAt,
                    Expr::value(now + chrono::Duration::seconds(120 - age)),
                )
                .filter(Column::Id.eq(uuid(&id)))
                .exec(app.db())
        };
        two_minute_token(50).await.unwrap();
        assert!(due().await.unwrap().is_empty());
        two_minute_token(70).await.unwrap();
        assert_eq!(due().await.unwrap(), vec![uuid(&id)]);
    }
);
