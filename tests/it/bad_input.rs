//! Bad input gets a clear 4xx or `BAD_USER_INPUT`, never a 500, and changes nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::support::{TestApp, first_code};

async fn consumer_count(app: &TestApp, key: &str) -> Value {
    app.ok(key, "{ consumers { totalCount } }", json!({})).await["consumers"]["totalCount"].clone()
}

db_test!(
    bad_arguments_are_user_errors_and_write_nothing,
    |app| async {
        let tenant = app.create_tenant("acme").await;
        app.upsert_consumer(&tenant.key, "existing").await;
        let key = tenant.key.as_str();
        let huge = "x".repeat(1_000_000);
        let deep = format!(
            "{{ viewer {}{}}}",
            "{ application ".repeat(40),
            "} ".repeat(40)
        );
        let aliases: String = (0..1000)
            .map(|i| format!("a{i}: viewer {{ kind }} "))
            .collect();
        let cases: Vec<(String, Value)> = vec![
        ("{ consumers(first: 1000) { totalCount } }".into(), json!({})),
        ("{ consumers(first: -5) { totalCount } }".into(), json!({})),
        ("{ consumers(after: \"%%%\") { totalCount } }".into(), json!({})),
        ("{ node(id: \"not-an-id\") { id } }".into(), json!({})),
        ("{ node(id: \"\") { id } }".into(), json!({})),
        ("{ application(id: \"QXBwbGljYXRpb246bm9wZQ\") { id } }".into(), json!({})),
        ("mutation { upsertConsumer(input: {consumerId: \"\"}) { id } }".into(), json!({})),
        ("mutation($c: String!) { upsertConsumer(input: {consumerId: $c}) { id } }".into(), json!({ "c": "x".repeat(300) })),
        ("mutation { upsertConsumer(input: {consumerId: \"new\", metadata: {image: \"javascript:alert(1)\"}}) { id } }".into(), json!({})),
        ("mutation { upsertConsumer(input: {consumerId: \"new\", state: \"callable\"}) { id } }".into(), json!({})),
        ("mutation { upsertConsumer(input: {consumerId: \"new\", applicationId: 5}) { id } }".into(), json!({})),
        ("mutation($c: String!) { upsertConsumer(input: {consumerId: $c}) { id } }".into(), json!({ "c": 12 })),
        ("{ nope }".into(), json!({})),
        ("{ viewer { kind ".into(), json!({})),
        (deep, json!({})),
        (aliases, json!({})),
        ("{ consumers(first: 200) { edges { node { consumerId services } } } }".into(), json!({})),
        ("{ consumers(first: 100) { edges { node { connections { id consumerId serviceId state environment enabled configured settings metadata configuration grantedScopes userEmail hasCredentials expiresAt createdAt updatedAt revokedAt deletedAt } } } } }".into(), json!({})),
    ];
        for (query, vars) in cases {
            let (status, body) = app.graphql(key, &query, vars).await;
            let shown: String = query.chars().take(80).collect();
            assert!(
                status.is_client_error() || status == StatusCode::OK,
                "{shown}: {status}"
            );
            assert_eq!(first_code(&body), "BAD_USER_INPUT", "{shown}: {body}");
        }

        // A 1 MB string is refused before parsing, with a JSON answer.
        let (status, body) = app
            .graphql(
                key,
                "mutation($c: String!) { upsertConsumer(input: {consumerId: $c}) { id } }",
                json!({ "c": huge }),
            )
            .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(first_code(&body), "BAD_USER_INPUT");

        // Not JSON, an empty batch, a batch too large.
        for body in [
            "not json",
            "[]",
            &serde_json::to_string(&vec![json!({"query": "{ viewer { kind } }"}); 11]).unwrap(),
        ] {
            let response = app
                .client
                .post(format!("{}/graphql", app.base))
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(body.to_owned())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body:.40}");
            let json: Value = response.json().await.unwrap();
            assert_eq!(first_code(&json), "BAD_USER_INPUT");
        }

        assert_eq!(consumer_count(&app, key).await, 1);
    }
);

