//! Probes, request ids, GraphiQL and production hardening.

use keyway::crypto::Secret;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::support::{Backend, TestApp};

db_test!(probes_and_request_ids, |app| async {
    for path in ["/healthz", "/readyz"] {
        let response = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(response.headers().contains_key("x-request-id"));
    }
    let response = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-123");
    assert_eq!(response.headers()["keyway-request-id"], "trace-123");
    let response = app
        .client
        .get(format!("{}/nope", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    // HEAD wherever GET only reads; another method is 405 naming those a route has.
    for path in ["/healthz", "/readyz", "/"] {
        let head = app
            .client
            .head(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
        assert!(head.bytes().await.unwrap().is_empty(), "HEAD {path}");
    }
    for (method, path, allow) in [
        ("DELETE", "/healthz", "GET, HEAD"),
        ("POST", "/readyz", "GET, HEAD"),
        ("PUT", "/graphql", "GET, HEAD, POST"),
        ("GET", "/demo-provider/token", "POST"),
        // A HEAD must not spend a flow's single-use state.
        ("HEAD", "/oauth/callback", "GET"),
        ("POST", "/connect/x", "GET"),
    ] {
        let response = app
            .client
            .request(method.parse().unwrap(), format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
    }
    let home = app
        .client
        .get(format!("{}/", app.base))
        .send()
        .await
        .unwrap();
    assert!(home.text().await.unwrap().contains("Keyway"));
});

db_test!(graphiql_and_introspection_in_development, |app| async {
    let page = app
        .client
        .get(format!("{}/graphql", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("graphiql")
    );
    // The query GraphiQL and code generators send must fit inside the limits.
    let full = include_str!("fixtures/introspection.graphql");
    let data = app.ok(&app.operator, full, json!({})).await;
    assert!(data["__schema"]["types"].as_array().unwrap().len() > 20);
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_turns_off_graphiql_introspection_and_suggestions() {
    let app = TestApp::with_config(Backend::Sqlite, |c| {
        c.env = keyway::config::Environment::Production;
        c.master_key = Some(Secret::new("11".repeat(32)));
        c.public_url = Some("https://vault.example.com".parse().unwrap());
    })
    .await
    .unwrap();
    let page = app
        .client
        .get(format!("{}/graphql", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    let (_, body) = app
        .graphql(
            &app.operator,
            "{ __schema { queryType { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );
    assert!(body["data"].is_null(), "{body}");
    let (_, body) = app
        .graphql(&app.operator, "{ viewr { kind } }", json!({}))
        .await;
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(!message.contains("Did you mean"), "{message}");
    app.stop().await;
}
