//! The OAuth connect flow against a fake provider: PKCE, state, redirect URI and issuer
//! rules, replay, errors, and the public-key connect link.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_provider::FakeProvider;
use crate::support::{Backend, Tenant, TestApp};

pub const APP_REDIRECT: &str = "https://app.example.com/done";

pub async fn setup(backend: Backend) -> Option<(TestApp, FakeProvider, Tenant, String)> {
    setup_with(backend, |_| {}).await
}

pub async fn setup_with(
    backend: Backend,
    tweak: impl FnOnce(&mut keyway::config::Config),
) -> Option<(TestApp, FakeProvider, Tenant, String)> {
    let fake = FakeProvider::start().await;
    let host = fake.host();
    let app = TestApp::with_config(backend, |c| {
        c.allowed_private_hosts = vec![host];
        tweak(c);
    })
    .await?;
    let tenant = app.create_tenant("acme").await;
    let data = app
        .ok(&tenant.key, "mutation($p: JSON) { createIntegration(input: {serviceId: \"fake\", clientId: \"cid\", clientSecret: \"csecret\", customProvider: $p}) { id } }", json!({ "p": fake.definition() }))
        .await;
    let integration = data["createIntegration"]["id"].as_str().unwrap().to_owned();
    Some((app, fake, tenant, integration))
}

pub fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

pub async fn connect_link(app: &TestApp, key: &str, redirect: &str) -> Value {
    let (_, body) = app
        .graphql(key, "mutation($r: String) { createConnectLink(input: {consumerId: \"alice\", serviceId: \"fake\", redirectUri: $r}) { url expiresAt } }", json!({ "r": redirect }))
        .await;
    body
}

/// A connect link for `alice`, her consent at the fake, and Keyway's callback: where Keyway
/// then sends the browser (the app's redirect URI, with the outcome in its query).
pub async fn consent_and_return(app: &TestApp, fake: &FakeProvider, key: &str) -> String {
    let body = connect_link(app, key, APP_REDIRECT).await;
    let q = query_of(body["data"]["createConnectLink"]["url"].as_str().unwrap());
    let code = fake.issue_code(&q["code_challenge"]);
    let done = callback(app, &[("code", &code), ("state", &q["state"])]).await;
    done.headers()["location"].to_str().unwrap().to_owned()
}

pub async fn callback(app: &TestApp, query: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .get(format!("{}/oauth/callback", app.base))
        .query(query)
        .send()
        .await
        .unwrap()
}

macro_rules! oauth_test {
    ($name:ident, |$app:ident, $fake:ident, $tenant:ident, $integration:ident| $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let ($app, $fake, $tenant, $integration) = setup(Backend::Sqlite).await.unwrap();
                $body.await;
                $app.stop().await;
                $fake.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(($app, $fake, $tenant, $integration)) = setup(Backend::Postgres).await
                else {
                    return;
                };
                $body.await;
                $app.stop().await;
                $fake.stop().await;
            }
        }
    };
}

