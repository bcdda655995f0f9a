//! Application A's key sees B's objects exactly as it sees missing ones: `NOT_FOUND`, with the
//! same message, by id, through `node`, filters, aliases and batches — and changes nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::support::{Tenant, TestApp, missing_id};

/// The error of a request, without the parts that name the field.
fn error_shape(body: &Value) -> Value {
    let error = &body["errors"][0];
    json!({ "message": error["message"], "extensions": error["extensions"] })
}

async fn assert_same_as_missing(
    app: &TestApp,
    key: &str,
    query: &str,
    foreign: Value,
    missing: Value,
) {
    let (s1, foreign_body) = app.graphql(key, query, foreign).await;
    let (s2, missing_body) = app.graphql(key, query, missing).await;
    assert_eq!(s1, s2, "{query}");
    assert_eq!(
        foreign_body["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{query}: {foreign_body}"
    );
    assert_eq!(
        error_shape(&foreign_body),
        error_shape(&missing_body),
        "{query}"
    );
    assert_eq!(foreign_body["data"], missing_body["data"], "{query}");
}

async fn two_tenants(app: &TestApp) -> (Tenant, Tenant, String) {
    let a = app.create_tenant("tenant-a").await;
    let b = app.create_tenant("tenant-b").await;
    app.upsert_consumer(&a.key, "a-user").await;
    let b_consumer = app.upsert_consumer(&b.key, "b-user").await;
    (a, b, b_consumer["id"].as_str().unwrap().to_owned())
}

db_test!(foreign_objects_answer_like_missing_ones, |app| async {
    let (a, b, b_consumer_node) = two_tenants(&app).await;
    let cases = [
        (
            "query($id: ID!) { application(id: $id) { name } }",
            json!({"id": b.id}),
            json!({"id": missing_id("Application")}),
        ),
        (
            "query($id: ID!) { node(id: $id) { id } }",
            json!({"id": b.id}),
            json!({"id": missing_id("Application")}),
        ),
        (
            "query($id: ID!) { node(id: $id) { id } }",
            json!({"id": b.key_id}),
            json!({"id": missing_id("ApiKey")}),
        ),
        (
            "query($id: ID!) { node(id: $id) { id } }",
            json!({"id": b_consumer_node}),
            json!({"id": missing_id("Consumer")}),
        ),
        (
            "query($c: String!) { consumer(consumerId: $c) { id } }",
            json!({"c": "b-user"}),
            json!({"c": "nobody"}),
        ),
        (
            "query($id: ID) { consumers(applicationId: $id) { edges { node { id } } } }",
            json!({"id": b.id}),
            json!({"id": missing_id("Application")}),
        ),
        (
            "query($id: ID) { apiKeys(applicationId: $id) { id } }",
            json!({"id": b.id}),
            json!({"id": missing_id("Application")}),
        ),
        (
            "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
            json!({"id": b.key_id}),
            json!({"id": missing_id("ApiKey")}),
        ),
        (
            "mutation($c: String!) { deleteConsumer(consumerId: $c) { id } }",
            json!({"c": "b-user"}),
            json!({"c": "nobody"}),
        ),
        (
            "mutation($id: ID) { upsertConsumer(input: {applicationId: $id, consumerId: \"intruder\"}) { id } }",
            json!({"id": b.id}),
            json!({"id": missing_id("Application")}),
        ),
        (
            "mutation($id: ID) { createApiKey(input: {applicationId: $id, label: \"x\"}) { secret } }",
            json!({"id": b.id}),
            json!({"id": missing_id("Application")}),
        ),
    ];
    for (query, foreign, missing) in cases {
        assert_same_as_missing(&app, &a.key, query, foreign, missing).await;
    }

    // Nothing of B changed: its key still works, its consumer is still there, alone.
    let data = app
        .ok(
            &b.key,
            "{ consumers { totalCount edges { node { consumerId } } } apiKeys { active } }",
            json!({}),
        )
        .await;
    assert_eq!(data["consumers"]["totalCount"], 1);
    assert_eq!(
        data["consumers"]["edges"][0]["node"]["consumerId"],
        "b-user"
    );
    assert_eq!(data["apiKeys"], json!([{ "active": true }]));
});

db_test!(
    filters_aliases_and_batches_stay_inside_the_tenant,
    |app| async {
        let (a, b, b_consumer_node) = two_tenants(&app).await;

        // A search that matches B's consumer id finds nothing for A.
        let data = app
        .ok(&a.key, "{ consumers(filter: {search: \"b-user\"}) { totalCount edges { node { consumerId } } } }", json!({}))
        .await;
        assert_eq!(data["consumers"]["totalCount"], 0);
        assert_eq!(data["consumers"]["edges"], json!([]));
        let data = app
            .ok(
                &a.key,
                "{ consumers { edges { node { consumerId } } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            data["consumers"]["edges"],
            json!([{ "node": { "consumerId": "a-user" } }])
        );

        // Aliases: the foreign and the missing answer side by side, identical but for the path.
        let missing = missing_id("Consumer");
        let (_, body) = app
            .graphql(
                &a.key,
                "query($f: ID!, $m: ID!) { f: node(id: $f) { id } m: node(id: $m) { id } }",
                json!({ "f": b_consumer_node, "m": missing }),
            )
            .await;
        let errors = body["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2, "{body}");
        for e in errors {
            assert_eq!(e["extensions"]["code"], "NOT_FOUND");
            assert_eq!(e["message"], errors[0]["message"]);
        }

        // Batches: each entry gets the same answer as its missing twin.
        let (status, body) = app
        .post_json(&a.key, json!([
            { "query": "query($id: ID!) { application(id: $id) { name } }", "variables": { "id": b.id } },
            { "query": "query($id: ID!) { application(id: $id) { name } }", "variables": { "id": missing_id("Application") } },
            { "query": "{ viewer { application { name } } }" },
        ]))
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(error_shape(&body[0]), error_shape(&body[1]));
        assert_eq!(body[0]["errors"][0]["extensions"]["code"], "NOT_FOUND");
        assert_eq!(body[2]["data"]["viewer"]["application"]["name"], "tenant-a");
    }
);

db_test!(
    operators_reach_every_application_by_naming_it,
    |app| async {
        let (_, b, _) = two_tenants(&app).await;
        let data = app
        .ok(&app.operator, "query($id: ID) { consumers(applicationId: $id) { edges { node { consumerId } } } }", json!({"id": b.id}))
        .await;
        assert_eq!(
            data["consumers"]["edges"][0]["node"]["consumerId"],
            "b-user"
        );
        // Without naming one, an operator is told so rather than guessed for.
        assert_eq!(
            app.error_code(&app.operator, "{ consumers { totalCount } }", json!({}))
                .await,
            "BAD_USER_INPUT"
        );
    }
);
