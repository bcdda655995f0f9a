//! API keys: the secret is shown once and stored only as a hash; last use is recorded in
//! batches, off the request path.

use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::db_test;

db_test!(secret_is_shown_once_and_only_hashed_at_rest, |app| async {
    let tenant = app.create_tenant("acme").await;
    assert!(tenant.key.starts_with("kw_sk_"));
    assert!(tenant.key.len() >= "kw_sk_".len() + 43, "at least 256 bits");

    let data = app
        .ok(
            &tenant.key,
            "{ apiKeys { id label prefix publicKey active createdAt lastUsedAt revokedAt } }",
            json!({}),
        )
        .await;
    let listed = data["apiKeys"].to_string();
    assert!(
        !listed.contains(&tenant.key),
        "a list must never hold the secret"
    );
    let key = &data["apiKeys"][0];
    assert!(tenant.key.starts_with(key["prefix"].as_str().unwrap()));
    assert!(key["prefix"].as_str().unwrap().len() < 16);
    assert!(key["publicKey"].as_str().unwrap().starts_with("kw_pk_"));

    // The stored row holds a 32-byte hash, not the secret.
    let backend = app.db().get_database_backend();
    let rows = app
        .db()
        .query_all_raw(Statement::from_string(backend, "SELECT * FROM api_keys"))
        .await
        .unwrap();
    let hash: Vec<u8> = rows[0].try_get("", "secret_hash").unwrap();
    assert_eq!(hash, keyway::crypto::tokens::hash_secret(&tenant.key));
    for column in ["label", "secret_prefix", "public_key"] {
        let text: String = rows[0].try_get("", column).unwrap();
        assert!(
            !text.contains(&tenant.key[12..]),
            "{column} holds the secret"
        );
    }
});

db_test!(
    last_used_is_recorded_without_a_write_per_request,
    |app| async {
        let tenant = app.create_tenant("acme").await;
        let query = "{ apiKeys { lastUsedAt } }";
        // Requests only note the time in memory…
        let before = app.ok(&tenant.key, query, json!({})).await;
        assert!(before["apiKeys"][0]["lastUsedAt"].is_null());
        // …which the background batch writes.
        let written = app
            .server()
            .state()
            .last_used
            .flush(app.db())
            .await
            .unwrap();
        assert!(written >= 1);
        let after = app.ok(&tenant.key, query, json!({})).await;
        assert!(after["apiKeys"][0]["lastUsedAt"].is_string(), "{after}");
    }
);

db_test!(keys_manage_their_own_application, |app| async {
    let tenant = app.create_tenant("acme").await;
    let data = app
        .ok(
            &tenant.key,
            "mutation { createApiKey(input: {label: \"ci\"}) { secret apiKey { id label } } }",
            json!({}),
        )
        .await;
    let second = data["createApiKey"]["secret"].as_str().unwrap().to_owned();
    let second_id = data["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.ok(&second, "{ viewer { kind } }", json!({})).await;

    // Revoking one key leaves the other working.
    app.ok(
        &tenant.key,
        "mutation($id: ID!) { revokeApiKey(id: $id) { active } }",
        json!({ "id": second_id }),
    )
    .await;
    app.ok(&tenant.key, "{ viewer { kind } }", json!({})).await;
    let data = app
        .ok(&tenant.key, "{ apiKeys { label active } }", json!({}))
        .await;
    assert_eq!(
        data["apiKeys"],
        json!([{ "label": "main", "active": true }, { "label": "ci", "active": false }])
    );

    // Restricting a key to an integration that does not exist is NOT_FOUND.
    let unknown = crate::support::missing_id("Integration");
    let code = app
        .error_code(
            &tenant.key,
            "mutation($i: ID) { createApiKey(input: {label: \"x\", integrationId: $i}) { secret } }",
            json!({ "i": unknown }),
        )
        .await;
    assert_eq!(code, "NOT_FOUND");
    let code = app
        .error_code(
            &tenant.key,
            "mutation { createApiKey(input: {label: \"  \"}) { secret } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
});

db_test!(
    a_refused_key_is_refused_again_without_a_database_lookup,
    |app| async {
        let tenant = app.create_tenant("acme").await;
        let data = app
            .ok(
                &tenant.key,
                "mutation { createApiKey(input: {label: \"old\"}) { secret apiKey { id } } }",
                json!({}),
            )
            .await;
        let old = data["createApiKey"]["secret"].as_str().unwrap().to_owned();
        app.ok(
            &tenant.key,
            "mutation($id: ID!) { revokeApiKey(id: $id) { active } }",
            json!({ "id": data["createApiKey"]["apiKey"]["id"] }),
        )
        .await;
        const QUERY: &str = "{ viewer { kind } }";
        assert_eq!(
            app.error_code(&old, QUERY, json!({})).await,
            "UNAUTHENTICATED"
        );

        // With the keys' table away, a lookup fails; the revoked key is still refused as it
        // was, without one, while a key never seen is looked up (and fails).
        app.db()
            .execute_unprepared("ALTER TABLE api_keys RENAME TO api_keys_away")
            .await
            .unwrap();
        let revoked = app.error_code(&old, QUERY, json!({})).await;
        let last = if old.ends_with('A') { "B" } else { "A" };
        let unseen = format!("{}{last}", &old[..old.len() - 1]);
        let looked_up = app.error_code(&unseen, QUERY, json!({})).await;
        app.db()
            .execute_unprepared("ALTER TABLE api_keys_away RENAME TO api_keys")
            .await
            .unwrap();
        assert_eq!(revoked, "UNAUTHENTICATED");
        assert_eq!(looked_up, "INTERNAL");
        // A database failure is not remembered as a refusal.
        assert_eq!(
            app.error_code(&unseen, QUERY, json!({})).await,
            "UNAUTHENTICATED"
        );
        app.ok(&tenant.key, QUERY, json!({})).await;
    }
);