oauth_test!(
    full_flow_with_pkce_then_replay_is_refused,
    |app, fake, tenant, _integration| async {
        let body = connect_link(&app, &tenant.key, APP_REDIRECT).await;
        let url = body["data"]["createConnectLink"]["url"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            url.starts_with(&format!("{}/authorize?", fake.base)),
            "{url}"
        );
        let q = query_of(&url);
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "cid");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["scope"], "read,write");
        assert!(q["redirect_uri"].ends_with("/oauth/callback"));
        assert!(q["state"].len() >= 43, "state must carry at least 128 bits");

        let code = fake.issue_code(&q["code_challenge"]);
        let response = callback(&app, &[("code", &code), ("state", &q["state"])]).await;
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(response.headers()["referrer-policy"], "no-referrer");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with(APP_REDIRECT), "{location}");
        let connection_id = query_of(&location)["connection_id"].clone();
        assert_eq!(fake.token_requests(), 1);

        let data = app
        .ok(&tenant.key, "query($id: ID!) { connection(id: $id) { state consumerId grantedScopes expiresAt } connectionCredentials(id: $id, includeRefreshToken: true) { accessToken refreshToken } }", json!({ "id": connection_id }))
        .await;
        assert_eq!(data["connection"]["state"], "CALLABLE");
        assert_eq!(data["connection"]["consumerId"], "alice");
        assert!(data["connection"]["expiresAt"].is_string());
        assert_eq!(data["connectionCredentials"]["accessToken"], "at-1");
        assert_eq!(data["connectionCredentials"]["refreshToken"], "rt-1");

        // Granted scopes are stored; asking for more later flags the connection.
        let data = app
            .ok(
                &tenant.key,
                "query($id: ID!) { connection(id: $id) { grantedScopes needsReauthorization } }",
                json!({ "id": connection_id }),
            )
            .await;
        assert_eq!(
            data["connection"],
            json!({ "grantedScopes": ["read", "write"], "needsReauthorization": false })
        );
        let integration = app
            .ok(
                &tenant.key,
                "{ integrations { edges { node { id } } } }",
                json!({}),
            )
            .await["integrations"]["edges"][0]["node"]["id"]
            .clone();
        app.ok(&tenant.key, "mutation($id: ID!) { updateIntegration(id: $id, input: {scopes: [\"read\", \"write\", \"admin\"]}) { id } }", json!({ "id": integration })).await;
        let data = app
            .ok(
                &tenant.key,
                "query($id: ID!) { connection(id: $id) { missingScopes needsReauthorization } }",
                json!({ "id": connection_id }),
            )
            .await;
        assert_eq!(
            data["connection"],
            json!({ "missingScopes": ["admin"], "needsReauthorization": true })
        );

        // The same callback again: refused, and no second token request.
        let replay = callback(&app, &[("code", &code), ("state", &q["state"])]).await;
        assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
        assert!(replay.headers().get("location").is_none());
        assert_eq!(fake.token_requests(), 1);
    }
);

oauth_test!(
    unknown_tampered_and_expired_states_are_refused,
    |app, fake, tenant, _integration| async {
        let body = connect_link(&app, &tenant.key, APP_REDIRECT).await;
        let q = query_of(body["data"]["createConnectLink"]["url"].as_str().unwrap());
        let code = fake.issue_code(&q["code_challenge"]);
        let mut tampered = q["state"].clone();
        tampered.replace_range(0..1, if tampered.starts_with('A') { "B" } else { "A" });
        for state in ["", "nope", tampered.as_str()] {
            let response = callback(&app, &[("code", &code), ("state", state)]).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{state}");
        }
        // Expire the flow: the real state then gets nothing either.
        use sea_orm::ConnectionTrait;
        app.db()
            .execute_unprepared("UPDATE oauth_flows SET expires_at = created_at")
            .await
            .unwrap();
        let response = callback(&app, &[("code", &code), ("state", &q["state"])]).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(fake.token_requests(), 0);
        // Expired flows are purged; live ones are not.
        let purged = keyway::service::oauth::purge_expired_flows(app.db())
            .await
            .unwrap();
        assert_eq!(purged, 1);
        connect_link(&app, &tenant.key, APP_REDIRECT).await;
        let purged = keyway::service::oauth::purge_expired_flows(app.db())
            .await
            .unwrap();
        assert_eq!(purged, 0);
    }
);

oauth_test!(
    provider_errors_and_issuer_mismatch_redirect_cleanly,
    |app, fake, tenant, _integration| async {
        let body = connect_link(&app, &tenant.key, APP_REDIRECT).await;
        let q = query_of(body["data"]["createConnectLink"]["url"].as_str().unwrap());
        let response = callback(&app, &[("error", "access_denied"), ("state", &q["state"])]).await;
        assert_eq!(response.status(), StatusCode::FOUND);
        let location = response.headers()["location"].to_str().unwrap();
        assert_eq!(query_of(location)["error"], "access_denied");

        let body = connect_link(&app, &tenant.key, APP_REDIRECT).await;
        let q = query_of(body["data"]["createConnectLink"]["url"].as_str().unwrap());
        let code = fake.issue_code(&q["code_challenge"]);
        let response = callback(
            &app,
            &[
                ("code", &code),
                ("state", &q["state"]),
                ("iss", "https://evil.example"),
            ],
        )
        .await;
        let location = response.headers()["location"].to_str().unwrap();
        assert_eq!(query_of(location)["error"], "invalid_request");
        // The right issuer would have been accepted; the wrong one got no token request.
        assert_eq!(fake.token_requests(), 0);
        let data = app
            .ok(&tenant.key, "{ connections { totalCount } }", json!({}))
            .await;
        assert_eq!(data["connections"]["totalCount"], 0);
    }
);

