//! The built-in demo provider, driven as a browser would: consent page, approve, callback,
//! credentials, a call to its API, refresh with rotation, revocation.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::oauth::{APP_REDIRECT, query_of};
use crate::support::TestApp;

async fn location(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::FOUND);
    response.headers()["location"].to_str().unwrap().to_owned()
}

async fn api_me(app: &TestApp, token: &str) -> StatusCode {
    app.client
        .get(format!("{}/demo-provider/api/me", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

db_test!(connect_call_refresh_revoke_with_no_internet, |app| async {
    let tenant = app.create_tenant("acme").await;
    app.create_integration(&tenant.key, "demo").await;
    let data = app
        .ok(&tenant.key, "mutation($r: String) { createConnectLink(input: {consumerId: \"dana\", serviceId: \"demo\", redirectUri: $r}) { url } }", json!({ "r": APP_REDIRECT }))
        .await;
    let authorize = data["createConnectLink"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        authorize.starts_with(&format!("{}/demo-provider/authorize?", app.base)),
        "{authorize}"
    );

    // The consent page, then "Approve" (a POST, as the form does).
    let page = app.client.get(&authorize).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Approve"));
    let q = query_of(&authorize);
    let form: Vec<(&str, &str)> = vec![
        ("client_id", q["client_id"].as_str()),
        ("redirect_uri", q["redirect_uri"].as_str()),
        ("scope", q["scope"].as_str()),
        ("state", q["state"].as_str()),
        ("code_challenge", q["code_challenge"].as_str()),
        ("decision", "approve"),
    ];
    let to_callback = location(
        app.client
            .post(format!("{}/demo-provider/authorize", app.base))
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        to_callback.contains("/oauth/callback?") && to_callback.contains("iss="),
        "{to_callback}"
    );
    let back = location(app.client.get(&to_callback).send().await.unwrap()).await;
    let connection = query_of(&back)["connection_id"].clone();

    let creds = |force: bool| {
        let app = &app;
        let key = tenant.key.clone();
        let connection = connection.clone();
        async move {
            app.ok(&key, "query($id: ID!, $f: Boolean) { connectionCredentials(id: $id, forceRefresh: $f, includeRefreshToken: true) { accessToken refreshToken expiresAt } }", json!({ "id": connection, "f": force }))
                .await["connectionCredentials"]
                .clone()
        }
    };
    let first: Value = creds(false).await;
    let token = first["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(api_me(&app, &token).await, StatusCode::OK);

    // Refresh rotates both tokens; the old access token keeps working until it expires,
    // the old refresh token is dead.
    let second = creds(true).await;
    assert_ne!(second["accessToken"], first["accessToken"]);
    assert_ne!(second["refreshToken"], first["refreshToken"]);
    assert_eq!(
        api_me(&app, second["accessToken"].as_str().unwrap()).await,
        StatusCode::OK
    );

    // Revocation reaches the provider: the grant is gone there too.
    app.ok(
        &tenant.key,
        "mutation($id: ID!) { revokeConnection(id: $id) { state } }",
        json!({ "id": connection }),
    )
    .await;
    assert_eq!(
        api_me(&app, second["accessToken"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED
    );
});

db_test!(denying_consent_returns_an_error_to_the_app, |app| async {
    let tenant = app.create_tenant("acme").await;
    app.create_integration(&tenant.key, "demo").await;
    let data = app
        .ok(&tenant.key, "mutation($r: String) { createConnectLink(input: {consumerId: \"dana\", serviceId: \"demo\", redirectUri: $r}) { url } }", json!({ "r": APP_REDIRECT }))
        .await;
    let q = query_of(data["createConnectLink"]["url"].as_str().unwrap());
    let form = [
        ("redirect_uri", q["redirect_uri"].as_str()),
        ("state", q["state"].as_str()),
        ("decision", "deny"),
    ];
    let to_callback = location(
        app.client
            .post(format!("{}/demo-provider/authorize", app.base))
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let back = location(app.client.get(&to_callback).send().await.unwrap()).await;
    assert!(back.starts_with(APP_REDIRECT));
    assert_eq!(query_of(&back)["error"], "access_denied");
});