db_test!(bad_application_input_is_refused, |app| async {
    let op = app.operator.clone();
    for uris in [
        json!(["//evil.com"]),
        json!(["http://app.example.com/cb"]),
        json!(["javascript:alert(1)"]),
        json!(["https://a.example.com/cb#x"]),
        json!(
            vec!["https://a.example.com/cb"; 51]
                .iter()
                .enumerate()
                .map(|(i, u)| format!("{u}{i}"))
                .collect::<Vec<_>>()
        ),
    ] {
        let code = app
            .error_code(&op, "mutation($u: [String!]!) { createApplication(input: {name: \"x\", redirectUris: $u}) { id } }", json!({ "u": uris }))
            .await;
        assert_eq!(code, "BAD_USER_INPUT", "{uris}");
    }
    let code = app
        .error_code(&op, "mutation { createApplication(input: {name: \"x\", redirectUris: [\"https://a.example.com/cb\"], defaultRedirectUri: \"https://b.example.com/cb\"}) { id } }", json!({}))
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    let code = app
        .error_code(
            &op,
            "mutation { createApplication(input: {name: \"x\", requestsPerMinute: 0}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    let data = app
        .ok(&op, "{ applications { totalCount } }", json!({}))
        .await;
    assert_eq!(data["applications"]["totalCount"], 0);
});

db_test!(a_page_size_out_of_range_is_named_as_such, |app| async {
    let tenant = app.create_tenant("acme").await;
    for field in ["consumers", "connections", "logs", "integrations"] {
        for first in [-1, 201, 100_000] {
            let query = format!("{{ {field}(first: {first}) {{ edges {{ cursor }} }} }}");
            let (_, body) = app.graphql(&tenant.key, &query, json!({})).await;
            assert_eq!(first_code(&body), "BAD_USER_INPUT", "{query}: {body}");
            assert_eq!(
                body["errors"][0]["message"], "first must be between 0 and 200",
                "{query}: {body}"
            );
        }
    }
});

/// Every field of a type that needs no argument, objects followed (lists of a type given in
/// `skip` left out), read from the schema so that the selection grows with it.
async fn every_field(app: &TestApp, key: &str, type_name: &str, skip: &[&str]) -> String {
    const QUERY: &str = "query($t: String!) { __type(name: $t) { fields { name args { type { kind } } type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }";
    let data = app.ok(key, QUERY, json!({ "t": type_name })).await;
    let mut selection = Vec::new();
    for field in data["__type"]["fields"].as_array().unwrap() {
        let name = field["name"].as_str().unwrap();
        let needs_argument = field["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["type"]["kind"] == "NON_NULL");
        if needs_argument || skip.contains(&name) {
            continue;
        }
        let mut ty = &field["type"];
        while !ty["ofType"].is_null() {
            ty = &ty["ofType"];
        }
        match ty["kind"].as_str().unwrap() {
            "OBJECT" => {
                let inner = Box::pin(every_field(app, key, ty["name"].as_str().unwrap(), skip));
                selection.push(format!("{name} {{ {} }}", inner.await));
            }
            _ => selection.push(name.to_owned()),
        }
    }
    selection.join(" ")
}

db_test!(a_full_page_of_every_field_fits_the_limits, |app| async {
    let tenant = app.create_tenant("acme").await;
    // Fields that query the database for each row they resolve on.
    let per_row = ["connections", "services", "requestCounts"];
    for (field, node) in [
        ("logs", "RequestLog"),
        ("connections", "Connection"),
        ("consumers", "Consumer"),
        ("integrations", "Integration"),
    ] {
        let selection = every_field(&app, &tenant.key, node, &per_row).await;
        let query = format!(
            "{{ {field}(first: 200) {{ edges {{ cursor node {{ {selection} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
        );
        let (status, body) = app.graphql(&tenant.key, &query, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{field}: {body}");
        assert!(body["errors"].is_null(), "{field}: {body}");
    }

    // A page of fields that each run a query is refused, saying what is counted.
    let query = "{ consumers(first: 200) { edges { node { requestCounts { total } } } } }";
    let (_, body) = app.graphql(&tenant.key, query, json!({})).await;
    assert_eq!(first_code(&body), "BAD_USER_INPUT", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("the query costs more than 20000"),
        "{message}"
    );
    let (_, body) = app
        .graphql(
            &tenant.key,
            "{ consumers(first: 100) { edges { node { requestCounts { total } } } } }",
            json!({}),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");

    // Too deep: the message names the limit.
    let deep = format!(
        "{{ __type(name: \"Query\") {}name{} }}",
        "{ ofType ".repeat(16),
        " }".repeat(16)
    );
    let (_, body) = app.graphql(&tenant.key, &deep, json!({})).await;
    assert_eq!(
        body["errors"][0]["message"], "the query nests deeper than 15 levels",
        "{body}"
    );
});