// RFC 9207 for an authorization server under a path (a Keycloak realm, an Okta server):
// its issuer is a path the authorize URL sits under; a sibling's is refused, and a catalog
// `issuer` is matched exactly.
oauth_test!(
    an_issuer_above_the_authorize_url_is_accepted_a_siblings_is_not,
    |app, fake, tenant, _integration| async {
        let realm = format!("{}/realms/acme", fake.base);
        let add = |service: &str, issuer: Option<&str>| {
            let mut definition = fake.definition();
            definition["service_id"] = json!(service);
            definition["oauth"]["authorize_url"] = json!(format!("{realm}/protocol/auth"));
            if let Some(issuer) = issuer {
                definition["oauth"]["issuer"] = json!(issuer);
            }
            definition
        };
        for (service, issuer) in [("realm", None), ("pinned", Some(realm.as_str()))] {
            app.ok(&tenant.key, "mutation($s: String!, $p: JSON) { createIntegration(input: {serviceId: $s, clientId: \"cid\", clientSecret: \"csecret\", customProvider: $p}) { id } }", json!({ "s": service, "p": add(service, issuer) }))
                .await;
        }
        let attempt = async |service: &str, iss: &str| {
            let data = app
                .ok(&tenant.key, "mutation($s: String!, $r: String) { createConnectLink(input: {consumerId: \"alice\", serviceId: $s, redirectUri: $r}) { url } }", json!({ "s": service, "r": APP_REDIRECT }))
                .await;
            let q = query_of(data["createConnectLink"]["url"].as_str().unwrap());
            let code = fake.issue_code(&q["code_challenge"]);
            let response = callback(
                &app,
                &[("code", &code), ("state", &q["state"]), ("iss", iss)],
            )
            .await;
            query_of(response.headers()["location"].to_str().unwrap())
        };
        let sibling = attempt("realm", &format!("{}/realms/other", fake.base)).await;
        assert_eq!(sibling["error"], "invalid_request");
        let origin = attempt("pinned", &fake.base).await;
        assert_eq!(origin["error"], "invalid_request");
        assert_eq!(fake.token_requests(), 0);

        let under = attempt("realm", &realm).await;
        assert!(under.contains_key("connection_id"), "{under:?}");
        let pinned = attempt("pinned", &format!("{realm}/")).await;
        assert!(pinned.contains_key("connection_id"), "{pinned:?}");
        assert_eq!(fake.token_requests(), 2);

        let (_, body) = app.graphql(&tenant.key, "mutation($p: JSON) { createIntegration(input: {serviceId: \"queried\", clientId: \"cid\", customProvider: $p}) { id } }", json!({ "p": add("queried", Some(&format!("{realm}?tenant=1"))) }))
            .await;
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("issuer may have no query"), "{message}");
    }
);

