//! Connections: creation with credentials, state, filters, updates, tombstones, events, and
//! what `connectionCredentials` hands back.

use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::db_test;
use crate::support::event_types;

const CREDS: &str = "query($id: ID!, $r: Boolean) { connectionCredentials(id: $id, includeRefreshToken: $r) { authType accessToken refreshToken tokenType expiresAt scopes instanceUrl apiKey username password fields } }";

db_test!(api_key_connection_round_trip, |app| async {
    let tenant = app.create_tenant("acme").await;
    app.create_integration(&tenant.key, "stripe").await;
    let id = app
        .create_stripe_connection(&tenant.key, "cust-1", "sk_live_SECRET_123")
        .await;

    let data = app.ok(&tenant.key, CREDS, json!({ "id": id })).await;
    let creds = &data["connectionCredentials"];
    assert_eq!(creds["authType"], "API_KEY");
    assert_eq!(creds["apiKey"], "sk_live_SECRET_123");
    assert_eq!(creds["fields"], json!({ "api_key": "sk_live_SECRET_123" }));

    // Lists and reads never carry credentials.
    let listed = app
        .ok(&tenant.key, "{ connections { edges { node { id state hasCredentials settings metadata configuration userEmail provider { name credentialFields { id masked } } } } } }", json!({}))
        .await;
    assert!(!listed.to_string().contains("SECRET_123"));
    let node = &listed["connections"]["edges"][0]["node"];
    assert_eq!(node["hasCredentials"], true);
    assert_eq!(node["provider"]["name"], "Stripe");
    assert_eq!(
        node["provider"]["credentialFields"][0],
        json!({ "id": "api_key", "masked": true })
    );

    // Operators manage but never read raw credentials.
    assert_eq!(
        app.error_code(&app.operator, CREDS, json!({ "id": id }))
            .await,
        "FORBIDDEN"
    );
    assert_eq!(
        event_types(&app).await,
        vec!["connection.created", "connection.callable"]
    );
});

db_test!(basic_and_oauth_import_credentials, |app| async {
    let tenant = app.create_tenant("acme").await;
    app.create_integration(&tenant.key, "twilio").await;
    app.create_integration(&tenant.key, "salesforce").await;
    let data = app
        .ok(&tenant.key, "mutation { createConnection(input: {consumerId: \"c\", serviceId: \"twilio\", credentials: {fields: {account_sid: \"AC0123456789abcdef0123456789abcdef\", auth_token: \"tok-SECRET\"}}}) { id } }", json!({}))
        .await;
    let twilio = data["createConnection"]["id"].clone();
    let creds =
        app.ok(&tenant.key, CREDS, json!({ "id": twilio })).await["connectionCredentials"].clone();
    assert_eq!(creds["username"], "AC0123456789abcdef0123456789abcdef");
    assert_eq!(creds["password"], "tok-SECRET");

    let data = app
        .ok(&tenant.key, "mutation { createConnection(input: {consumerId: \"c\", serviceId: \"salesforce\", environment: SANDBOX, settings: {instance_url: \"https://acme.my.salesforce.com\"}, credentials: {accessToken: \"at-SECRET\", refreshToken: \"rt-SECRET\", expiresAt: \"2030-01-01T00:00:00Z\", scopes: [\"api\", \"refresh_token\"]}}) { id state environment grantedScopes expiresAt } }", json!({}))
        .await;
    let conn = &data["createConnection"];
    assert_eq!(conn["state"], "CALLABLE");
    assert_eq!(conn["environment"], "SANDBOX");
    assert_eq!(conn["grantedScopes"], json!(["api", "refresh_token"]));
    let creds = app
        .ok(&tenant.key, CREDS, json!({ "id": conn["id"] }))
        .await["connectionCredentials"]
        .clone();
    assert_eq!(creds["accessToken"], "at-SECRET");
    assert_eq!(creds["tokenType"], "Bearer");
    assert_eq!(creds["instanceUrl"], "https://acme.my.salesforce.com");
    assert!(creds["refreshToken"].is_null(), "only when asked for");
    let creds = app
        .ok(&tenant.key, CREDS, json!({ "id": conn["id"], "r": true }))
        .await["connectionCredentials"]
        .clone();
    assert_eq!(creds["refreshToken"], "rt-SECRET");
});

