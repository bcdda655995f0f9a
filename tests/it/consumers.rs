//! Consumers: upsert, keyset pagination, search, delete.

use serde_json::{Value, json};

use crate::db_test;

const PAGE: &str = "query($first: Int, $after: String, $search: String) { consumers(first: $first, after: $after, filter: {search: $search}) { totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { cursor node { consumerId } } } }";

fn ids(page: &Value) -> Vec<String> {
    page["consumers"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["consumerId"].as_str().unwrap().to_owned())
        .collect()
}

db_test!(pages_walk_every_consumer_once_in_order, |app| async {
    let tenant = app.create_tenant("acme").await;
    let mut expected: Vec<String> = (0..45).map(|i| format!("user-{i:03}")).collect();
    for id in expected.iter().rev() {
        app.upsert_consumer(&tenant.key, id).await;
    }
    expected.sort();

    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let page = app
            .ok(&tenant.key, PAGE, json!({ "first": 20, "after": after }))
            .await;
        assert_eq!(page["consumers"]["totalCount"], 45);
        let edges = page["consumers"]["edges"].as_array().unwrap();
        // Each edge's cursor resumes right after that edge.
        assert_eq!(
            edges.last().unwrap()["cursor"],
            page["consumers"]["pageInfo"]["endCursor"]
        );
        seen.extend(ids(&page));
        pages += 1;
        if page["consumers"]["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["consumers"]["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);

    // The default page size is 20.
    let page = app.ok(&tenant.key, PAGE, json!({})).await;
    assert_eq!(ids(&page).len(), 20);

    // `first: 0` (Relay allows it) answers the count and whether rows follow, with no edges.
    let page = app.ok(&tenant.key, PAGE, json!({ "first": 0 })).await;
    assert!(ids(&page).is_empty());
    assert_eq!(page["consumers"]["totalCount"], 45);
    assert_eq!(page["consumers"]["pageInfo"]["hasNextPage"], true);
    let all = app.ok(&tenant.key, PAGE, json!({ "first": 200 })).await;
    let end = all["consumers"]["pageInfo"]["endCursor"].clone();
    let page = app
        .ok(&tenant.key, PAGE, json!({ "first": 0, "after": end }))
        .await;
    assert_eq!(page["consumers"]["pageInfo"]["hasNextPage"], false);
});

db_test!(upsert_creates_then_updates_only_given_fields, |app| async {
    let tenant = app.create_tenant("acme").await;
    let q = "mutation($m: ConsumerMetadataInput) { upsertConsumer(input: {consumerId: \"u1\", metadata: $m}) { id consumerId createdAt updatedAt metadata { accountName userName email image } } }";
    let first = app
        .ok(&tenant.key, q, json!({ "m": { "accountName": "Acme Corp", "userName": "Ada", "email": "ada@acme.com", "image": "https://acme.com/ada.png" } }))
        .await["upsertConsumer"]
        .clone();
    let second = app
        .ok(
            &tenant.key,
            q,
            json!({ "m": { "userName": "Ada L.", "image": "" } }),
        )
        .await["upsertConsumer"]
        .clone();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["createdAt"], second["createdAt"]);
    assert_eq!(
        second["metadata"],
        json!({
            "accountName": "Acme Corp", "userName": "Ada L.", "email": "ada@acme.com", "image": null
        })
    );
    let data = app
        .ok(
            &tenant.key,
            "{ consumer(consumerId: \"u1\") { metadata { userName } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["consumer"]["metadata"]["userName"], "Ada L.");
});

db_test!(
    concurrent_upserts_of_one_consumer_make_one_row,
    |app| async {
        let tenant = app.create_tenant("acme").await;
        let calls = (0..10).map(|_| app.upsert_consumer(&tenant.key, "racer"));
        let results = futures_util::future::join_all(calls).await;
        let first = &results[0]["id"];
        assert!(results.iter().all(|r| &r["id"] == first));
        let page = app.ok(&tenant.key, PAGE, json!({})).await;
        assert_eq!(page["consumers"]["totalCount"], 1);
    }
);

db_test!(search_is_case_insensitive_and_literal, |app| async {
    let tenant = app.create_tenant("acme").await;
    for id in ["alice", "ALBERT", "bob", "100%_real"] {
        app.upsert_consumer(&tenant.key, id).await;
    }
    app.ok(&tenant.key, "mutation { upsertConsumer(input: {consumerId: \"carol\", metadata: {email: \"Carol@Example.ORG\"}}) { id } }", json!({})).await;
    let search = |s: &'static str| {
        let app = &app;
        let key = tenant.key.clone();
        async move { ids(&app.ok(&key, PAGE, json!({ "search": s })).await) }
    };
    // Byte order on every backend: digits, then upper case, then lower case.
    assert_eq!(search("aL").await, vec!["100%_real", "ALBERT", "alice"]);
    assert_eq!(search("example.org").await, vec!["carol"]);
    // % and _ are matched literally, not as wildcards.
    assert_eq!(search("%_").await, vec!["100%_real"]);
    assert_eq!(search("o_b").await, Vec::<String>::new());
});