oauth_test!(
    redirect_uris_must_match_exactly,
    |app, fake, tenant, integration| async {
        let _ = &fake;
        for bad in [
            "//evil.com",
            "https://app.example.com.evil.com/done",
            "javascript:alert(1)",
            "https://app.example.com/done/",
            "https://app.example.com:444/done",
            "https://APP.example.com/done",
            "https://app.example.com/done?x=1",
        ] {
            let body = connect_link(&app, &tenant.key, bad).await;
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
                "{bad}"
            );
            let data = app
                .ok(
                    &tenant.key,
                    "query($id: ID!) { apiKeys { publicKey } integration(id: $id) { id } }",
                    json!({ "id": integration }),
                )
                .await;
            let public = data["apiKeys"][0]["publicKey"].as_str().unwrap().to_owned();
            let response = app
                .client
                .get(format!("{}/connect/{integration}", app.base))
                .query(&[
                    ("public_key", public.as_str()),
                    ("consumer_id", "x"),
                    ("redirect_uri", bad),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
            assert!(response.headers().get("location").is_none());
        }
    }
);

oauth_test!(
    public_key_links_always_create_a_new_connection,
    |app, fake, tenant, integration| async {
        let data = app
            .ok(&tenant.key, "{ apiKeys { publicKey } }", json!({}))
            .await;
        let public = data["apiKeys"][0]["publicKey"].as_str().unwrap().to_owned();
        let mut ids = Vec::new();
        for _ in 0..2 {
            let response = app
                .client
                .get(format!("{}/connect/{integration}", app.base))
                .query(&[
                    ("public_key", public.as_str()),
                    ("consumer_id", "alice"),
                    ("redirect_uri", APP_REDIRECT),
                    ("connection_id", "ignored"),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::FOUND);
            let q = query_of(response.headers()["location"].to_str().unwrap());
            let code = fake.issue_code(&q["code_challenge"]);
            let done = callback(&app, &[("code", &code), ("state", &q["state"])]).await;
            ids.push(
                query_of(done.headers()["location"].to_str().unwrap())["connection_id"].clone(),
            );
        }
        assert_ne!(ids[0], ids[1]);
        let data = app
            .ok(
                &tenant.key,
                "{ connections(filter: {consumerId: \"alice\"}) { totalCount } }",
                json!({}),
            )
            .await;
        assert_eq!(data["connections"]["totalCount"], 2);

        // A revoked key's public twin starts nothing; an unknown one neither.
        app.ok(
            &tenant.key,
            "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
            json!({ "id": tenant.key_id }),
        )
        .await;
        for key in [public.as_str(), "kw_pk_unknown"] {
            let response = app
                .client
                .get(format!("{}/connect/{integration}", app.base))
                .query(&[
                    ("public_key", key),
                    ("consumer_id", "alice"),
                    ("redirect_uri", APP_REDIRECT),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{key}");
        }
    }
);

oauth_test!(
    authorize_url_reauthorizes_the_same_connection,
    |app, fake, tenant, _integration| async {
        app.ok(&app.operator, "mutation($id: ID!) { updateApplication(id: $id, input: {defaultRedirectUri: \"https://app.example.com/done\"}) { id } }", json!({ "id": tenant.id }))
        .await;
        let location = consent_and_return(&app, &fake, &tenant.key).await;
        let id = query_of(&location)["connection_id"].clone();

        let data = app
            .ok(
                &tenant.key,
                "query($id: ID!) { connection(id: $id) { authorizeUrl } }",
                json!({ "id": id }),
            )
            .await;
        let link = data["connection"]["authorizeUrl"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            link.starts_with(&format!("{}/oauth/authorize/", app.base)),
            "{link}"
        );

        // A tampered signature starts nothing.
        let tampered = format!("{}x", link);
        let response = app.client.get(&tampered).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);

        let response = app.client.get(&link).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FOUND);
        let q = query_of(response.headers()["location"].to_str().unwrap());
        let code = fake.issue_code(&q["code_challenge"]);
        let done = callback(&app, &[("code", &code), ("state", &q["state"])]).await;
        let location = done.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with(APP_REDIRECT));
        assert_eq!(
            query_of(&location)["connection_id"],
            id,
            "the same connection, re-authorized"
        );
        let data = app
            .ok(&tenant.key, "{ connections { totalCount } }", json!({}))
            .await;
        assert_eq!(data["connections"]["totalCount"], 1);
        let data = app
            .ok(
                &tenant.key,
                "query($id: ID!) { connectionCredentials(id: $id) { accessToken } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(data["connectionCredentials"]["accessToken"], "at-2");
    }
);

oauth_test!(
    the_token_request_follows_no_redirects,
    |app, fake, tenant, _integration| async {
        let target = format!("{}/elsewhere", fake.base);
        fake.set(|s| s.redirect_token_to = Some(target));
        let location = consent_and_return(&app, &fake, &tenant.key).await;
        assert_eq!(query_of(&location)["error"], "server_error");
        assert_eq!(fake.token_requests(), 1);
        assert_eq!(
            fake.state.lock().unwrap().elsewhere_hits,
            0,
            "the redirect was followed"
        );
    }
);
