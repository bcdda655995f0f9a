//! `POST /graphql` as GraphQL over HTTP asks: the answer's media type follows `Accept`, and with
//! `application/graphql-response+json` a request refused before it ran is a 4xx with no `data`
//! entry, while one that ran (even with `data: null`) is a 200.

use std::io::{Read, Write};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::support::{TestApp, first_code, nodes, two_on_one_connection};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// POSTs `body` as JSON with `accept` and returns status, content type and body.
async fn post(app: &TestApp, key: &str, accept: &str, body: &str) -> (StatusCode, String, Value) {
    post_typed(app, key, Some("application/json"), accept, body).await
}

/// POSTs `body` declared as `content_type` (no header when `None`).
async fn post_typed(
    app: &TestApp,
    key: &str,
    content_type: Option<&str>,
    accept: &str,
    body: &str,
) -> (StatusCode, String, Value) {
    let mut request = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth(key)
        .header("accept", accept)
        .body(body.to_owned());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let media = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, media, json)
}

fn query(text: &str) -> String {
    json!({ "query": text }).to_string()
}

db_test!(answers_follow_the_accept_header, |app| async {
    let tenant = app.create_tenant("acme").await;
    let key = tenant.key.as_str();
    let apollo = "application/graphql-response+json,application/json;q=0.9";

    // A request that runs: 200 in either type, `data` present.
    let (status, media, body) = post(&app, key, apollo, &query("{ viewer { kind } }")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(media.starts_with(GRAPHQL_RESPONSE), "{media}");
    assert_eq!(body["data"]["viewer"]["kind"], "SECRET_KEY", "{body}");

    // Refused before it ran (does not parse; does not validate; a variable of the wrong
    // type): 400 with no `data` entry in the new type…
    let variables_wrong = json!({
        "query": "query($c: String!) { consumer(consumerId: $c) { id } }",
        "variables": { "c": 12 }
    })
    .to_string();
    for request in [
        query("{ viewer { kind "),
        query("{ nope }"),
        variables_wrong,
    ] {
        let (status, media, body) = post(&app, key, apollo, &request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{request}: {body}");
        assert!(media.starts_with(GRAPHQL_RESPONSE), "{media}");
        assert!(body.get("data").is_none(), "{request}: {body}");
        assert_eq!(first_code(&body), "BAD_USER_INPUT", "{body}");

        // …and 200, still with no `data` entry, in the legacy type.
        let (status, media, body) = post(&app, key, "application/json", &request).await;
        assert_eq!(status, StatusCode::OK, "{request}: {body}");
        assert_eq!(media, "application/json");
        assert!(body.get("data").is_none(), "{request}: {body}");
        assert_eq!(first_code(&body), "BAD_USER_INPUT", "{body}");
    }

    // Not a GraphQL request at all (no query; not JSON): 400 in either type.
    for accept in [apollo, "application/json"] {
        for request in [
            json!({ "qeury": "{ viewer { kind } }" }).to_string(),
            "[{}]".into(),
            "{".into(),
        ] {
            let (status, _, body) = post(&app, key, accept, &request).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{accept} {request}: {body}"
            );
            assert_eq!(first_code(&body), "BAD_USER_INPUT");
        }
    }

    // Ran, and a field failed up to the root: `data: null` is present and the status is 200.
    let (status, _, body) = post(
        &app,
        key,
        apollo,
        &query("{ logs(first: -1) { edges { cursor } } }"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("data").is_some_and(Value::is_null), "{body}");
    assert_eq!(first_code(&body), "BAD_USER_INPUT", "{body}");

    // No credential: 401 in the type asked for.
    let (status, media, _) = post(&app, "kw_sk_nope", apollo, &query("{ viewer { kind } }")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(media.starts_with(GRAPHQL_RESPONSE), "{media}");

    // Wildcards get the legacy type; a caller accepting neither type gets 406.
    let (_, media, _) = post(&app, key, "*/*", &query("{ viewer { kind } }")).await;
    assert_eq!(media, "application/json");
    let (status, _, body) = post(&app, key, "text/html", &query("{ viewer { kind } }")).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{body}");
    assert_eq!(first_code(&body), "BAD_USER_INPUT");

    // No Accept header at all: the new type (reqwest always sends one, so a raw request).
    let (head, body) = post_without_accept(&app, key, &query("{ nope }"));
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-type: {GRAPHQL_RESPONSE}")),
        "{head}"
    );
    assert!(body.get("data").is_none(), "{body}");
});

db_test!(a_refused_post_keeps_its_connection, |app| async {
    let addr = app.base.trim_start_matches("http://").to_owned();
    let body = r#"{"query":"{ viewer { kind } }"}"#;
    let post = |key: &str, length: usize, body: &str| {
        format!(
            "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n{body}"
        )
    };
    let health = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    // Refused before its body is read: the body is still read, and the connection serves
    // the next request.
    let (head, next) =
        two_on_one_connection(&app, &post("kw_sk_not_a_key", body.len(), body), &health);
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(next.as_deref(), Some("http/1.1 200 ok"));
    // A body that does not come is not waited for long: the answer goes after a second,
    // and that connection closes.
    let started = std::time::Instant::now();
    let (head, next) = two_on_one_connection(&app, &post("kw_sk_not_a_key", 100, "{}"), &health);
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(next, None);
});

/// A POST with no `Accept` header, written by hand: the head as text and the body as JSON.
fn post_without_accept(app: &TestApp, key: &str, body: &str) -> (String, Value) {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), serde_json::from_str(body).unwrap())
}

