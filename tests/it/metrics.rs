//! `/metrics`: calls counted by style and status, refreshes, the pool and open sockets; no
//! tenant or secret in it; the optional token guards it.

use keyway::crypto::Secret;
use reqwest::StatusCode;

use crate::events::socket;
use crate::oauth::setup_with;
use crate::refresh::connected;
use crate::support::{Backend, by_outcome, metric};

const TOKEN: &str = "scrape-0123456789abcdef";

async fn calls_refreshes_and_the_pool_are_counted(backend: Backend) {
    let Some((app, fake, tenant, _)) = setup_with(backend, |_| {}).await else {
        return;
    };
    let id = connected(&app, &fake, &tenant).await;
    let get = |path: String| {
        app.client
            .get(format!("{}/proxy/{path}", app.base))
            .bearer_auth(&tenant.key)
            .send()
    };
    assert_eq!(get(format!("{id}/me")).await.unwrap().status(), 200);
    // The provider refuses the token: one refresh, one retry, one call.
    fake.set(|s| {
        s.rejected_tokens.insert("at-1".into());
    });
    assert_eq!(get(format!("{id}/me")).await.unwrap().status(), 200);
    assert_eq!(fake.refresh_requests(), 1);
    let unknown = uuid::Uuid::new_v4();
    assert_eq!(get(format!("{unknown}/me")).await.unwrap().status(), 404);
    // A provider that is away for a moment: a failure worth retrying, not a dead grant.
    fake.set(|s| s.fail_with = Some("temporarily_unavailable".into()));
    let (_, body) = app
        .graphql(
            &tenant.key,
            "mutation($id: ID!) { refreshConnection(id: $id) { state } }",
            serde_json::json!({ "id": id }),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "UPSTREAM_ERROR");

    let text = app.metrics().await;
    let value = |series: &str| metric(&text, series);
    assert_eq!(
        value(r#"keyway_requests_total{api="proxy",code="200"}"#),
        Some(2.0)
    );
    assert_eq!(
        value(r#"keyway_requests_total{api="proxy",code="404"}"#),
        Some(1.0)
    );
    assert!(value(r#"keyway_requests_total{api="unify",code="200"}"#) >= Some(1.0));
    assert_eq!(
        value(r#"keyway_request_duration_seconds_count{api="proxy"}"#),
        Some(3.0)
    );
    // Only the two calls that reached the provider have its share.
    assert_eq!(
        value("keyway_proxy_upstream_duration_seconds_count"),
        Some(2.0)
    );
    let refreshes = |outcome| by_outcome(&text, "keyway_token_refreshes_total", outcome);
    assert_eq!(refreshes("refreshed"), Some(1.0));
    assert_eq!(refreshes("failed"), Some(1.0));
    assert_eq!(refreshes("invalid_grant"), None);
    let written = value("keyway_request_logs_written_total").unwrap();
    assert!(written >= 3.0, "{written}");
    assert_eq!(value("keyway_request_logs_dropped_total"), Some(0.0));
    assert_eq!(value("keyway_log_lines_dropped_total"), Some(0.0));
    let max = app.server().state().config.database_max_connections;
    assert_eq!(
        value("keyway_db_pool_max_connections"),
        Some(f64::from(max))
    );
    let open = value(r#"keyway_db_pool_connections{state="idle"}"#).unwrap()
        + value(r#"keyway_db_pool_connections{state="in_use"}"#).unwrap();
    assert!((1.0..=f64::from(max)).contains(&open), "{open}");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(&format!(r#"keyway_build_info{{version="{version}"}}"#)),
        Some(1.0)
    );
    #[cfg(target_os = "linux")]
    assert!(value("process_resident_memory_bytes") > Some(0.0));
    // Who called and with what never shows.
    let application = tenant.application_uuid().to_string();
    for secret in [
        tenant.key.as_str(),
        "at-1",
        "at-2",
        &application,
        "alice",
        &id,
    ] {
        assert!(!text.contains(secret), "{secret} in /metrics");
    }
    app.stop().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_refreshes_and_the_pool_are_counted_sqlite() {
    calls_refreshes_and_the_pool_are_counted(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_refreshes_and_the_pool_are_counted_postgres() {
    calls_refreshes_and_the_pool_are_counted(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_sockets_are_counted_until_they_close() {
    let Some((app, fake, _, _)) = setup_with(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let sockets = |text: &str| metric(text, "keyway_graphql_websockets_open");
    assert_eq!(sockets(&app.metrics().await), Some(0.0));
    let mut first = socket(&app).await;
    let second = socket(&app).await;
    assert_eq!(sockets(&app.metrics().await), Some(2.0));
    first.close(None).await.unwrap();
    drop(second);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if sockets(&app.metrics().await) == Some(0.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sockets still counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.stop().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_guards_metrics() {
    let Some((app, fake, _, _)) = setup_with(Backend::Sqlite, |c| {
        c.metrics_token = Some(Secret::new(TOKEN));
    })
    .await
    else {
        return;
    };
    let url = format!("{}/metrics", app.base);
    let none = app.client.get(&url).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    for wrong in ["scrape-0123456789abcdeF", "scrape", ""] {
        let response = app
            .client
            .get(&url)
            .bearer_auth(wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{wrong:?}");
        // An empty token is no token: a bare challenge.
        let challenge = if wrong.is_empty() {
            "Bearer"
        } else {
            "Bearer error=\"invalid_token\""
        };
        assert_eq!(
            response.headers()["www-authenticate"],
            challenge,
            "{wrong:?}"
        );
    }
    let right = app
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    assert_eq!(
        right.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = right.text().await.unwrap();
    assert!(text.contains("# TYPE keyway_build_info gauge"), "{text}");
    assert!(!text.contains(TOKEN));
    app.stop().await;
    fake.stop().await;
}