db_test!(
    credential_input_is_checked_against_the_provider,
    |app| async {
        let tenant = app.create_tenant("acme").await;
        app.create_integration(&tenant.key, "twilio").await;
        app.create_integration(&tenant.key, "zendesk").await;
        let bad = [
            "mutation { createConnection(input: {consumerId: \"c\", serviceId: \"twilio\", credentials: {fields: {account_sid: \"not-a-sid\", auth_token: \"x\"}}}) { id } }",
            "mutation { createConnection(input: {consumerId: \"c\", serviceId: \"twilio\", credentials: {fields: {account_sid: \"AC0123456789abcdef0123456789abcdef\"}}}) { id } }",
            "mutation { createConnection(input: {consumerId: \"c\", serviceId: \"twilio\", credentials: {fields: {auth_token: \"x\", account_sid: \"AC0123456789abcdef0123456789abcdef\", extra: \"x\"}}}) { id } }",
            "mutation { createConnection(input: {consumerId: \"c\", serviceId: \"twilio\", credentials: {accessToken: \"x\"}}) { id } }",
            "mutation { createConnection(input: {consumerId: \"c\", serviceId: \"zendesk\", settings: {subdomain: \"evil.com/x\"}}) { id } }",
            "mutation { createConnection(input: {consumerId: \"c\", serviceId: \"zendesk\", settings: {unknown: \"x\"}}) { id } }",
            "mutation { createConnection(input: {consumerId: \"c\", serviceId: \"nope\"}) { id } }",
            "mutation { createConnection(input: {consumerId: \"c\"}) { id } }",
        ];
        for query in bad {
            let code = app.error_code(&tenant.key, query, json!({})).await;
            assert!(
                code == "BAD_USER_INPUT" || code == "NOT_FOUND",
                "{query}: {code}"
            );
        }
        let data = app
            .ok(&tenant.key, "{ connections { totalCount } }", json!({}))
            .await;
        assert_eq!(data["connections"]["totalCount"], 0);
    }
);

db_test!(state_follows_settings_and_credentials, |app| async {
    let tenant = app.create_tenant("acme").await;
    app.create_integration(&tenant.key, "zendesk").await;
    // Imported tokens, but the required subdomain is missing: authorized, not callable.
    let data = app
        .ok(&tenant.key, "mutation { createConnection(input: {consumerId: \"c\", serviceId: \"zendesk\", credentials: {accessToken: \"at\"}}) { id state configured } }", json!({}))
        .await;
    assert_eq!(data["createConnection"]["state"], "AUTHORIZED");
    assert_eq!(data["createConnection"]["configured"], false);
    let id = data["createConnection"]["id"].clone();
    let data = app
        .ok(&tenant.key, "mutation($id: ID!) { updateConnection(id: $id, input: {settings: {subdomain: \"acme\"}, metadata: {plan: \"gold\"}}) { state configured settings metadata } }", json!({ "id": id }))
        .await;
    assert_eq!(data["updateConnection"]["state"], "CALLABLE");
    assert_eq!(
        data["updateConnection"]["settings"],
        json!({ "subdomain": "acme" })
    );
    assert_eq!(
        data["updateConnection"]["metadata"],
        json!({ "plan": "gold" })
    );

    // A connection with no credentials yet is `added`.
    let data = app
        .ok(&tenant.key, "mutation { createConnection(input: {consumerId: \"d\", serviceId: \"zendesk\"}) { state } }", json!({}))
        .await;
    assert_eq!(data["createConnection"]["state"], "ADDED");
    assert_eq!(
        event_types(&app).await,
        vec![
            "connection.created",
            "connection.updated",
            "connection.callable",
            "connection.created"
        ]
    );
});