db_test!(delete_removes_the_consumer, |app| async {
    let tenant = app.create_tenant("acme").await;
    app.upsert_consumer(&tenant.key, "gone").await;
    let data = app
        .ok(
            &tenant.key,
            "mutation { deleteConsumer(consumerId: \"gone\") { consumerId } }",
            json!({}),
        )
        .await;
    assert_eq!(data["deleteConsumer"]["consumerId"], "gone");
    let code = app
        .error_code(
            &tenant.key,
            "{ consumer(consumerId: \"gone\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "NOT_FOUND");
    let code = app
        .error_code(
            &tenant.key,
            "mutation { deleteConsumer(consumerId: \"gone\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "NOT_FOUND");
});

db_test!(
    a_page_of_consumers_each_shows_its_own_connections_and_counts,
    |app| async {
        let tenant = app.create_tenant("acme").await;
        let key = tenant.key.clone();
        let stripe = app.create_integration(&key, "stripe").await;
        app.create_integration(&key, "zendesk").await;
        let a1 = app.create_stripe_connection(&key, "page-a", "sk_1").await;
        let b1 = app.create_stripe_connection(&key, "page-b", "sk_2").await;
        let created = app
        .ok(&key, "mutation { createConnection(input: {consumerId: \"page-a\", serviceId: \"zendesk\", credentials: {accessToken: \"x\"}}) { id } }", json!({}))
        .await;
        let a2 = created["createConnection"]["id"].clone();
        app.upsert_consumer(&key, "page-c").await;
        // A deleted connection is left out.
        let gone = app.create_stripe_connection(&key, "page-c", "sk_3").await;
        app.ok(
            &key,
            "mutation($id: ID!) { deleteConnection(id: $id) { id } }",
            json!({ "id": gone }),
        )
        .await;

        // Calls of each consumer through the hosted pages (no other call here is one).
        for (consumer, service) in [
            ("page-a", "stripe"),
            ("page-a", "stripe"),
            ("page-a", "zendesk"),
            ("page-b", "stripe"),
        ] {
            let mut entry = keyway::service::usage::LogEntry::new(
                tenant.application_uuid(),
                keyway::service::usage::ApiStyle::Vault,
                "vault",
            );
            entry.consumer_id = Some(consumer.into());
            entry.service_id = Some(service.into());
            app.server().state().logs.record(entry);
        }
        app.server().state().logs.flush(app.db()).await.unwrap();

        const LISTED: &str = "{ consumers(first: 10) { edges { node { consumerId services connections { id } requestCounts { vault } } } } }";
        let shown = |data: Value| -> Vec<Value> {
            data["consumers"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"].clone())
                .collect()
        };
        let page = shown(app.ok(&key, LISTED, json!({})).await);
        assert_eq!(
            page,
            [
                json!({ "consumerId": "page-a", "services": ["stripe", "zendesk"], "connections": [{ "id": a1 }, { "id": a2 }], "requestCounts": { "vault": 3 } }),
                json!({ "consumerId": "page-b", "services": ["stripe"], "connections": [{ "id": b1 }], "requestCounts": { "vault": 1 } }),
                json!({ "consumerId": "page-c", "services": [], "connections": [], "requestCounts": { "vault": 0 } }),
            ]
        );

        // A key restricted to one integration sees that integration's connections only.
        let restricted = &app.restricted_key(&key, &stripe).await;
        let page = shown(app.ok(restricted, LISTED, json!({})).await);
        assert_eq!(page[0]["connections"], json!([{ "id": a1 }]));
        assert_eq!(page[0]["services"], json!(["stripe"]));
        assert_eq!(page[1]["connections"], json!([{ "id": b1 }]));
        let vault: Vec<&Value> = page.iter().map(|c| &c["requestCounts"]["vault"]).collect();
        assert_eq!(vault, [&json!(2), &json!(1), &json!(0)]);
        // A consumer read on its own counts the same.
        let alone = app
            .ok(
                restricted,
                "{ consumer(consumerId: \"page-a\") { requestCounts { vault } } }",
                json!({}),
            )
            .await;
        assert_eq!(alone["consumer"]["requestCounts"]["vault"], 2);
    }
);