db_test!(
    a_failed_graphql_call_is_logged_with_its_errors_status,
    |app| async {
        let tenant = app.create_tenant("acme").await;
        let key = tenant.key.as_str();
        // Fails inside the answer (HTTP 200 in the legacy type), and refused before running.
        let (status, _) = app
            .graphql(
                key,
                "{ consumer(consumerId: \"nobody\") { id } }",
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = post(&app, key, "application/json", &query("{ nope }")).await;
        assert_eq!(status, StatusCode::OK);
        app.server().state().logs.flush(app.db()).await.unwrap();

        let data = app
        .ok(key, "{ logs(first: 2) { edges { node { operation statusCode success errorMessage } } } }", json!({}))
        .await;
        let nodes = nodes(&data, "logs");
        // Newest first.
        assert_eq!(nodes[0]["statusCode"], 400, "{data}");
        assert_eq!(nodes[0]["errorMessage"], "BAD_USER_INPUT");
        assert_eq!(nodes[1]["operation"], "consumer");
        assert_eq!(nodes[1]["statusCode"], 404, "{data}");
        assert_eq!(nodes[1]["success"], false);
        assert_eq!(nodes[1]["errorMessage"], "NOT_FOUND");
    }
);

db_test!(
    a_body_that_does_not_say_it_is_json_is_refused_unrun,
    |app| async {
        let tenant = app.create_tenant("acme").await;
        let key = tenant.key.as_str();
        let create = query("mutation { upsertConsumer(input: {consumerId: \"sneaky\"}) { id } }");
        // What an HTML form or a cross-site "simple" request can send, none, or not UTF-8.
        for content_type in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/json; charset=iso-8859-1"),
            None,
        ] {
            let (status, _, body) =
                post_typed(&app, key, content_type, "application/json", &create).await;
            assert_eq!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{content_type:?}"
            );
            assert_eq!(first_code(&body), "BAD_USER_INPUT", "{content_type:?}");
        }
        let data = app.ok(key, "{ consumers { totalCount } }", json!({})).await;
        assert_eq!(data["consumers"]["totalCount"], 0, "nothing ran");

        // JSON with or without its charset runs.
        for content_type in ["application/json", "application/json; charset=UTF-8"] {
            let (status, _, body) = post_typed(
                &app,
                key,
                Some(content_type),
                "application/json",
                &query("{ viewer { kind } }"),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{content_type}: {body}");
        }
    }
);

db_test!(
    a_graphql_request_sent_as_get_is_405_naming_post,
    |app| async {
        let tenant = app.create_tenant("acme").await;
        let response = app
            .client
            .get(format!("{}/graphql?query=%7Bviewer%7Bkind%7D%7D", app.base))
            .bearer_auth(&tenant.key)
            .header("accept", "application/graphql-response+json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()["allow"], "POST");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(GRAPHQL_RESPONSE)
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(first_code(&body), "BAD_USER_INPUT");
        // Without a query it is GraphiQL's page, as before.
        let page = app
            .client
            .get(format!("{}/graphql", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
    }
);