db_test!(only_listed_fields_are_writable, |app| async {
    let tenant = app.create_tenant("acme").await;
    app.create_integration(&tenant.key, "stripe").await;
    let id = app
        .create_stripe_connection(&tenant.key, "cust-1", "sk_test_1")
        .await;
    let before = app
        .ok(
            &tenant.key,
            "query($id: ID!) { connection(id: $id) { state updatedAt consumerId } }",
            json!({ "id": id }),
        )
        .await;
    for field in [
        "state: \"revoked\"",
        "credentials: \"x\"",
        "applicationId: \"QXBwbGljYXRpb246eA\"",
        "consumerId: \"someone-else\"",
        "id: \"x\"",
        "serviceId: \"github\"",
        "version: 9",
    ] {
        let query = format!(
            "mutation($id: ID!) {{ updateConnection(id: $id, input: {{{field}}}) {{ id }} }}"
        );
        assert_eq!(
            app.error_code(&tenant.key, &query, json!({ "id": id }))
                .await,
            "BAD_USER_INPUT",
            "{field}"
        );
    }
    let after = app
        .ok(
            &tenant.key,
            "query($id: ID!) { connection(id: $id) { state updatedAt consumerId } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(before, after);
    // Ids are the server's: a client-chosen id is not an input field.
    let code = app
        .error_code(&tenant.key, "mutation { createConnection(input: {id: \"mine\", consumerId: \"c\", serviceId: \"stripe\"}) { id } }", json!({}))
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
});

db_test!(delete_leaves_a_tombstone_without_credentials, |app| async {
    let tenant = app.create_tenant("acme").await;
    app.create_integration(&tenant.key, "stripe").await;
    let id = app
        .create_stripe_connection(&tenant.key, "cust-1", "sk_test_1")
        .await;
    let data = app
        .ok(
            &tenant.key,
            "mutation($id: ID!) { deleteConnection(id: $id) { state hasCredentials deletedAt } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["deleteConnection"]["state"], "DELETED");
    assert_eq!(data["deleteConnection"]["hasCredentials"], false);
    assert_eq!(
        app.error_code(&tenant.key, CREDS, json!({ "id": id }))
            .await,
        "NOT_FOUND"
    );
    // Hidden from lists unless asked for.
    let data = app.ok(&tenant.key, "{ a: connections { totalCount } d: connections(filter: {status: \"deleted\"}) { totalCount } }", json!({})).await;
    assert_eq!(
        (
            data["a"]["totalCount"].clone(),
            data["d"]["totalCount"].clone()
        ),
        (json!(0), json!(1))
    );
    let backend = app.db().get_database_backend();
    let row = app
        .db()
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT credentials FROM connections",
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(
        row.try_get::<Option<Vec<u8>>>("", "credentials")
            .unwrap()
            .is_none()
    );
    assert_eq!(
        event_types(&app).await.last().unwrap(),
        "connection.deleted"
    );

    // Deleting a consumer tombstones its connections too.
    app.create_stripe_connection(&tenant.key, "cust-2", "sk_test_2")
        .await;
    app.ok(
        &tenant.key,
        "mutation { deleteConsumer(consumerId: \"cust-2\") { id } }",
        json!({}),
    )
    .await;
    let data = app
        .ok(
            &tenant.key,
            "{ connections(filter: {status: \"deleted\"}) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(data["connections"]["totalCount"], 2);
});

db_test!(every_filter_of_the_spec, |app| async {
    let tenant = app.create_tenant("acme").await;
    let key = tenant.key.clone();
    for service in ["stripe", "zendesk", "hubspot"] {
        app.create_integration(&key, service).await;
    }
    app.create_stripe_connection(&key, "alice", "sk_1").await;
    app.create_stripe_connection(&key, "bob", "sk_2").await;
    app.ok(&key, "mutation { createConnection(input: {consumerId: \"alice\", serviceId: \"zendesk\", environment: SANDBOX, userEmail: \"alice@Zen.io\", credentials: {accessToken: \"x\"}}) { id } }", json!({})).await;
    app.ok(&key, "mutation { createConnection(input: {consumerId: \"carol\", serviceId: \"hubspot\", userEmail: \"carol@hub.io\"}) { id } }", json!({})).await;

    let count = |filter: Value| {
        let app = &app;
        let key = key.clone();
        async move {
            let data = app
                .ok(&key, "query($f: ConnectionFilter) { connections(filter: $f) { totalCount edges { node { id } } } }", json!({ "f": filter }))
                .await;
            let total = data["connections"]["totalCount"].as_u64().unwrap();
            assert_eq!(
                total as usize,
                data["connections"]["edges"].as_array().unwrap().len()
            );
            total
        }
    };
    assert_eq!(count(json!({})).await, 4);
    assert_eq!(count(json!({ "status": "callable" })).await, 2);
    assert_eq!(count(json!({ "status": "connected" })).await, 2);
    assert_eq!(count(json!({ "status": "authorized" })).await, 1);
    assert_eq!(count(json!({ "status": "added" })).await, 1);
    assert_eq!(count(json!({ "environment": "SANDBOX" })).await, 1);
    assert_eq!(count(json!({ "serviceId": "stripe" })).await, 2);
    assert_eq!(count(json!({ "unifiedApi": "crm" })).await, 1);
    assert_eq!(count(json!({ "unifiedApi": "payments" })).await, 2);
    assert_eq!(count(json!({ "consumerId": "alice" })).await, 2);
    assert_eq!(count(json!({ "userEmail": "ZEN" })).await, 1);
    assert_eq!(count(json!({ "userEmail": "example.com" })).await, 2);
    assert_eq!(count(json!({ "configured": false })).await, 1);
    assert_eq!(
        count(json!({ "status": "callable", "consumerId": "bob" })).await,
        1
    );
    assert_eq!(
        app.error_code(
            &key,
            "{ connections(filter: {status: \"weird\"}) { totalCount } }",
            json!({})
        )
        .await,
        "BAD_USER_INPUT"
    );

    // Pages of 3 then 1, in creation order.
    let page = app.ok(&key, "{ connections(first: 3) { pageInfo { hasNextPage endCursor } edges { node { consumerId } } } }", json!({})).await;
    assert_eq!(page["connections"]["pageInfo"]["hasNextPage"], true);
    let after = page["connections"]["pageInfo"]["endCursor"].clone();
    let rest = app.ok(&key, "query($a: String) { connections(first: 3, after: $a) { pageInfo { hasNextPage } edges { node { consumerId } } } }", json!({ "a": after })).await;
    assert_eq!(
        rest["connections"]["edges"],
        json!([{ "node": { "consumerId": "carol" } }])
    );
});

db_test!(consumer_integrations_and_resource_settings, |app| async {
    let tenant = app.create_tenant("acme").await;
    app.create_integration(&tenant.key, "stripe").await;
    app.create_integration(&tenant.key, "hubspot").await;
    let id = app
        .create_stripe_connection(&tenant.key, "alice", "sk_1")
        .await;
    let data = app
        .ok(
            &tenant.key,
            "{ consumerIntegrations(consumerId: \"alice\") { serviceId state connection { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["consumerIntegrations"],
        json!([
            { "serviceId": "hubspot", "state": "AVAILABLE", "connection": null },
            { "serviceId": "stripe", "state": "CALLABLE", "connection": { "id": id } },
        ])
    );

    let data = app
        .ok(
            &tenant.key,
            "{ consumer(consumerId: \"alice\") { services connections { id serviceId } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["consumer"],
        json!({ "services": ["stripe"], "connections": [{ "id": id, "serviceId": "stripe" }] })
    );

    let data = app
        .ok(&tenant.key, "mutation($id: ID!) { updateResourceSettings(connectionId: $id, resource: \"invoices\", configuration: {currency: \"EUR\"}) }", json!({ "id": id }))
        .await;
    assert_eq!(data["updateResourceSettings"], json!({ "currency": "EUR" }));
    let data = app
        .ok(&tenant.key, "query($id: ID!) { a: resourceSettings(connectionId: $id, resource: \"invoices\") b: resourceSettings(connectionId: $id, resource: \"other\") }", json!({ "id": id }))
        .await;
    assert_eq!(data, json!({ "a": { "currency": "EUR" }, "b": {} }));
    let code = app
        .error_code(&tenant.key, "mutation($id: ID!) { updateResourceSettings(connectionId: $id, resource: \"../x\", configuration: {}) }", json!({ "id": id }))
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
});

/// The event listener holds its connection for as long as it listens: not one of the pool's,
/// or with `database_max_connections = 1` no other query could run (each waited 5 s, then
/// failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_event_listener_holds_no_pool_connection() {
    use sea_orm::sqlx::Connection;
    let Some(app) = crate::support::TestApp::with_config(crate::support::Backend::Postgres, |c| {
        c.database_max_connections = 1
    })
    .await
    else {
        return;
    };
    // Once the listener listens, it has taken whatever connection it holds.
    let url = app.database_url().expect("a PostgreSQL app has a URL");
    let mut watcher = sea_orm::sqlx::postgres::PgConnection::connect(&url)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let listening: i64 = sea_orm::sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if listening > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the event listener never listened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    watcher.close().await.unwrap();
    let started = std::time::Instant::now();
    let tenant = app.create_tenant("acme").await;
    app.ok(&tenant.key, "{ connections { totalCount } }", json!({}))
        .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    app.stop().await;
}

/// A pooled connection the server hung up on while it sat idle (a restart, a failover) is
/// replaced before anyone uses it: no query fails for it. On the pool alone: the server's
/// background tasks would otherwise take and discard some of the dead connections first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pooled_connections_dropped_while_idle_are_replaced_unseen() {
    use sea_orm::ConnectionTrait;
    use sea_orm::sqlx::Connection;
    let Ok(admin_url) = std::env::var("KEYWAY_TEST_DATABASE_URL") else {
        return;
    };
    let database = crate::support::PgDatabase::create(&admin_url).await;
    let config = keyway::config::Config {
        database_url: Some(keyway::crypto::Secret::new(database.url.clone())),
        database_max_connections: 8,
        ..Default::default()
    };
    let pool = keyway::store::connect(&config).await.unwrap();
    // Eight queries at once: eight pooled connections, idle once they are done.
    let opened = futures_util::future::join_all(
        (0..8).map(|_| pool.execute_unprepared("SELECT pg_sleep(0.1)")),
    )
    .await;
    assert!(opened.iter().all(Result::is_ok));

    let mut admin = sea_orm::sqlx::postgres::PgConnection::connect(&database.url)
        .await
        .unwrap();
    let ended: i64 = sea_orm::sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()) AS ended",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(ended, 8, "the pool held {ended} sessions");
    admin.close().await.unwrap();
    // Past the idle time after which a pooled connection is checked before use.
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    for query in 0..8 {
        let answered = pool.execute_unprepared("SELECT 1").await;
        assert!(answered.is_ok(), "query {query}: {answered:?}");
    }
    pool.close().await.unwrap();
    database.drop_database().await;
}

