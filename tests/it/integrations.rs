//! Integrations and the catalog, custom providers, restricted keys, and tenant isolation for
//! every integration and connection operation.

use serde_json::{Value, json};

use crate::db_test;
use crate::support::missing_id;

db_test!(catalog_and_integrations, |app| async {
    let tenant = app.create_tenant("acme").await;
    let data = app
        .ok(&tenant.key, "{ all: providers { serviceId } oauth: providers(filter: {authType: OAUTH2}) { serviceId } crm: providers(filter: {unifiedApi: \"crm\", search: \"sales\"}) { serviceId authorizeUrl pkce hasSandbox settings { id required } } }", json!({}))
        .await;
    assert!(data["all"].as_array().unwrap().len() >= 30);
    assert!(data["oauth"].as_array().unwrap().len() >= 20);
    assert_eq!(data["crm"][0]["serviceId"], "salesforce");
    assert_eq!(data["crm"][0]["hasSandbox"], true);

    let id = app.create_integration(&tenant.key, "hubspot").await;
    let data = app
        .ok(&tenant.key, "query($id: ID!) { integration(id: $id) { serviceId clientId hasClientSecret scopes enabled custom provider { name } } }", json!({ "id": id }))
        .await;
    assert_eq!(
        data["integration"],
        json!({
            "serviceId": "hubspot", "clientId": "client-id", "hasClientSecret": true,
            "scopes": ["oauth", "crm.objects.contacts.read"], "enabled": true, "custom": false,
            "provider": { "name": "HubSpot" }
        })
    );
    assert!(!data.to_string().contains("client-secret-VALUE-42"));
    let code = app
        .error_code(
            &tenant.key,
            "mutation { createIntegration(input: {serviceId: \"hubspot\"}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "CONFLICT");
    let code = app
        .error_code(
            &tenant.key,
            "mutation { createIntegration(input: {serviceId: \"myspace\"}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");

    let data = app
        .ok(&tenant.key, "mutation($id: ID!) { updateIntegration(id: $id, input: {clientSecret: null, scopes: [\"oauth\"], enabled: false}) { hasClientSecret scopes enabled } }", json!({ "id": id }))
        .await;
    assert_eq!(
        data["updateIntegration"],
        json!({ "hasClientSecret": false, "scopes": ["oauth"], "enabled": false })
    );
    let data = app
        .ok(
            &tenant.key,
            "{ integrations(filter: {enabled: false}) { edges { node { serviceId } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["integrations"]["edges"][0]["node"]["serviceId"],
        "hubspot"
    );

    // Deleting is refused while a connection uses it.
    let stripe = app.create_integration(&tenant.key, "stripe").await;
    let conn = app
        .create_stripe_connection(&tenant.key, "alice", "sk_1")
        .await;
    let code = app
        .error_code(
            &tenant.key,
            "mutation($id: ID!) { deleteIntegration(id: $id) { id } }",
            json!({ "id": stripe }),
        )
        .await;
    assert_eq!(code, "CONFLICT");
    app.ok(
        &tenant.key,
        "mutation($id: ID!) { deleteConnection(id: $id) { id } }",
        json!({ "id": conn }),
    )
    .await;
    app.ok(
        &tenant.key,
        "mutation($id: ID!) { deleteIntegration(id: $id) { id } }",
        json!({ "id": stripe }),
    )
    .await;
});

db_test!(custom_providers_are_validated_and_usable, |app| async {
    let tenant = app.create_tenant("acme").await;
    let custom = json!({
        "service_id": "acme-erp", "name": "Acme ERP", "unified_api": "erp", "auth_type": "api_key",
        "base_url": "https://{region}.erp.acme.test/api", "settings": [{"id": "region", "label": "Region", "type": "text", "required": true}],
        "credential_fields": [{"id": "token", "label": "Token", "type": "password", "required": true, "masked": true}],
        "injection": {"type": "header", "name": "X-Acme-Token", "field": "token"}
    });
    let data = app
        .ok(&tenant.key, "mutation($p: JSON) { createIntegration(input: {serviceId: \"acme-erp\", customProvider: $p}) { id custom provider { name baseUrl } } }", json!({ "p": custom }))
        .await;
    assert_eq!(data["createIntegration"]["custom"], true);
    assert_eq!(
        data["createIntegration"]["provider"]["baseUrl"],
        "https://{region}.erp.acme.test/api"
    );
    let data = app
        .ok(&tenant.key, "mutation { createConnection(input: {consumerId: \"c\", serviceId: \"acme-erp\", settings: {region: \"eu\"}, credentials: {fields: {token: \"t0k\"}}}) { id state } }", json!({}))
        .await;
    assert_eq!(data["createConnection"]["state"], "CALLABLE");
    let creds = app
        .ok(
            &tenant.key,
            "query($id: ID!) { connectionCredentials(id: $id) { apiKey } }",
            json!({ "id": data["createConnection"]["id"] }),
        )
        .await;
    assert_eq!(creds["connectionCredentials"]["apiKey"], "t0k");

    for (why, patch) in [
        ("http", json!({ "base_url": "http://erp.acme.test" })),
        (
            "unknown placeholder",
            json!({ "base_url": "https://{tenant}.acme.test" }),
        ),
        ("unknown field", json!({ "surprise": true })),
        ("catalog id", json!({ "service_id": "stripe" })),
    ] {
        let mut bad = custom.clone();
        for (k, v) in patch.as_object().unwrap() {
            bad[k] = v.clone();
        }
        let service = bad["service_id"].as_str().unwrap().to_owned();
        let code = app
            .error_code(&tenant.key, "mutation($s: String!, $p: JSON) { createIntegration(input: {serviceId: $s, customProvider: $p}) { id } }", json!({ "s": service, "p": bad }))
            .await;
        assert_eq!(code, "BAD_USER_INPUT", "{why}");
    }
});

db_test!(a_restricted_key_sees_only_its_integration, |app| async {
    let tenant = app.create_tenant("acme").await;
    let stripe = app.create_integration(&tenant.key, "stripe").await;
    app.create_integration(&tenant.key, "twilio").await;
    let stripe_conn = app
        .create_stripe_connection(&tenant.key, "alice", "sk_1")
        .await;
    let twilio_conn = app
        .ok(&tenant.key, "mutation { createConnection(input: {consumerId: \"alice\", serviceId: \"twilio\", credentials: {fields: {account_sid: \"AC0123456789abcdef0123456789abcdef\", auth_token: \"t\"}}}) { id } }", json!({}))
        .await["createConnection"]["id"]
        .clone();
    let restricted = app
        .ok(&tenant.key, "mutation($i: ID) { createApiKey(input: {label: \"stripe only\", integrationId: $i}) { secret apiKey { integrationId } } }", json!({ "i": stripe }))
        .await["createApiKey"]
        .clone();
    assert_eq!(restricted["apiKey"]["integrationId"], stripe.as_str());
    let key = restricted["secret"].as_str().unwrap();
    let data = app.ok(key, "{ connections { edges { node { serviceId } } } integrations { edges { node { serviceId } } } }", json!({})).await;
    assert_eq!(
        data["connections"]["edges"],
        json!([{ "node": { "serviceId": "stripe" } }])
    );
    assert_eq!(
        data["integrations"]["edges"],
        json!([{ "node": { "serviceId": "stripe" } }])
    );
    app.ok(
        key,
        "query($id: ID!) { connectionCredentials(id: $id) { apiKey } }",
        json!({ "id": stripe_conn }),
    )
    .await;
    let code = app
        .error_code(
            key,
            "query($id: ID!) { connectionCredentials(id: $id) { apiKey } }",
            json!({ "id": twilio_conn }),
        )
        .await;
    assert_eq!(code, "NOT_FOUND");
    // Connecting by service id finds its own integration only.
    let code = app
        .error_code(
            key,
            "mutation { createConnection(input: {consumerId: \"bob\", serviceId: \"twilio\"}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "NOT_FOUND");
    app.ok(
        key,
        "mutation { createConnection(input: {consumerId: \"bob\", serviceId: \"stripe\"}) { id } }",
        json!({}),
    )
    .await;
    let code = app
        .error_code(
            key,
            "mutation { createIntegration(input: {serviceId: \"github\"}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "FORBIDDEN");
});

db_test!(every_connection_operation_is_tenant_isolated, |app| async {
    let a = app.create_tenant("a").await;
    let b = app.create_tenant("b").await;
    app.create_integration(&a.key, "stripe").await;
    let b_integration = app.create_integration(&b.key, "stripe").await;
    let b_conn = app
        .create_stripe_connection(&b.key, "b-user", "sk_B_SECRET")
        .await;
    let cases: [(&str, Value, Value); 9] = [
        (
            "query($id: ID!) { connection(id: $id) { id } }",
            json!({"id": b_conn}),
            json!({"id": missing_id("Connection")}),
        ),
        (
            "query($id: ID!) { node(id: $id) { id } }",
            json!({"id": b_conn}),
            json!({"id": missing_id("Connection")}),
        ),
        (
            "query($id: ID!) { connectionCredentials(id: $id) { apiKey } }",
            json!({"id": b_conn}),
            json!({"id": missing_id("Connection")}),
        ),
        (
            "mutation($id: ID!) { updateConnection(id: $id, input: {metadata: {x: 1}}) { id } }",
            json!({"id": b_conn}),
            json!({"id": missing_id("Connection")}),
        ),
        (
            "mutation($id: ID!) { deleteConnection(id: $id) { id } }",
            json!({"id": b_conn}),
            json!({"id": missing_id("Connection")}),
        ),
        (
            "query($id: ID!) { resourceSettings(connectionId: $id, resource: \"x\") }",
            json!({"id": b_conn}),
            json!({"id": missing_id("Connection")}),
        ),
        (
            "query($id: ID!) { integration(id: $id) { id } }",
            json!({"id": b_integration}),
            json!({"id": missing_id("Integration")}),
        ),
        (
            "mutation($id: ID!) { updateIntegration(id: $id, input: {enabled: false}) { id } }",
            json!({"id": b_integration}),
            json!({"id": missing_id("Integration")}),
        ),
        (
            "mutation($id: ID) { createConnection(input: {consumerId: \"x\", integrationId: $id}) { id } }",
            json!({"id": b_integration}),
            json!({"id": missing_id("Integration")}),
        ),
    ];
    for (query, foreign, missing) in cases {
        let (_, f) = app.graphql(&a.key, query, foreign).await;
        let (_, m) = app.graphql(&a.key, query, missing).await;
        assert_eq!(
            f["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{query}: {f}"
        );
        assert_eq!(
            f["errors"][0]["message"], m["errors"][0]["message"],
            "{query}"
        );
        assert_eq!(f["data"], m["data"], "{query}");
    }
    let data = app.ok(&a.key, "{ connections(filter: {consumerId: \"b-user\"}) { totalCount } consumerIntegrations(consumerId: \"b-user\") { state } }", json!({})).await;
    assert_eq!(data["connections"]["totalCount"], 0);
    assert_eq!(
        data["consumerIntegrations"],
        json!([{ "state": "AVAILABLE" }])
    );
    // B's connection is untouched.
    let data = app
        .ok(
            &b.key,
            "query($id: ID!) { connectionCredentials(id: $id) { apiKey } }",
            json!({ "id": b_conn }),
        )
        .await;
    assert_eq!(data["connectionCredentials"]["apiKey"], "sk_B_SECRET");
});
