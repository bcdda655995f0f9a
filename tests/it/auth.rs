//! Who may call: missing, unknown, altered and revoked credentials; operator-only operations.

use reqwest::StatusCode;
use serde_json::json;

use crate::db_test;
use crate::support::first_code;

db_test!(revoked_key_is_refused_on_its_next_request, |app| async {
    let tenant = app.create_tenant("acme").await;
    app.ok(&tenant.key, "{ viewer { kind } }", json!({})).await;
    app.ok(
        &tenant.key,
        "mutation($id: ID!) { revokeApiKey(id: $id) { active revokedAt } }",
        json!({ "id": tenant.key_id }),
    )
    .await;
    let (status, body) = app
        .graphql(&tenant.key, "{ viewer { kind } }", json!({}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(first_code(&body), "UNAUTHENTICATED");
});

db_test!(
    altered_missing_and_foreign_tokens_are_refused,
    |app| async {
        let tenant = app.create_tenant("acme").await;
        let mut altered = tenant.key.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        for token in [
            altered.as_str(),
            "kw_sk_",
            "kw_admin_nope",
            "not-a-token",
            &"kw_sk_x".repeat(100),
        ] {
            let (status, body) = app.graphql(token, "{ viewer { kind } }", json!({})).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}");
            assert_eq!(first_code(&body), "UNAUTHENTICATED");
            // RFC 6750 §3.1: a presented token that is not valid is named as such, on the
            // GraphQL endpoint and on the raw proxy alike.
            for response in [
                app.client
                    .post(format!("{}/graphql", app.base))
                    .bearer_auth(token)
                    .json(&json!({ "query": "{ viewer { kind } }" }))
                    .send()
                    .await
                    .unwrap(),
                app.client
                    .get(format!("{}/proxy/{}/items", app.base, uuid::Uuid::nil()))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap(),
            ] {
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token}");
                assert_eq!(
                    response.headers()["www-authenticate"],
                    "Bearer error=\"invalid_token\"",
                    "{token}"
                );
            }
        }
        // No credential at all: a bare challenge, no error code (RFC 6750 §3.1).
        let response = app
            .client
            .post(format!("{}/graphql", app.base))
            .json(&json!({ "query": "{ viewer { kind } }" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
);

db_test!(
    operator_only_operations_are_forbidden_to_secret_keys,
    |app| async {
        let tenant = app.create_tenant("acme").await;
        let cases = [
            ("{ applications { edges { node { id } } } }", json!({})),
            (
                "mutation { createApplication(input: {name: \"x\"}) { id } }",
                json!({}),
            ),
            (
                "mutation($id: ID!) { updateApplication(id: $id, input: {name: \"renamed\"}) { id } }",
                json!({ "id": tenant.id }),
            ),
        ];
        for (query, vars) in cases {
            assert_eq!(
                app.error_code(&tenant.key, query, vars).await,
                "FORBIDDEN",
                "{query}"
            );
        }
        let data = app
            .ok(
                &app.operator,
                "{ applications { edges { node { name } } totalCount } }",
                json!({}),
            )
            .await;
        assert_eq!(data["applications"]["totalCount"], 1);
        assert_eq!(data["applications"]["edges"][0]["node"]["name"], "acme");
    }
);

db_test!(viewer_tells_who_is_calling, |app| async {
    let tenant = app.create_tenant("acme").await;
    let data = app
        .ok(
            &tenant.key,
            "{ viewer { kind application { id name } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["viewer"]["kind"], "SECRET_KEY");
    assert_eq!(data["viewer"]["application"]["id"], tenant.id.as_str());
    let data = app
        .ok(
            &app.operator,
            "{ viewer { kind application { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["viewer"]["kind"], "OPERATOR");
    assert!(data["viewer"]["application"].is_null());
});