db_test!(missing_scopes_on_a_page_are_each_rows_own, |app| async {
    let tenant = app.create_tenant("acme").await;
    let set_scopes = "mutation($id: ID!, $s: [String!]) { updateIntegration(id: $id, input: {scopes: $s}) { id } }";
    for (service, scopes) in [
        ("github", json!(["repo", "user"])),
        ("gitlab", json!(["api"])),
    ] {
        let id = app.create_integration(&tenant.key, service).await;
        app.ok(&tenant.key, set_scopes, json!({ "id": id, "s": scopes }))
            .await;
    }
    let create = "mutation($c: String!, $s: String!, $g: [String!]) { createConnection(input: {consumerId: $c, serviceId: $s, credentials: {accessToken: \"at\", scopes: $g}}) { id } }";
    let rows = [
        ("a", "github", json!(["repo"])),
        ("b", "gitlab", json!([])),
        ("c", "github", json!(["repo", "user"])),
        ("d", "gitlab", json!(["api"])),
        ("e", "github", json!([])),
    ];
    for (consumer, service, granted) in &rows {
        app.ok(
            &tenant.key,
            create,
            json!({ "c": consumer, "s": service, "g": granted }),
        )
        .await;
    }
    // The rows of one page share their integrations' reads; each row still gets its own answer.
    let data = app
        .ok(
            &tenant.key,
            "{ connections(first: 10) { edges { node { consumerId missingScopes needsReauthorization } } } }",
            json!({}),
        )
        .await;
    let mut seen: Vec<(String, Value, bool)> = data["connections"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let n = &e["node"];
            (
                n["consumerId"].as_str().unwrap().to_owned(),
                n["missingScopes"].clone(),
                n["needsReauthorization"].as_bool().unwrap(),
            )
        })
        .collect();
    seen.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        seen,
        vec![
            ("a".into(), json!(["user"]), true),
            ("b".into(), json!(["api"]), true),
            ("c".into(), json!([]), false),
            ("d".into(), json!([]), false),
            ("e".into(), json!(["repo", "user"]), true),
        ]
    );
});
