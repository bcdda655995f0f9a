//! The proxy: URL confinement (path-escape and SSRF matrix), header stripping, credential
//! injection, redirects not followed, 401 → refresh → retry, 429 passed through, body limits,
//! streaming, the credential cache, request logs, and plan and rate limits.

use std::io::{Read, Write};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_provider::FakeProvider;
use crate::oauth::setup_with;
use crate::refresh::connected;
use crate::support::{Backend, Tenant, TestApp, first_code, nodes, two_on_one_connection};

const USAGE: &str = "{ viewer { application { planUsage { minute { used limit remaining resetsAt } month { used limit remaining resetsAt } } } } }";
const PROXY: &str = "mutation($i: ProxyInput!) { proxy(input: $i) { status headers { name value } body bodyEncoding json connectionId } }";

macro_rules! proxy_test {
    ($name:ident, $tweak:expr, |$app:ident, $fake:ident, $tenant:ident, $id:ident| $body:expr) => {
        mod $name {
            use super::*;

            async fn run(backend: Backend) {
                if stringify!($name).contains("limit") {
                    avoid_minute_boundary().await;
                }
                let Some(($app, $fake, $tenant, _)) = setup_with(backend, $tweak).await else {
                    return;
                };
                let $id = connected(&$app, &$fake, &$tenant).await;
                $body.await;
                $app.stop().await;
                $fake.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run(Backend::Postgres).await;
            }
        }
    };
}

/// Limits count per calendar minute: a test that counts must not straddle two.
async fn avoid_minute_boundary() {
    use chrono::Timelike;
    let second = chrono::Utc::now().second();
    if second >= 48 {
        tokio::time::sleep(std::time::Duration::from_secs(u64::from(61 - second))).await;
    }
}

/// `GET /proxy/{id}{rest}` with the key.
pub(crate) async fn raw_get(app: &TestApp, key: &str, id: &str, rest: &str) -> reqwest::Response {
    app.client
        .get(raw_url(app, id, rest))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// `POST /proxy/{id}{rest}` with the key and `body`.
async fn raw_post(
    app: &TestApp,
    key: &str,
    id: &str,
    rest: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.client
        .post(raw_url(app, id, rest))
        .bearer_auth(key)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A request body of no declared length: the chunks, sent chunked.
fn chunked(chunks: Vec<Vec<u8>>) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures_util::stream::iter(
        chunks.into_iter().map(Ok::<_, std::io::Error>),
    ))
}

fn raw_url(app: &TestApp, id: &str, rest: &str) -> String {
    format!("{}/proxy/{id}{rest}", app.base)
}

/// Sends a request line exactly as written (HTTP clients normalise `..` away) and returns the
/// status code.
fn raw_status(app: &TestApp, key: &str, target: &str) -> u16 {
    raw_answer(app, key, "GET", target)
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in the answer to {target}"))
}

/// The whole answer to `{method} {target}`, sent as written.
fn raw_answer(app: &TestApp, key: &str, method: &str, target: &str) -> String {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

async fn proxy(app: &TestApp, key: &str, input: Value) -> Value {
    let (_, body) = app.graphql(key, PROXY, json!({ "i": input })).await;
    body
}

fn proxy_log_entry(application: uuid::Uuid) -> keyway::service::usage::LogEntry {
    keyway::service::usage::LogEntry::new(
        application,
        keyway::service::usage::ApiStyle::Proxy,
        "proxy",
    )
}

async fn flush_logs(app: &TestApp) {
    app.server().state().logs.flush(app.db()).await.unwrap();
}

/// The latest proxy request-log rows (newest first), each with `fields`, once every queued
/// row is written.
async fn proxy_rows(app: &TestApp, key: &str, fields: &str) -> Vec<Value> {
    flush_logs(app).await;
    let query = format!(
        "{{ logs(first: 50, filter: {{apiStyle: PROXY}}) {{ edges {{ node {{ {fields} }} }} }} }}"
    );
    let data = app.ok(key, &query, json!({})).await;
    nodes(&data, "logs").into_iter().cloned().collect()
}

proxy_test!(
    raw_route_injects_the_token_and_strips_caller_headers,
    |_| {},
    |app, fake, tenant, id| async {
        let response = app
            .client
            .post(raw_url(&app, &id, "/contacts/42?limit=5&q=a%20b"))
            .bearer_auth(&tenant.key)
            .header("cookie", "keyway_session=mine")
            .header("proxy-authorization", "Basic eDp5")
            .header("x-forwarded-for", "10.9.8.7")
            .header("connection", "x-hop-secret")
            .header("x-hop-secret", "1")
            .header("x-custom", "kept")
            .header("via", "1.1 edge")
            .header("content-type", "application/json")
            .body(r#"{"name":"Ada"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers().get("set-cookie").is_none(),
            "provider cookies stay there"
        );
        assert_eq!(response.headers()["x-upstream"], "fake");
        let echoed: Value = response.json().await.unwrap();
        assert_eq!(echoed["method"], "POST");
        assert_eq!(echoed["body"], r#"{"name":"Ada"}"#);

        let seen = fake.api_requests();
        assert_eq!(seen.len(), 1);
        let call = &seen[0];
        assert_eq!(call.path, "/api/contacts/42");
        assert_eq!(
            call.query, "limit=5&q=a%20b",
            "the caller's encoding is kept"
        );
        assert_eq!(call.header("authorization"), Some("Bearer at-1"));
        assert_eq!(call.header("host"), Some(fake.host().as_str()));
        for gone in [
            "cookie",
            "proxy-authorization",
            "x-forwarded-for",
            "x-hop-secret",
        ] {
            assert!(call.header(gone).is_none(), "{gone} reached the provider");
        }
        assert_eq!(call.header("x-custom"), Some("kept"));
        // A gateway adds its hop to `Via`, after the caller's (RFC 9110 §7.6.3).
        let via: Vec<&str> = call
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("via"))
            .map(|(_, value)| value.as_str())
            .collect();
        assert_eq!(via.join(", "), "1.1 edge, 1.1 keyway");
        assert!(
            !format!("{:?}", call.headers).contains(&tenant.key),
            "the key leaked upstream"
        );

        // The global id works as well as the bare UUID.
        let uuid = keyway::ids::decode(&async_graphql::ID(id.clone()))
            .unwrap()
            .1;
        let by_uuid = raw_get(&app, &tenant.key, &uuid.to_string(), "/me").await;
        assert_eq!(by_uuid.status(), StatusCode::OK);
        let generated = by_uuid.headers()["x-request-id"].to_str().unwrap();
        assert!(generated.len() == 32 && generated.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(by_uuid.headers()["keyway-request-id"], generated);

        // Without a secret key: 401, and nothing reaches the provider.
        let anonymous = app
            .client
            .get(raw_url(&app, &id, "/me"))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        assert!(anonymous.headers().contains_key("x-request-id"));
        let operator = app
            .client
            .get(raw_url(&app, &id, "/me"))
            .bearer_auth(&app.operator)
            .send()
            .await
            .unwrap();
        assert_eq!(operator.status(), StatusCode::FORBIDDEN);
        assert_eq!(fake.api_requests().len(), 2);
    }
);

proxy_test!(
    raw_head_keeps_the_providers_length_and_sends_no_body,
    |_| {},
    |app, fake, tenant, id| async {
        // `/big?bytes=n` answers n bytes to GET, and the same `Content-Length` to HEAD.
        let head = app
            .client
            .head(raw_url(&app, &id, "/big?bytes=1234"))
            .bearer_auth(&tenant.key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(
            head.headers()["content-length"],
            "1234",
            "HEAD answers with the length a GET would have"
        );
        assert!(!head.headers().contains_key("content-type"));
        assert!(head.bytes().await.unwrap().is_empty());
        assert_eq!(fake.api_requests().last().unwrap().method, "HEAD");

        // The connection stays usable: no body bytes were left in it.
        let get = raw_get(&app, &tenant.key, &id, "/big?bytes=1234").await;
        assert_eq!(get.status(), StatusCode::OK);
        assert_eq!(get.bytes().await.unwrap().len(), 1234);

        // The mutation's answer to HEAD lists the length too (a GET's answer carries its body).
        let body = proxy(
            &app,
            &tenant.key,
            json!({ "connectionId": id, "method": "HEAD", "path": "/big",
                    "query": [{"name": "bytes", "value": "1234"}] }),
        )
        .await;
        let answer = &body["data"]["proxy"];
        assert_eq!(answer["status"], 200, "{body}");
        assert_eq!(answer["body"], "");
        let lengths: Vec<&Value> = answer["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["name"] == "content-length")
            .map(|h| &h["value"])
            .collect();
        assert_eq!(lengths, [&json!("1234")], "{body}");
    }
);

proxy_test!(
    mutation_calls_by_connection_or_by_consumer_and_service,
    |_| {},
    |app, fake, tenant, id| async {
        let body = proxy(
            &app,
            &tenant.key,
            json!({ "connectionId": id, "method": "PUT", "path": "/deals/7",
                    "query": [{"name": "expand", "value": "a b&c"}],
                    "headers": [{"name": "X-Trace", "value": "t1"}, {"name": "Authorization", "value": "Bearer forged"}],
                    "json": {"amount": 5} }),
        )
        .await;
        let answer = &body["data"]["proxy"];
        assert_eq!(answer["status"], 200, "{body}");
        assert_eq!(answer["json"]["method"], "PUT");
        assert_eq!(answer["json"]["body"], r#"{"amount":5}"#);
        assert_eq!(answer["bodyEncoding"], "TEXT");
        assert_eq!(answer["connectionId"], id.as_str());
        let call = fake.api_requests().pop().unwrap();
        assert_eq!(call.path, "/api/deals/7");
        assert_eq!(call.query, "expand=a+b%26c");
        assert_eq!(call.header("authorization"), Some("Bearer at-1"));
        assert_eq!(call.header("x-trace"), Some("t1"));
        assert_eq!(call.header("content-type"), Some("application/json"));
        // Keyway makes this request itself, as a client: it is no hop of an HTTP request.
        assert_eq!(call.header("via"), None);

        let body = proxy(
            &app,
            &tenant.key,
            json!({ "consumerId": "alice", "serviceId": "fake", "path": "/binary" }),
        )
        .await;
        assert_eq!(body["data"]["proxy"]["bodyEncoding"], "BASE64");
        assert_eq!(body["data"]["proxy"]["body"], "//4AAQ==");

        // A sandbox connection beside the production one: `environment` chooses; without it
        // the newest callable one is taken.
        app.ok(&tenant.key, "mutation { createConnection(input: {consumerId: \"alice\", serviceId: \"fake\", environment: SANDBOX, credentials: {accessToken: \"at-sandbox\", expiresAt: \"2030-01-01T00:00:00Z\"}}) { id } }", json!({})).await;
        for (environment, token) in [
            (json!("SANDBOX"), "Bearer at-sandbox"),
            (json!("PRODUCTION"), "Bearer at-1"),
            (Value::Null, "Bearer at-sandbox"),
        ] {
            let body = proxy(
                &app,
                &tenant.key,
                json!({ "consumerId": "alice", "serviceId": "fake", "environment": environment, "path": "/x" }),
            )
            .await;
            assert_eq!(body["data"]["proxy"]["status"], 200, "{body}");
            let call = fake.api_requests().pop().unwrap();
            assert_eq!(call.header("authorization"), Some(token), "{environment}");
        }

        for bad in [
            json!({ "path": "/x" }),
            json!({ "connectionId": id, "environment": "SANDBOX", "path": "/x" }),
            json!({ "connectionId": id, "consumerId": "alice", "serviceId": "fake", "path": "/x" }),
            json!({ "connectionId": id, "path": "/x", "method": "TRACE" }),
            json!({ "connectionId": id, "path": "/x", "body": "a", "json": {} }),
        ] {
            assert_eq!(
                first_code(&proxy(&app, &tenant.key, bad).await),
                "BAD_USER_INPUT"
            );
        }
        let missing = proxy(
            &app,
            &tenant.key,
            json!({ "consumerId": "bob", "serviceId": "fake", "path": "/x" }),
        )
        .await;
        assert_eq!(first_code(&missing), "NOT_FOUND");
        // Another application's key cannot use the connection, nor learn that it exists.
        let other = app.create_tenant("other").await;
        let foreign = proxy(
            &app,
            &other.key,
            json!({ "connectionId": id, "path": "/me" }),
        )
        .await;
        assert_eq!(first_code(&foreign), "NOT_FOUND");
        let operator = proxy(
            &app,
            &app.operator,
            json!({ "connectionId": id, "path": "/me" }),
        )
        .await;
        assert_eq!(first_code(&operator), "FORBIDDEN");
        // The five calls that were answered reached the provider; no refused one did.
        assert_eq!(fake.api_requests().len(), 5);
    }
);

proxy_test!(
    no_path_leaves_the_providers_api,
    |_| {},
    |app, fake, tenant, id| async {
        for path in [
            "../token",
            "/../../token",
            "//evil.example/x",
            "https://evil.example/x",
            "http:evil.example",
            "/%2e%2e/token",
            "/..%2ftoken",
            "/..%5ctoken",
            "/%252e%252e/token",
            "\\\\evil.example\\x",
            "/a/./b",
            "/x?injected=1",
            "/x#frag",
            "/a\r\nHost: evil.example",
        ] {
            let body = proxy(
                &app,
                &tenant.key,
                json!({ "connectionId": id, "path": path }),
            )
            .await;
            assert_eq!(first_code(&body), "BAD_USER_INPUT", "{path}: {body}");
        }
        // The same on the raw route, sent byte for byte.
        let uuid = keyway::ids::decode(&async_graphql::ID(id.clone()))
            .unwrap()
            .1;
        for rest in [
            "/../token",
            "/x/../../token",
            "/%2e%2e/token",
            "/..%2ftoken",
            "/..%5Ctoken",
            "/%252e%252e/token",
            "//evil.example/x",
            "/..\\token",
        ] {
            let status = raw_status(&app, &tenant.key, &format!("/proxy/{uuid}{rest}"));
            assert_eq!(status, 400, "{rest}");
        }
        assert!(
            fake.api_requests().is_empty(),
            "an escape reached the provider"
        );

        // `@` and `:` inside the path are data: the call stays on the provider's host.
        let body = proxy(
            &app,
            &tenant.key,
            json!({ "connectionId": id, "path": "/users/a@evil.example:80/x" }),
        )
        .await;
        assert_eq!(body["data"]["proxy"]["status"], 200, "{body}");
        let call = fake.api_requests().pop().unwrap();
        assert_eq!(call.path, "/api/users/a@evil.example:80/x");
        assert_eq!(call.header("host"), Some(fake.host().as_str()));
    }
);

proxy_test!(
    trace_and_connect_never_reach_the_provider,
    |_| {},
    |app, fake, tenant, id| async {
        // A TRACE answer echoes the request, so the injected credential would come back to
        // the caller (RFC 9110 §9.3.8); CONNECT asks for a tunnel. Both: 405 with `Allow`.
        for method in ["TRACE", "CONNECT"] {
            let answer = raw_answer(&app, &tenant.key, method, &format!("/proxy/{id}/contacts"));
            let head = answer.to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 405"), "{method}: {answer}");
            assert!(
                head.contains("\r\nallow: get, head, post, put, patch, delete, options\r\n"),
                "{method}: {answer}"
            );
            assert!(answer.contains("BAD_USER_INPUT"), "{method}: {answer}");
        }
        let answer = proxy(
            &app,
            &tenant.key,
            json!({ "connectionId": id, "method": "trace", "path": "/contacts" }),
        )
        .await;
        assert_eq!(first_code(&answer), "BAD_USER_INPUT", "{answer}");
        assert!(fake.api_requests().is_empty(), "the provider was called");
        // An extension method is passed on as it came.
        let answer = raw_answer(
            &app,
            &tenant.key,
            "PROPFIND",
            &format!("/proxy/{id}/contacts"),
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(r#""method":"PROPFIND""#), "{answer}");
    }
);

proxy_test!(
    the_providers_request_id_reaches_the_caller,
    |_| {},
    |app, _fake, tenant, id| async {
        // A provider's own `x-request-id` reaches the caller untouched; Keyway's id is in
        // `keyway-request-id` (never the provider's), and the call's log row carries it.
        let traced = raw_get(&app, &tenant.key, &id, "/traced").await;
        assert_eq!(traced.headers()["x-request-id"], "provider-trace-7");
        let ours = traced.headers()["keyway-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            ours.len() == 32 && ours.bytes().all(|b| b.is_ascii_hexdigit()),
            "{ours}"
        );
        assert_eq!(
            traced.headers().get_all("keyway-request-id").iter().count(),
            1
        );
        let row = proxy_rows(&app, &tenant.key, "path requestId")
            .await
            .into_iter()
            .find(|r| r["path"] == "/traced")
            .expect("no row for /traced");
        assert_eq!(row["requestId"], ours.as_str(), "{row}");
    }
);

proxy_test!(
    max_forwards_is_decremented_and_answered_at_zero,
    |_| {},
    |app, fake, tenant, id| async {
        let options = |rest: &str, max_forwards: &str| {
            app.client
                .request(reqwest::Method::OPTIONS, raw_url(&app, &id, rest))
                .bearer_auth(&tenant.key)
                .header("max-forwards", max_forwards)
                .send()
        };
        // At zero Keyway is the final recipient (RFC 9110 §7.6.2): it answers, the provider
        // hears nothing.
        let response = options("/here", "0").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["allow"],
            "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        );
        assert_eq!(response.headers()["content-length"], "0");
        assert!(response.bytes().await.unwrap().is_empty());
        // Not a number: refused, not passed on.
        let response = options("/malformed", "two").await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "BAD_USER_INPUT", "{body}");
        assert!(fake.api_requests().is_empty(), "the provider was called");

        // Above zero it goes on, one less; other methods' values pass as they came.
        let response = options("/there", "5").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let get = app
            .client
            .get(raw_url(&app, &id, "/contacts"))
            .bearer_auth(&tenant.key)
            .header("max-forwards", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(get.status(), StatusCode::OK);
        let seen = fake.api_requests();
        let paths: Vec<_> = seen.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/api/there", "/api/contacts"]);
        assert_eq!(seen[0].method, "OPTIONS");
        assert_eq!(seen[0].header("max-forwards"), Some("4"));
        assert_eq!(seen[1].header("max-forwards"), Some("0"));

        // The answered call is logged as the route's own answer: no provider latency.
        let rows = proxy_rows(&app, &tenant.key, "path statusCode latencyMs consumerId").await;
        let here = rows.iter().find(|r| r["path"] == "/here").expect("no row");
        assert_eq!(here["statusCode"], 200, "{here}");
        assert!(here["latencyMs"].is_null(), "{here}");
        assert!(here["consumerId"].is_string(), "{here}");
        let there = rows.iter().find(|r| r["path"] == "/there").expect("no row");
        assert!(there["latencyMs"].is_number(), "{there}");
    }
);

proxy_test!(
    redirects_are_returned_not_followed,
    |_| {},
    |app, fake, tenant, id| async {
        let other = FakeProvider::start().await;
        let to = format!("{}/elsewhere", other.base);
        let response = app
            .client
            .get(raw_url(
                &app,
                &id,
                &format!("/redirect?to={}", urlencode(&to)),
            ))
            .bearer_auth(&tenant.key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(response.headers()["location"], to.as_str());
        let body = proxy(
            &app,
            &tenant.key,
            json!({ "connectionId": id, "path": "/redirect", "query": [{"name": "to", "value": to}] }),
        )
        .await;
        assert_eq!(body["data"]["proxy"]["status"], 302);
        assert_eq!(
            other.elsewhere_hits(),
            0,
            "the redirect target was contacted"
        );
        assert_eq!(fake.elsewhere_hits(), 0);
        other.stop().await;
    }
);

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

proxy_test!(
    a_401_refreshes_once_and_retries,
    |_| {},
    |app, fake, tenant, id| async {
        // Warm the cache with at-1, then the provider revokes it early.
        let body = proxy(
            &app,
            &tenant.key,
            json!({ "connectionId": id, "path": "/me" }),
        )
        .await;
        assert_eq!(body["data"]["proxy"]["status"], 200);
        fake.set(|s| {
            s.rejected_tokens.insert("at-1".into());
        });
        let response = app
            .client
            .post(raw_url(&app, &id, "/notes"))
            .bearer_auth(&tenant.key)
            .body("remember me")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(fake.refresh_requests(), 1);
        let calls = fake.api_requests();
        let tokens: Vec<_> = calls
            .iter()
            .map(|c| c.header("authorization").unwrap().to_owned())
            .collect();
        assert_eq!(tokens, ["Bearer at-1", "Bearer at-1", "Bearer at-2"]);
        assert_eq!(
            calls[2].body, b"remember me",
            "the body is sent again on retry"
        );

        // When the refreshed token is refused too, the provider's 401 is the answer: no loop.
        fake.set(|s| {
            s.rejected_tokens.insert("at-2".into());
            s.rejected_tokens.insert("at-3".into());
        });
        let body = proxy(
            &app,
            &tenant.key,
            json!({ "connectionId": id, "path": "/me" }),
        )
        .await;
        assert_eq!(body["data"]["proxy"]["status"], 401);
        assert_eq!(fake.refresh_requests(), 2);
        assert_eq!(fake.api_requests().len(), 5);
    }
);

proxy_test!(
    a_429_is_passed_back_with_retry_after,
    |_| {},
    |app, fake, tenant, id| async {
        let response = raw_get(&app, &tenant.key, &id, "/limited").await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "7");
        let body = proxy(
            &app,
            &tenant.key,
            json!({ "connectionId": id, "path": "/limited" }),
        )
        .await;
        let answer = &body["data"]["proxy"];
        assert_eq!(answer["status"], 429);
        assert!(
            answer["headers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["name"] == "retry-after" && h["value"] == "7")
        );
        assert_eq!(fake.api_requests().len(), 2, "no automatic retry");
    }
);

proxy_test!(
    a_429_within_the_wait_the_caller_allows_is_waited_out_and_sent_once_more,
    |_| {},
    |app, fake, tenant, id| async {
        // `/busy?n=…` answers 429 with `Retry-After: 1` to the first call for each `n`.
        let calls = |n: &str| {
            let query = format!("n={n}");
            let seen = fake.api_requests().into_iter();
            seen.filter(|r| r.path == "/api/busy" && r.query == query)
                .collect::<Vec<_>>()
        };
        let raw = |n: &str, wait: Option<&str>| {
            let mut request = app
                .client
                .get(raw_url(&app, &id, &format!("/busy?n={n}")))
                .bearer_auth(&tenant.key);
            if let Some(wait) = wait {
                request = request.header("keyway-rate-limit-wait", wait);
            }
            request.send()
        };
        // Raw route: the 1 s asked for by the provider is within the 5 s the caller allows.
        let started = std::time::Instant::now();
        let response = raw("1", Some("5")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            started.elapsed() >= std::time::Duration::from_secs(1),
            "waited"
        );
        assert_eq!(calls("1").len(), 2, "sent once more");
        assert!(
            calls("1")
                .iter()
                .all(|r| r.header("keyway-rate-limit-wait").is_none()),
            "Keyway's own header is not sent on"
        );
        // Not asked to wait, or not long enough: the 429 is the answer, at once.
        let started = std::time::Instant::now();
        let response = raw("2", None).await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "1");
        let response = app
            .client
            .get(raw_url(&app, &id, "/limited"))
            .bearer_auth(&tenant.key)
            .header("keyway-rate-limit-wait", "5")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "7 s > 5 s"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(calls("2").len(), 1);
        // The mutation waits when asked.
        let input = |n: &str, wait: i64| {
            json!({ "connectionId": id, "path": "/busy", "query": [{"name": "n", "value": n}],
                    "rateLimitWaitSecs": wait })
        };
        let body = proxy(&app, &tenant.key, input("3", 2)).await;
        assert_eq!(body["data"]["proxy"]["status"], 200, "{body}");
        assert_eq!(calls("3").len(), 2);
        let body = proxy(&app, &tenant.key, input("4", 0)).await;
        assert_eq!(body["data"]["proxy"]["status"], 429, "{body}");
        // A wait that is not a number of seconds is refused before any call.
        let body = proxy(&app, &tenant.key, input("5", -1)).await;
        assert_eq!(first_code(&body), "BAD_USER_INPUT", "{body}");
        let response = raw("5", Some("soon")).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(calls("5").is_empty());
    }
);

proxy_test!(
    the_upstream_timeout_covers_the_answer_and_its_body,
    |c| c.upstream_timeout_secs = 1,
    |app, fake, tenant, id| async {
        let _ = &fake;
        // No answer in time: 504 UPSTREAM_ERROR, after about the timeout, not the provider's 3 s.
        let started = std::time::Instant::now();
        let response = raw_get(&app, &tenant.key, &id, "/slow?ms=3000").await;
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "UPSTREAM_ERROR", "{body}");
        assert!(started.elapsed() < std::time::Duration::from_millis(2500));
        let answer = proxy(&app, &tenant.key, json!({ "connectionId": id, "path": "/slow", "query": [{"name": "ms", "value": "3000"}] })).await;
        assert_eq!(first_code(&answer), "UPSTREAM_ERROR", "{answer}");
        // A body that stalls past the deadline is cut off on the raw route (its head was
        // already passed on) and refused by the mutation.
        let response = raw_get(&app, &tenant.key, &id, "/stall?ms=3000").await;
        assert_eq!(response.status(), StatusCode::OK);
        let started = std::time::Instant::now();
        let read = response.bytes().await;
        assert!(read.is_err() || !read.unwrap().ends_with(b"second"));
        assert!(started.elapsed() < std::time::Duration::from_millis(2500));
        let answer = proxy(&app, &tenant.key, json!({ "connectionId": id, "path": "/stall", "query": [{"name": "ms", "value": "3000"}] })).await;
        assert_eq!(first_code(&answer), "UPSTREAM_ERROR", "{answer}");
        // A prompt answer is unaffected.
        assert_eq!(
            raw_get(&app, &tenant.key, &id, "/slow?ms=0").await.status(),
            StatusCode::OK
        );
    }
);

proxy_test!(
    compressed_answers_are_decoded_for_the_mutation_and_passed_through_raw,
    |c| c.proxy_max_body_bytes = 300_000,
    |app, fake, tenant, id| async {
        use base64::Engine;
        use std::io::Read;
        let call = |input: Value| proxy(&app, &tenant.key, input);
        let gzipped =
            |query: Value| json!({ "connectionId": id, "path": "/gzipped", "query": query });
        // No encoding named: Keyway asks for gzip and answers the decoded body.
        let body = call(gzipped(json!([]))).await;
        let answer = &body["data"]["proxy"];
        assert_eq!(answer["status"], 200, "{body}");
        assert_eq!(answer["json"]["contacts"][0]["name"], "Ada", "{body}");
        assert_eq!(answer["bodyEncoding"], "TEXT");
        let names: Vec<&str> = answer["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["name"].as_str().unwrap())
            .collect();
        assert!(!names.contains(&"content-encoding"), "{names:?}");
        assert_eq!(
            fake.api_requests().pop().unwrap().header("accept-encoding"),
            Some("gzip")
        );
        // Named by the caller: the provider's bytes as sent, with their coding.
        let mut own = gzipped(json!([]));
        own["headers"] = json!([{ "name": "Accept-Encoding", "value": "gzip" }]);
        let body = call(own).await;
        let answer = &body["data"]["proxy"];
        assert_eq!(answer["bodyEncoding"], "BASE64", "{body}");
        assert!(
            answer["headers"]
                .as_array()
                .unwrap()
                .contains(&json!({ "name": "content-encoding", "value": "gzip" })),
            "{body}"
        );
        let raw = base64::engine::general_purpose::STANDARD
            .decode(answer["body"].as_str().unwrap())
            .unwrap();
        let mut decoded = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut decoded)
            .unwrap();
        assert_eq!(decoded, r#"{"contacts":[{"name":"Ada"}]}"#);
        // The size limit holds for the decoded body: a small answer may inflate past it.
        let fits = call(gzipped(json!([{ "name": "bytes", "value": "290000" }]))).await;
        assert_eq!(
            fits["data"]["proxy"]["body"].as_str().unwrap().len(),
            290_000
        );
        let bomb = call(gzipped(json!([{ "name": "bytes", "value": "400000" }]))).await;
        assert_eq!(first_code(&bomb), "UPSTREAM_ERROR");
        let broken = call(gzipped(json!([{ "name": "broken", "value": "1" }]))).await;
        assert_eq!(first_code(&broken), "UPSTREAM_ERROR");
        // The raw route leaves encodings to its caller: none asked, none added…
        let plain = raw_get(&app, &tenant.key, &id, "/gzipped").await;
        assert_eq!(plain.headers().get("content-encoding"), None);
        assert_eq!(
            fake.api_requests().pop().unwrap().header("accept-encoding"),
            None
        );
        // …and an encoded answer passes as sent.
        let encoded = app
            .client
            .get(raw_url(&app, &id, "/gzipped"))
            .bearer_auth(&tenant.key)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(encoded.headers()["content-encoding"], "gzip");
        assert_eq!(&encoded.bytes().await.unwrap()[..2], [0x1f, 0x8b]);
    }
);

proxy_test!(
    bodies_stream_and_are_bounded,
    |c| c.proxy_max_body_bytes = 300_000,
    |app, fake, tenant, id| async {
        // A body larger than what is held in memory streams through whole.
        let big = vec![b'a'; 200_000];
        let chunks = big.chunks(16_384).map(<[u8]>::to_vec).collect();
        let response = raw_post(&app, &tenant.key, &id, "/upload", chunked(chunks)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let echoed: Value = response.json().await.unwrap();
        assert_eq!(echoed["body_len"], 200_000);
        // Past the limit: 413, whether announced by Content-Length or streamed.
        let too_big = raw_post(&app, &tenant.key, &id, "/upload", vec![b'a'; 300_001]).await;
        assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let chunks = vec![vec![b'b'; 10_000]; 40];
        let streamed = raw_post(&app, &tenant.key, &id, "/upload", chunked(chunks)).await;
        assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // A large answer streams back; one past the limit is refused (502) or cut off.
        let response = raw_get(&app, &tenant.key, &id, "/big?bytes=290000").await;
        assert_eq!(response.bytes().await.unwrap().len(), 290_000);
        let response = raw_get(&app, &tenant.key, &id, "/big?bytes=400000").await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        // The provider did answer: its row says whose connection it was, and how long it took.
        let refused = proxy_rows(&app, &tenant.key, "statusCode latencyMs consumerId")
            .await
            .into_iter()
            .find(|r| r["statusCode"] == 502)
            .expect("no row for the refused answer");
        assert!(refused["latencyMs"].is_number(), "{refused}");
        assert!(refused["consumerId"].is_string(), "{refused}");
        let body = proxy(&app, &tenant.key, json!({ "connectionId": id, "path": "/big", "query": [{"name": "bytes", "value": "400000"}] })).await;
        assert_eq!(first_code(&body), "UPSTREAM_ERROR");
        let _ = fake;
    }
);

proxy_test!(
    streamed_answers_are_logged_as_they_ended,
    |c| {
        c.upstream_timeout_secs = 1;
        c.proxy_max_body_bytes = 64 << 20;
    },
    |app, fake, tenant, id| async {
        let _ = &fake;
        // Read to its end: the provider's status, and a duration that covers the body.
        let whole = raw_get(&app, &tenant.key, &id, "/stall?ms=300").await;
        assert_eq!(whole.bytes().await.unwrap().as_ref(), b"firstsecond");
        // Cut off when the deadline passed, after its 200 was sent.
        let cut = raw_get(&app, &tenant.key, &id, "/stall?ms=3000").await;
        assert_eq!(cut.status(), StatusCode::OK);
        assert!(cut.bytes().await.is_err());
        // Left by its caller before it ended: a socket closed with the answer unread, once
        // the socket buffers between have filled (far short of the answer).
        let addr = app.base.trim_start_matches("http://").to_owned();
        let target = format!("/proxy/{id}/big?bytes={}", 40 << 20);
        let key = tenant.key.clone();
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(&addr).unwrap();
            write!(
                stream,
                "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\r\n"
            )
            .unwrap();
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).unwrap();
            assert_eq!(&head, b"HTTP/1.1 200");
            std::thread::sleep(std::time::Duration::from_millis(200));
        })
        .await
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;

        let rows = proxy_rows(
            &app,
            &tenant.key,
            "path statusCode success errorMessage durationMs latencyMs",
        )
        .await;
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0]["path"], "/big", "{rows:?}");
        // Newest first.
        let (left, cut, whole) = (&rows[0], &rows[1], &rows[2]);
        assert_eq!(whole["statusCode"], 200, "{whole}");
        assert_eq!(whole["success"], true, "{whole}");
        assert!(whole["errorMessage"].is_null(), "{whole}");
        assert!(whole["durationMs"].as_f64().unwrap() >= 300.0, "{whole}");
        assert!(whole["latencyMs"].as_f64().unwrap() < 300.0, "{whole}");
        assert_eq!(cut["statusCode"], 504, "{cut}");
        assert_eq!(cut["success"], false, "{cut}");
        assert_eq!(
            cut["errorMessage"], "the provider did not answer in time",
            "{cut}"
        );
        assert_eq!(left["statusCode"], 499, "{left}");
        assert_eq!(left["success"], false, "{left}");
        assert_eq!(
            left["errorMessage"], "the caller closed the connection before the answer ended",
            "{left}"
        );
        // A streamed answer of known length is logged when it ends too.
        let big = raw_get(&app, &tenant.key, &id, "/big?bytes=300000").await;
        assert_eq!(big.bytes().await.unwrap().len(), 300_000);
        // (Its end is seen a moment after the caller has read the declared length.)
        let mut rows = Vec::new();
        for _ in 0..50 {
            rows = proxy_rows(&app, &tenant.key, "path statusCode errorMessage").await;
            if rows.len() == 4 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert_eq!(rows[0]["path"], "/big", "{rows:?}");
        assert_eq!(rows[0]["statusCode"], 200, "{rows:?}");
        assert!(rows[0]["errorMessage"].is_null(), "{rows:?}");
    }
);

proxy_test!(
    bodies_keep_the_framing_each_side_can_read,
    |_| {},
    |app, fake, tenant, id| async {
        // An upload with a declared length streams on with that length: some providers refuse
        // a chunked upload (411).
        let upload = raw_post(&app, &tenant.key, &id, "/upload", vec![b'u'; 100_000]).await;
        assert_eq!(upload.status(), StatusCode::OK);
        let call = fake.api_requests().pop().unwrap();
        assert_eq!(call.header("content-length"), Some("100000"));
        assert_eq!(call.header("transfer-encoding"), None);
        assert_eq!(call.body.len(), 100_000);
        // Without one it goes on chunked.
        let chunks = vec![vec![b'c'; 20_000]; 5];
        let upload = raw_post(&app, &tenant.key, &id, "/upload", chunked(chunks)).await;
        assert_eq!(upload.status(), StatusCode::OK);
        let call = fake.api_requests().pop().unwrap();
        assert_eq!(call.header("transfer-encoding"), Some("chunked"));
        assert_eq!(call.body.len(), 100_000);

        // An empty POST says so (RFC 9110 §8.6), on the raw route and through the mutation.
        let empty = app
            .client
            .post(raw_url(&app, &id, "/empty"))
            .bearer_auth(&tenant.key)
            .send()
            .await
            .unwrap();
        assert_eq!(empty.status(), StatusCode::OK);
        let call = fake.api_requests().pop().unwrap();
        assert_eq!(call.header("content-length"), Some("0"));
        let input = json!({ "connectionId": id, "method": "POST", "path": "/empty" });
        assert_eq!(
            proxy(&app, &tenant.key, input).await["data"]["proxy"]["status"],
            200
        );
        let call = fake.api_requests().pop().unwrap();
        assert_eq!(call.header("content-length"), Some("0"));
        assert_eq!(call.method, "POST");

        // A streamed answer keeps the length the provider declared.
        let big = raw_get(&app, &tenant.key, &id, "/big?bytes=300000").await;
        assert_eq!(big.headers()["content-length"], "300000");
        assert!(!big.headers().contains_key("transfer-encoding"));
        // Nor does Keyway add a Content-Type the provider did not send.
        assert!(!big.headers().contains_key("content-type"));
        assert_eq!(big.bytes().await.unwrap().len(), 300_000);

        // An HTTP/1.0 caller never gets chunks (RFC 9112 §6.1): an answer of unknown length
        // ends with the connection.
        let target = format!("/proxy/{id}/stall?ms=0");
        let (head, body) = http10_get(&app, &tenant.key, &target);
        assert!(head.starts_with("http/1.0 200"), "{head}");
        assert!(!head.contains("transfer-encoding"), "{head}");
        assert!(!head.contains("content-type"), "{head}");
        assert_eq!(body, b"firstsecond");
        let call = fake.api_requests().pop().unwrap();
        assert_eq!(
            call.header("via"),
            Some("1.0 keyway"),
            "Via names what came in"
        );
        let (head, body) = http10_get(&app, &tenant.key, &format!("/proxy/{id}/big?bytes=300000"));
        assert!(head.contains("content-length: 300000"), "{head}");
        assert_eq!(body.len(), 300_000);
    }
);

/// An HTTP/1.0 GET, read until the server closes the connection: the answer's head
/// (lower-cased) and its body bytes as sent.
fn http10_get(app: &TestApp, key: &str, target: &str) -> (String, Vec<u8>) {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("the server closes the connection after the answer");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an answer head");
    let head = String::from_utf8_lossy(&answer[..split]).to_lowercase();
    let body = answer[split + 4..].to_vec();
    (head, body)
}

/// A custom API-key provider on the fake, sending the key in a header.
async fn api_key_connection(
    app: &TestApp,
    fake: &FakeProvider,
    tenant: &Tenant,
    key: &str,
) -> String {
    api_key_integration_and_connection(app, fake, tenant, key)
        .await
        .1
}

/// `api_key_connection`'s integration and connection ids.
async fn api_key_integration_and_connection(
    app: &TestApp,
    fake: &FakeProvider,
    tenant: &Tenant,
    key: &str,
) -> (String, String) {
    let definition = fake_key_provider(fake, "v1", "X-Api-Key");
    let integration = app.ok(&tenant.key, "mutation($p: JSON) { createIntegration(input: {serviceId: \"fakekey\", customProvider: $p}) { id } }", json!({ "p": definition })).await;
    let data = app
        .ok(&tenant.key, "mutation($k: String!) { createConnection(input: {consumerId: \"carol\", serviceId: \"fakekey\", credentials: {fields: {api_key: $k}}}) { id state } }", json!({ "k": key }))
        .await;
    (
        integration["createIntegration"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        data["createConnection"]["id"].as_str().unwrap().to_owned(),
    )
}

/// The custom provider of `api_key_connection`: the fake's API under `/api/{version}`, the key
/// in the header `key_header`.
pub(crate) fn fake_key_provider(fake: &FakeProvider, version: &str, key_header: &str) -> Value {
    json!({
        "service_id": "fakekey", "name": "Fake key", "unified_api": "crm", "auth_type": "api_key",
        "base_url": format!("{}/api/{version}", fake.base),
        "credential_fields": [{"id": "api_key", "label": "API key", "type": "password", "required": true}],
        "injection": {"type": "header", "name": key_header, "field": "api_key"},
        "headers": {"X-Api-Version": "2024-01"}
    })
}

const UPDATE_INTEGRATION: &str = "mutation($id: ID!, $i: UpdateIntegrationInput!) { updateIntegration(id: $id, input: $i) { id } }";

proxy_test!(
    cached_targets_follow_their_integration,
    |_| {},
    |app, fake, tenant, _oauth| async {
        let (integration, id) =
            api_key_integration_and_connection(&app, &fake, &tenant, "key-one").await;
        let call = || {
            proxy(
                &app,
                &tenant.key,
                json!({ "connectionId": id, "path": "/me" }),
            )
        };
        call().await;
        assert_eq!(fake.api_requests()[0].path, "/api/v1/me");

        // The provider moves and renames its key header: the very next call follows.
        let moved = fake_key_provider(&fake, "v2", "X-Key");
        app.ok(
            &tenant.key,
            UPDATE_INTEGRATION,
            json!({ "id": integration, "i": { "customProvider": moved } }),
        )
        .await;
        call().await;
        let seen = fake.api_requests();
        assert_eq!(
            seen[1].path, "/api/v2/me",
            "the old base URL was still used"
        );
        assert_eq!(seen[1].header("x-key"), Some("key-one"));
        assert_eq!(seen[1].header("x-api-key"), None);

        // A disabled integration is called through by no connection, on either route.
        let enabled = |on: bool| {
            app.ok(
                &tenant.key,
                UPDATE_INTEGRATION,
                json!({ "id": integration, "i": { "enabled": on } }),
            )
        };
        enabled(false).await;
        let body = call().await;
        assert_eq!(first_code(&body), "CONFLICT");
        assert_eq!(
            body["errors"][0]["message"], "the integration is disabled",
            "{body}"
        );
        let raw = raw_get(&app, &tenant.key, &id, "/me").await;
        assert_eq!(raw.status(), StatusCode::CONFLICT);
        assert_eq!(
            fake.api_requests().len(),
            2,
            "a disabled integration was called"
        );
        enabled(true).await;
        assert_eq!(call().await["data"]["proxy"]["status"], 200);
        assert_eq!(fake.api_requests().len(), 3);
    }
);

proxy_test!(
    cached_credentials_are_dropped_on_update_and_revoke,
    |_| {},
    |app, fake, tenant, _oauth| async {
        let id = api_key_connection(&app, &fake, &tenant, "key-one").await;
        let call = |headers: Vec<Value>| {
            proxy(
                &app,
                &tenant.key,
                json!({ "connectionId": id, "path": "/me", "headers": headers }),
            )
        };
        call(vec![
            json!({"name": "X-Api-Key", "value": "forged"}),
            json!({"name": "X-Api-Version", "value": "forged"}),
        ])
        .await;
        call(vec![]).await;
        let seen = fake.api_requests();
        assert_eq!(
            seen[0].header("x-api-key"),
            Some("key-one"),
            "the caller cannot override the key header"
        );
        assert_eq!(seen[0].header("x-api-version"), Some("2024-01"));
        assert_eq!(seen[0].path, "/api/v1/me");
        assert_eq!(seen[1].header("x-api-key"), Some("key-one"));

        app.ok(&tenant.key, "mutation($id: ID!) { updateConnection(id: $id, input: {credentials: {fields: {api_key: \"key-two\"}}}) { id } }", json!({ "id": id })).await;
        call(vec![]).await;
        assert_eq!(
            fake.api_requests()[2].header("x-api-key"),
            Some("key-two"),
            "a stale key was used after update"
        );

        app.ok(
            &tenant.key,
            "mutation($id: ID!) { revokeConnection(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
        let body = call(vec![]).await;
        assert_eq!(
            first_code(&body),
            "CONFLICT",
            "a revoked connection was still callable"
        );
        assert_eq!(fake.api_requests().len(), 3);
    }
);

proxy_test!(
    provider_hosts_must_stay_public,
    |_| {},
    |app, fake, tenant, _oauth| async {
        // Salesforce's base URL is the connection's `instance_url`: only Salesforce hosts.
        app.create_integration(&tenant.key, "salesforce").await;
        let (_, body) = app
            .graphql(&tenant.key, "mutation { createConnection(input: {consumerId: \"dan\", serviceId: \"salesforce\", settings: {instance_url: \"https://169.254.169.254\"}, credentials: {accessToken: \"t\"}}) { id } }", json!({}))
            .await;
        assert_eq!(first_code(&body), "BAD_USER_INPUT");
        // A provider whose host is a setting: no value may point inside, or anywhere else.
        let definition = json!({
            "service_id": "hosted", "name": "Hosted", "unified_api": "crm", "auth_type": "api_key",
            "base_url": "https://{host}/api",
            "settings": [{"id": "host", "label": "Host", "type": "text", "required": true}],
            "credential_fields": [{"id": "api_key", "label": "Key", "type": "password", "required": true}],
            "injection": {"type": "bearer", "field": "api_key"}
        });
        app.ok(&tenant.key, "mutation($p: JSON) { createIntegration(input: {serviceId: \"hosted\", customProvider: $p}) { id } }", json!({ "p": definition })).await;
        let connection_to = |service: &'static str, settings: Value| {
            let app = &app;
            let key = tenant.key.clone();
            async move {
                let data = app
                    .ok(&key, "mutation($s: String!, $settings: JSON) { createConnection(input: {consumerId: \"dan\", serviceId: $s, settings: $settings, credentials: {fields: {api_key: \"k\"}}}) { id } }", json!({ "s": service, "settings": settings }))
                    .await;
                data["createConnection"]["id"].as_str().unwrap().to_owned()
            }
        };
        let connection = |host: String| connection_to("hosted", json!({ "host": host }));
        let refused = |id: String| {
            let app = &app;
            let key = tenant.key.clone();
            async move {
                let body = proxy(app, &key, json!({ "connectionId": id, "path": "/x" })).await;
                first_code(&body).to_owned()
            }
        };
        for inside in [
            "169.254.169.254",
            "10.0.0.8",
            "127.0.0.1",
            "0.0.0.0",
            "localhost",
            "a.localhost",
            "[::1]",
            // The same places spelled otherwise, or reached through a gateway.
            "2130706433",
            "0x7f.1",
            "0251.0376.0251.0376",
            "[::ffff:127.0.0.1]",
            "[64:ff9b::a9fe:a9fe]",
            "[2002:a9fe:a9fe::]",
            "[fd00:ec2::254]",
            "100.100.100.200",
            "198.18.0.1",
            "evil.example:8443",
            "evil.example/x",
            "u@evil.example",
        ] {
            let id = connection(inside.to_owned()).await;
            assert_eq!(refused(id).await, "CONFLICT", "{inside}");
        }
        // A provider whose whole origin is a setting (a self-hosted GitLab): IPv6 literals
        // and addresses that lead inside through a gateway's prefix are refused too.
        let mut definition = definition.clone();
        definition["service_id"] = json!("selfhosted");
        definition["base_url"] = json!("{origin}/api");
        definition["settings"][0]["id"] = json!("origin");
        app.ok(&tenant.key, "mutation($p: JSON) { createIntegration(input: {serviceId: \"selfhosted\", customProvider: $p}) { id } }", json!({ "p": definition })).await;
        for inside in [
            "https://[::1]",
            "https://[::ffff:169.254.169.254]",
            "https://[64:ff9b::a9fe:a9fe]",
            "https://[2002:a9fe:a9fe::]",
            "https://[fd00:ec2::254]",
            "https://[fe80::1]",
            "https://[fec0::1]",
            "https://2130706433",
            "https://198.18.0.1",
        ] {
            let id = connection_to("selfhosted", json!({ "origin": inside })).await;
            assert_eq!(refused(id).await, "CONFLICT", "{inside}");
        }
        // A name that resolves to a private address is refused when connecting (the machine's
        // own name resolves to a private address here; skipped where it does not).
        let own = std::fs::read_to_string("/etc/hostname")
            .unwrap_or_default()
            .trim()
            .to_owned();
        let private = !own.is_empty()
            && tokio::net::lookup_host((own.as_str(), 443))
                .await
                .is_ok_and(|mut addrs| {
                    addrs.all(|a| match a.ip() {
                        std::net::IpAddr::V4(v4) => v4.is_private() || v4.is_loopback(),
                        std::net::IpAddr::V6(v6) => v6.is_loopback(),
                    })
                });
        if private {
            let id = connection(own).await;
            let body = proxy(
                &app,
                &tenant.key,
                json!({ "connectionId": id, "path": "/x" }),
            )
            .await;
            assert_eq!(first_code(&body), "UPSTREAM_ERROR", "{body}");
            assert!(
                body["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("private"),
                "{body}"
            );
        }
        assert!(fake.api_requests().is_empty());
    }
);

proxy_test!(
    a_flush_writes_every_queued_row_in_chunks,
    |_| {},
    |app, fake, tenant, id| async {
        let _ = (&fake, &id);
        // Two full 512-row statements and a remainder of 276 (256 + 16 + 4).
        let application = tenant.application_uuid();
        app.upsert_consumer(&tenant.key, "alice").await;
        let logs = &app.server().state().logs;
        for n in 0..1300 {
            let mut entry = proxy_log_entry(application);
            entry.consumer_id = Some("alice".into());
            entry.path = format!("/items/{n}");
            entry.status_code = 200;
            if n == 7 {
                // Every column's value goes through each backend's bulk path intact.
                entry.status_code = 503;
                entry.error_message = Some("é".repeat(400));
                entry.latency = Some(std::time::Duration::from_micros(1500));
                entry.sandbox = true;
                entry.request_id = Some("trace-7".into());
            }
            if n == 8 {
                // PostgreSQL's text refuses NUL: it must not sink the batch.
                entry.error_message = Some("provider said \0 nothing".into());
            }
            logs.record(entry);
        }
        flush_logs(&app).await;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let row = entity::request_log::Entity::find()
            .filter(entity::request_log::Column::Path.eq("/items/7"))
            .one(app.db())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (row.status_code, row.success, row.sandbox),
            (503, false, true)
        );
        assert_eq!(row.error_message, Some("é".repeat(250)), "cut at 500 bytes");
        assert_eq!(row.latency_ms, Some(1.5));
        assert_eq!(row.request_id.as_deref(), Some("trace-7"));
        assert_eq!(row.consumer_id.as_deref(), Some("alice"));
        assert_eq!(
            (row.application_id, row.api_style.as_str()),
            (application, "proxy")
        );
        assert!((chrono::Utc::now() - row.created_at).num_minutes() < 5);
        let row = entity::request_log::Entity::find()
            .filter(entity::request_log::Column::Path.eq("/items/8"))
            .one(app.db())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row.error_message.as_deref(),
            Some("provider said \u{FFFD} nothing")
        );
        let stats = app
            .ok(
                &tenant.key,
                "{ consumerStats(consumerId: \"alice\") { requestCounts { proxy } } }",
                json!({}),
            )
            .await;
        // alice made no proxy call of her own before.
        assert_eq!(
            stats["consumerStats"]["requestCounts"]["proxy"], 1300,
            "{stats}"
        );
    }
);

/// Paths of the application's proxy log rows that start with `prefix`, sorted.
async fn logged_paths(app: &TestApp, application: uuid::Uuid, prefix: &str) -> Vec<String> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let mut paths: Vec<String> = entity::request_log::Entity::find()
        .filter(entity::request_log::Column::ApplicationId.eq(application))
        .filter(entity::request_log::Column::Path.starts_with(prefix))
        .all(app.db())
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.path)
        .collect();
    paths.sort();
    paths
}

/// The log entry of a proxied call to `path`.
fn proxy_log_entry_to(application: uuid::Uuid, path: &str) -> keyway::service::usage::LogEntry {
    let mut entry = proxy_log_entry(application);
    entry.path = path.to_owned();
    entry
}

/// Queues the log entry of a proxied call to `path`.
fn record_path(app: &TestApp, application: uuid::Uuid, path: &str) {
    let entry = proxy_log_entry_to(application, path);
    app.server().state().logs.record(entry);
}

proxy_test!(
    rows_of_a_failed_flush_are_written_by_the_next,
    |_| {},
    |app, fake, tenant, id| async {
        use sea_orm::ConnectionTrait;
        let _ = (&fake, &id);
        let application = tenant.application_uuid();
        let logs = &app.server().state().logs;
        // The table is away (as when the database is unreachable) while two calls are logged.
        app.db()
            .execute_unprepared("ALTER TABLE request_logs RENAME TO request_logs_away")
            .await
            .unwrap();
        record_path(&app, application, "/kept/1");
        record_path(&app, application, "/kept/2");
        assert!(logs.flush(app.db()).await.is_err());
        app.db()
            .execute_unprepared("ALTER TABLE request_logs_away RENAME TO request_logs")
            .await
            .unwrap();
        record_path(&app, application, "/kept/3");
        flush_logs(&app).await;
        assert_eq!(
            logged_paths(&app, application, "/kept/").await,
            ["/kept/1", "/kept/2", "/kept/3"],
            "each row once, none lost"
        );
        assert_eq!(logs.dropped(), 0);
    }
);

proxy_test!(
    held_rows_the_database_keeps_refusing_are_dropped_and_logging_goes_on,
    |_| {},
    |app, fake, tenant, id| async {
        use sea_orm::ConnectionTrait;
        let _ = (&fake, &id);
        let application = tenant.application_uuid();
        let logs = &app.server().state().logs;
        // The set-up's own calls are written first: only the refused rows below are held.
        flush_logs(&app).await;
        let refuse = if app.backend() == Backend::Postgres {
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
               IF NEW.path LIKE '/poison/%' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; \
             END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER refuse_poison BEFORE INSERT ON request_logs \
               FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
        } else {
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON request_logs \
               WHEN NEW.path LIKE '/poison/%' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        };
        app.db().execute_unprepared(refuse).await.unwrap();
        let dropped = logs.dropped();
        record_path(&app, application, "/poison/1");
        record_path(&app, application, "/poison/2");
        assert!(logs.flush(app.db()).await.is_err());
        // Newer rows go in while the held two keep failing; after the third such flush the
        // held rows are given up on.
        for n in 1..=3 {
            record_path(&app, application, &format!("/after/{n}"));
            let _ = logs.flush(app.db()).await;
        }
        record_path(&app, application, "/after/4");
        flush_logs(&app).await;
        assert_eq!(
            logged_paths(&app, application, "/after/").await,
            ["/after/1", "/after/2", "/after/3", "/after/4"]
        );
        assert!(logged_paths(&app, application, "/poison/").await.is_empty());
        assert_eq!(logs.dropped() - dropped, 2, "both held rows are counted");
    }
);

proxy_test!(
    a_nul_in_a_callers_text_is_logged_and_sinks_no_batch,
    |_| {},
    |app, fake, tenant, id| async {
        let _ = &fake;
        let application = tenant.application_uuid();
        // PostgreSQL's text refuses NUL; the mutation logs the path and method it was given.
        let body = proxy(
            &app,
            &tenant.key,
            json!({ "connectionId": id, "method": "GE\0T", "path": "/nul/\0" }),
        )
        .await;
        assert_eq!(first_code(&body), "BAD_USER_INPUT", "{body}");
        record_path(&app, application, "/nul/beside");
        flush_logs(&app).await;
        assert_eq!(
            logged_paths(&app, application, "/nul/").await,
            ["/nul/beside", "/nul/\u{FFFD}"]
        );
    }
);

proxy_test!(
    a_batch_written_twice_is_stored_once,
    |_| {},
    |app, fake, tenant, id| async {
        let _ = (&fake, &id);
        // A flush whose commit went through but whose answer was lost writes its rows again.
        let application = tenant.application_uuid();
        let rows: Vec<_> = ["/twice/1", "/twice/2"]
            .into_iter()
            .map(|path| {
                let mut entry = proxy_log_entry_to(application, path);
                entry.consumer_id = Some("twice".into());
                (uuid::Uuid::now_v7(), chrono::Utc::now(), entry)
            })
            .collect();
        use keyway::service::usage::log_rows::{Attempt, insert};
        insert(app.db(), &rows, Attempt::First).await.unwrap();
        insert(app.db(), &rows, Attempt::Again).await.unwrap();
        assert_eq!(
            logged_paths(&app, application, "/twice/").await,
            ["/twice/1", "/twice/2"]
        );
        // Counted once too; a row new to the second attempt counts.
        let mut more = rows.clone();
        let mut third = rows[0].clone();
        third.0 = uuid::Uuid::now_v7();
        more.push(third);
        insert(app.db(), &more, Attempt::Again).await.unwrap();
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let totals = entity::request_count::Entity::find()
            .filter(entity::request_count::Column::ConsumerId.eq("twice"))
            .all(app.db())
            .await
            .unwrap();
        let calls: Vec<_> = totals
            .iter()
            .map(|t| (t.api_style.as_str(), t.calls))
            .collect();
        assert_eq!(calls, [("proxy", 3)]);
    }
);

proxy_test!(
    the_retention_purge_deletes_only_rows_older_than_it,
    |_| {},
    |app, fake, tenant, id| async {
        use sea_orm::{ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter};
        let _ = (&fake, &id);
        let application = tenant.application_uuid();
        // Rows from 31 days ago and before, as the writer would have made them then (ids are
        // UUIDv7 of the entry's time); more than one batch of the purge.
        let old: Vec<entity::request_log::ActiveModel> = (0..2_100)
            .map(|second| {
                let at = chrono::Utc::now()
                    - chrono::Duration::days(31)
                    - chrono::Duration::seconds(second);
                entity::request_log::Model {
                    id: crate::support::uuid_v7_at(at),
                    application_id: application,
                    request_id: None,
                    api_style: "proxy".into(),
                    operation: "proxy".into(),
                    http_method: "GET".into(),
                    path: "/old".into(),
                    base_url: None,
                    status_code: 200,
                    success: true,
                    duration_ms: 1.0,
                    latency_ms: None,
                    service_id: None,
                    unified_api: None,
                    consumer_id: None,
                    connection_id: None,
                    source_ip: None,
                    error_message: None,
                    sandbox: false,
                    created_at: at,
                }
                .into_active_model()
            })
            .collect();
        crate::support::insert_in_chunks(app.db(), &old).await;
        let mut fresh = proxy_log_entry(application);
        fresh.path = "/fresh".into();
        app.server().state().logs.record(fresh);
        flush_logs(&app).await;

        // A round of housekeeping, at the default retention (30 days).
        keyway::service::housekeeping::round(app.db(), &app.server().state().config).await;
        let paths: Vec<String> = entity::request_log::Entity::find()
            .filter(entity::request_log::Column::ApplicationId.eq(application))
            .all(app.db())
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.path)
            .collect();
        assert!(!paths.contains(&"/old".to_owned()), "{paths:?}");
        assert!(paths.contains(&"/fresh".to_owned()), "{paths:?}");
    }
);

proxy_test!(
    a_consumers_request_counts_outlive_its_log_rows_and_go_with_it,
    |_| {},
    |app, fake, tenant, id| async {
        let _ = &fake;
        flush_logs(&app).await;
        let counts = |query: &'static str| {
            let (app, key) = (&app, tenant.key.clone());
            async move {
                flush_logs(app).await;
                app.ok(&key, query, json!({})).await
            }
        };
        const ALL_TIME: &str = "{ consumer(consumerId: \"alice\") { requestCounts { proxy } } \
             consumerStats(consumerId: \"alice\") { requestCounts { proxy } } }";
        let before = counts(ALL_TIME).await;
        let proxied = before["consumer"]["requestCounts"]["proxy"]
            .as_u64()
            .unwrap();
        for _ in 0..2 {
            let response = raw_get(&app, &tenant.key, &id, "/contacts").await;
            assert_eq!(response.status(), 200);
        }
        let now = counts(ALL_TIME).await;
        assert_eq!(
            now["consumer"]["requestCounts"]["proxy"],
            proxied + 2,
            "{now}"
        );
        assert_eq!(
            now["consumerStats"]["requestCounts"]["proxy"],
            proxied + 2,
            "{now}"
        );

        // Every row passes retention: the rows and a dated count are gone, the totals stay.
        keyway::service::usage::logs::purge(app.db(), 0)
            .await
            .unwrap();
        assert!(proxy_rows(&app, &tenant.key, "id").await.is_empty());
        let dated = counts(
            "{ consumerStats(consumerId: \"alice\", start: \"2000-01-01T00:00:00Z\") \
               { requestCounts { proxy } } }",
        )
        .await;
        assert_eq!(
            dated["consumerStats"]["requestCounts"]["proxy"], 0,
            "{dated}"
        );
        let kept = counts(ALL_TIME).await;
        assert_eq!(kept, now, "all-time counts outlive the rows");

        // A key restricted to another integration counts none of the proxy's calls.
        let other = app.create_integration(&tenant.key, "hubspot").await;
        let restricted = &app.restricted_key(&tenant.key, &other).await;
        let theirs = app
            .ok(
                restricted,
                "{ consumerStats(consumerId: \"alice\") { requestCounts { proxy } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            theirs["consumerStats"]["requestCounts"]["proxy"], 0,
            "{theirs}"
        );

        // The totals go with the consumer: one made again under the same id starts at zero.
        app.ok(
            &tenant.key,
            "mutation { deleteConsumer(consumerId: \"alice\") { consumerId } }",
            json!({}),
        )
        .await;
        flush_logs(&app).await;
        app.upsert_consumer(&tenant.key, "alice").await;
        let again =
            counts("{ consumer(consumerId: \"alice\") { requestCounts { unify proxy vault } } }")
                .await;
        assert_eq!(
            again["consumer"]["requestCounts"],
            json!({"unify": 0, "proxy": 0, "vault": 0}),
            "{again}"
        );
    }
);

proxy_test!(
    a_flush_of_many_consumers_calls_adds_to_each_total,
    |_| {},
    |app, fake, tenant, id| async {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let _ = (&fake, &id);
        let application = tenant.application_uuid();
        // 600 consumers, more than one statement holds; the first three call twice.
        for n in (0..600).chain(0..3) {
            let mut entry = proxy_log_entry(application);
            entry.consumer_id = Some(format!("many-{n:03}").into());
            app.server().state().logs.record(entry);
        }
        flush_logs(&app).await;
        let totals = entity::request_count::Entity::find()
            .filter(entity::request_count::Column::ConsumerId.starts_with("many-"))
            .all(app.db())
            .await
            .unwrap();
        assert_eq!(totals.len(), 600);
        for total in totals {
            let twice = total.consumer_id.as_str() < "many-003";
            assert_eq!(total.calls, if twice { 2 } else { 1 }, "{total:?}");
        }
    }
);

proxy_test!(
    log_rows_survive_the_rekeying_migration_both_ways_and_seed_the_totals,
    |_| {},
    |app, fake, tenant, id| async {
        use migration::MigratorTrait;
        use sea_orm::{EntityTrait, PaginatorTrait};
        let _ = &fake;
        assert_eq!(
            raw_get(&app, &tenant.key, &id, "/contacts").await.status(),
            200
        );
        flush_logs(&app).await;
        let count = || async {
            entity::request_log::Entity::find()
                .count(app.db())
                .await
                .unwrap()
        };
        let before = count().await;
        assert!(before > 0);
        const TOTALS: &str = "{ consumer(consumerId: \"alice\") { requestCounts { proxy } } }";
        let totals = app.ok(&tenant.key, TOTALS, json!({})).await;
        assert!(totals["consumer"]["requestCounts"]["proxy"].as_u64() > Some(0));
        // That query's own row, before the schema goes back.
        flush_logs(&app).await;
        let before = count().await;
        // No call through the server until the schema is back: every call writes a row. Back
        // past the rekeying, and so past the totals, which start again from the rows.
        migration::Migrator::down(app.db(), Some(2)).await.unwrap();
        assert_eq!(count().await, before);
        migration::Migrator::up(app.db(), None).await.unwrap();
        assert_eq!(count().await, before);
        // (Only the proxy's: the query itself may count as a call for alice.)
        let after = app.ok(&tenant.key, TOTALS, json!({})).await;
        assert_eq!(
            after["consumer"]["requestCounts"]["proxy"],
            totals["consumer"]["requestCounts"]["proxy"]
        );
        let data = app
            .ok(
                &tenant.key,
                "{ logs(first: 50, filter: {apiStyle: PROXY}) { edges { node { path } } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            data["logs"]["edges"][0]["node"]["path"], "/contacts",
            "{data}"
        );
    }
);

proxy_test!(
    graphql_calls_are_logged_under_the_root_fields_that_ran,
    |_| {},
    |app, _fake, tenant, _id| async {
        let latest_operations = |n: usize| {
            let app = &app;
            let key = tenant.key.clone();
            async move {
                flush_logs(app).await;
                let data = app
                    .ok(&key, "{ logs(first: 20, filter: {apiStyle: UNIFY}) { edges { node { operation } } } }", json!({}))
                    .await;
                let all: Vec<String> = data["logs"]["edges"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["node"]["operation"].as_str().unwrap().to_owned())
                    .collect();
                // Newest first; this `logs` query is logged once it has answered.
                all[..n].to_vec()
            }
        };
        // Aliases and fragments: the schema's names, each once, in document order.
        app.ok(
            &tenant.key,
            "query Two { a: viewer { __typename } ...More b: viewer { __typename } } fragment More on QueryRoot { consumers(first: 1) { edges { cursor } } }",
            json!({}),
        )
        .await;
        assert_eq!(latest_operations(1).await, ["viewer,consumers"]);

        // The operation that ran, of several, and the root fields of a whole batch.
        let (status, _) = app
            .post_json(
                &tenant.key,
                json!([
                    {"query": "query A { viewer { __typename } } query B { consumers(first: 1) { edges { cursor } } }", "operationName": "B"},
                    {"query": "{ viewer { __typename } }"},
                ]),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(latest_operations(1).await, ["consumers,viewer"]);

        // Only the schema's words: a field it does not have is the caller's text (here, a
        // pasted secret), never logged.
        app.post_json(
            &tenant.key,
            json!({"query": "{ viewer { __typename } kw_sk_pasted }"}),
        )
        .await;
        assert_eq!(latest_operations(1).await, ["viewer"]);

        // Nothing to name: a document that does not parse, an unknown operation, only fields
        // the schema does not have.
        app.post_json(&tenant.key, json!({"query": "{ viewer "}))
            .await;
        app.post_json(
            &tenant.key,
            json!({"query": "query A { viewer { __typename } }", "operationName": "Z"}),
        )
        .await;
        app.post_json(&tenant.key, json!({"query": "{ kw_sk_pasted }"}))
            .await;
        assert_eq!(
            latest_operations(3).await,
            ["graphql", "graphql", "graphql"]
        );
    }
);

proxy_test!(
    calls_are_logged_without_secrets,
    |_| {},
    |app, fake, tenant, id| async {
        proxy(&app, &tenant.key, json!({ "connectionId": id, "path": "/contacts", "query": [{"name": "token", "value": "q-secret"}] })).await;
        // A caller's plain request id is Keyway's for the call: echoed and logged.
        let raw = app
            .client
            .get(raw_url(&app, &id, "/limited?api_key=q-secret-2"))
            .bearer_auth(&tenant.key)
            .header("x-request-id", "trace-proxy-1")
            // Believed only from a trusted proxy, and none is configured here.
            .header("x-forwarded-for", "198.51.100.7")
            .send()
            .await
            .unwrap();
        assert_eq!(raw.headers()["x-request-id"], "trace-proxy-1");
        let creds = app
            .ok(&tenant.key, "query($id: ID!) { connectionCredentials(id: $id, includeRefreshToken: true) { accessToken refreshToken } }", json!({ "id": id }))
            .await;
        let (access, refresh) = (
            creds["connectionCredentials"]["accessToken"]
                .as_str()
                .unwrap()
                .to_owned(),
            creds["connectionCredentials"]["refreshToken"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        flush_logs(&app).await;
        let data = app
            .ok(&tenant.key, "{ logs(first: 50) { edges { node { apiStyle operation httpMethod path statusCode success serviceId unifiedApi consumerId connectionId latencyMs durationMs errorMessage baseUrl requestId sourceIp } } } }", json!({}))
            .await;
        let nodes = nodes(&data, "logs");
        // Newest first: the credentials read, the raw call, the mutation's GraphQL request and
        // the proxy call inside it (setup calls come after).
        let proxied: Vec<&&Value> = nodes.iter().filter(|n| n["apiStyle"] == "PROXY").collect();
        assert_eq!(proxied.len(), 2);
        assert_eq!(proxied[0]["path"], "/limited");
        assert_eq!(proxied[0]["statusCode"], 429);
        assert_eq!(proxied[0]["requestId"], "trace-proxy-1");
        assert_eq!(proxied[0]["success"], false);
        assert_eq!(proxied[0]["httpMethod"], "GET");
        assert_eq!(proxied[1]["path"], "/contacts");
        assert_eq!(proxied[1]["statusCode"], 200);
        for node in &proxied {
            assert_eq!(node["serviceId"], "fake");
            assert_eq!(node["unifiedApi"], "crm");
            assert_eq!(node["consumerId"], "alice");
            assert_eq!(node["connectionId"], id.as_str());
            assert_eq!(node["baseUrl"], format!("http://{}/api", fake.host()));
            assert_eq!(
                node["sourceIp"], "127.0.0.1",
                "the caller's address, as text"
            );
            assert!(node["latencyMs"].as_f64().unwrap() <= node["durationMs"].as_f64().unwrap());
        }
        assert_eq!(nodes[0]["apiStyle"], "UNIFY");
        assert_eq!(
            nodes[0]["consumerId"], "alice",
            "credential reads are attributed"
        );
        assert_eq!(
            nodes[0]["operation"], "connectionCredentials",
            "a GraphQL call is named by its root field"
        );
        for node in &proxied {
            assert_eq!(node["operation"], "proxy");
        }

        let filtered = app
            .ok(&tenant.key, "{ logs(filter: {status: FAILURE, apiStyle: PROXY}) { edges { node { statusCode } } } }", json!({}))
            .await;
        assert_eq!(filtered["logs"]["edges"].as_array().unwrap().len(), 1);
        let stats = app
            .ok(&tenant.key, "{ consumerStats(consumerId: \"alice\") { requestCounts { unify proxy vault total } } consumer(consumerId: \"alice\") { requestCounts { proxy } } }", json!({}))
            .await;
        assert_eq!(stats["consumerStats"]["requestCounts"]["proxy"], 2);
        assert_eq!(stats["consumer"]["requestCounts"]["proxy"], 2);
        let later = app
            .ok(&tenant.key, "{ consumerStats(consumerId: \"alice\", start: \"2999-01-01T00:00:00Z\") { requestCounts { total } } }", json!({}))
            .await;
        assert_eq!(later["consumerStats"]["requestCounts"]["total"], 0);
        // Another application sees none of it.
        let other = app.create_tenant("other").await;
        let theirs = app
            .ok(&other.key, "{ logs { edges { node { id } } } }", json!({}))
            .await;
        assert_eq!(theirs["logs"]["edges"].as_array().unwrap().len(), 0);
        let foreign = app
            .ok(
                &other.key,
                "{ logs(filter: {consumerId: \"alice\"}) { edges { node { id } } } }",
                json!({}),
            )
            .await;
        assert_eq!(foreign["logs"]["edges"].as_array().unwrap().len(), 0);

        // No secret in any column of any log row.
        use sea_orm::{ConnectionTrait, Statement};
        let backend = app.db().get_database_backend();
        let sql = match app.backend() {
            Backend::Postgres => "SELECT CAST(t.* AS text) AS row FROM request_logs t",
            Backend::Sqlite => {
                "SELECT api_style || operation || http_method || path || coalesce(base_url,'') || coalesce(error_message,'') || coalesce(request_id,'') || coalesce(consumer_id,'') || coalesce(service_id,'') AS row FROM request_logs"
            }
        };
        let rows = app
            .db()
            .query_all_raw(Statement::from_string(backend, sql))
            .await
            .unwrap();
        assert!(rows.len() >= 4);
        for row in rows {
            let text: String = row.try_get("", "row").unwrap();
            for secret in [
                access.as_str(),
                refresh.as_str(),
                tenant.key.as_str(),
                "q-secret",
                "csecret",
            ] {
                assert!(!text.contains(secret), "a log row holds a secret: {text}");
            }
        }
        let _ = fake;
    }
);

proxy_test!(
    callers_behind_a_trusted_proxy_are_logged_by_their_own_address,
    |c| c.trusted_proxies = vec!["127.0.0.0/8".into()],
    |app, _fake, tenant, id| async {
        // The caller put an address of its own first; the balancer appended the one it saw.
        let raw = app
            .client
            .get(raw_url(&app, &id, "/contacts"))
            .bearer_auth(&tenant.key)
            .header("x-forwarded-for", "203.0.113.66, 198.51.100.7")
            .send()
            .await
            .unwrap();
        assert_eq!(raw.status(), 200);
        let graphql = app
            .client
            .post(format!("{}/graphql", app.base))
            .bearer_auth(&tenant.key)
            .header("x-forwarded-for", "2001:db8::7")
            .json(&json!({ "query": "{ viewer { kind } }" }))
            .send()
            .await
            .unwrap();
        assert_eq!(graphql.status(), 200);
        flush_logs(&app).await;
        let data = app
            .ok(
                &tenant.key,
                "{ logs(first: 2) { edges { node { apiStyle sourceIp } } } }",
                json!({}),
            )
            .await;
        let nodes = nodes(&data, "logs");
        // Newest first: the GraphQL call, then the proxied one.
        assert_eq!(nodes[0]["apiStyle"], "UNIFY");
        assert_eq!(nodes[0]["sourceIp"], "2001:db8::7");
        assert_eq!(nodes[1]["apiStyle"], "PROXY");
        assert_eq!(nodes[1]["sourceIp"], "198.51.100.7");
    }
);

proxy_test!(
    a_call_whose_caller_hangs_up_is_still_logged,
    |_| {},
    |app, fake, tenant, id| async {
        // The caller gives up before the provider answers; the provider did receive the call
        // (and may have acted on it), so its row must exist all the same, with what the
        // provider answered. A server that cancelled the handler on hang-up would lose it.
        let impatient = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(300))
            .build()
            .unwrap();
        let raw = impatient
            .get(raw_url(&app, &id, "/slow?ms=1500"))
            .bearer_auth(&tenant.key)
            .send()
            .await;
        assert!(raw.is_err(), "the caller should have timed out");
        let mutation = impatient
            .post(format!("{}/graphql", app.base))
            .bearer_auth(&tenant.key)
            .json(&json!({ "query": PROXY, "variables": { "i": { "connectionId": id, "path": "/slow", "query": [{"name": "ms", "value": "1500"}] } } }))
            .send()
            .await;
        assert!(mutation.is_err(), "the caller should have timed out");
        // The rows are queued once the provider's answers are in, about 1.2 s from now.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let rows = loop {
            let rows: Vec<Value> = proxy_rows(&app, &tenant.key, "path statusCode latencyMs")
                .await
                .into_iter()
                .filter(|n| n["path"] == "/slow")
                .collect();
            if rows.len() >= 2 || std::time::Instant::now() > deadline {
                break rows;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert_eq!(rows.len(), 2, "one row per call: {rows:?}");
        for row in &rows {
            assert_eq!(row["statusCode"], 200, "{row}");
            assert!(row["latencyMs"].as_f64().unwrap() >= 1500.0, "{row}");
        }
        let _ = fake;
    }
);

proxy_test!(
    the_background_writer_stores_calls_without_being_asked,
    |_| {},
    |app, fake, tenant, id| async {
        // No `flush_logs`: the writer's own task must store the row within a few of its ticks.
        let answer = raw_get(&app, &tenant.key, &id, "/contacts").await;
        assert_eq!(answer.status(), 200);
        let query = "{ logs(filter: {apiStyle: PROXY}) { edges { node { path statusCode } } } }";
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let edges = loop {
            let data = app.ok(&tenant.key, query, json!({})).await;
            let edges = data["logs"]["edges"].as_array().unwrap().clone();
            if !edges.is_empty() || std::time::Instant::now() > deadline {
                break edges;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert_eq!(edges.len(), 1, "the proxied call was never written");
        assert_eq!(edges[0]["node"]["path"], "/contacts");
        assert_eq!(edges[0]["node"]["statusCode"], 200);
        let _ = fake;
    }
);

proxy_test!(
    plan_limits_answer_429_with_retry_after,
    |_| {},
    |app, fake, tenant, id| async {
        app.ok(&app.operator, "mutation($id: ID!) { updateApplication(id: $id, input: {requestsPerMinute: 4, requestsPerMonth: 1000}) { id } }", json!({ "id": tenant.id })).await;
        // A call refused for its own input does not count.
        let bad = app
            .client
            .get(raw_url(&app, &id, "/me"))
            .bearer_auth(&tenant.key)
            .header("keyway-rate-limit-wait", "soon")
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        let trace = app
            .client
            .request(reqwest::Method::TRACE, raw_url(&app, &id, "/me"))
            .bearer_auth(&tenant.key)
            .send()
            .await
            .unwrap();
        assert_eq!(trace.status(), StatusCode::METHOD_NOT_ALLOWED);
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let response = raw_get(&app, &tenant.key, &id, "/me").await;
            statuses.push(response.status().as_u16());
        }
        assert_eq!(statuses, [200, 200, 200]);
        // The fourth call of the minute is a GraphQL request: it fits, and reads where the
        // plan stands, itself included; the fifth does not fit.
        use chrono::{Datelike, Timelike};
        let before = chrono::Utc::now();
        let usage = app.ok(&tenant.key, USAGE, json!({})).await;
        let usage = &usage["viewer"]["application"]["planUsage"];
        assert_eq!(usage["minute"]["used"], 4, "{usage}");
        assert_eq!(usage["minute"]["limit"], 4);
        assert_eq!(usage["minute"]["remaining"], 0);
        let resets = |window: &str| {
            chrono::DateTime::parse_from_rfc3339(usage[window]["resetsAt"].as_str().unwrap())
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let minute_end = resets("minute");
        assert!(minute_end > before && minute_end <= before + chrono::Duration::seconds(60));
        assert_eq!(minute_end.timestamp() % 60, 0);
        assert_eq!(usage["month"]["used"], 4);
        assert_eq!(usage["month"]["remaining"], 996);
        let month_end = resets("month");
        assert_eq!(
            (month_end.day(), month_end.hour(), month_end.minute()),
            (1, 0, 0)
        );
        assert!(month_end > before && month_end <= before + chrono::Duration::days(31));
        let refused = raw_get(&app, &tenant.key, &id, "/me").await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry));
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "RATE_LIMITED");
        let (status, body) = app
            .graphql(&tenant.key, "{ viewer { kind } }", json!({}))
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(first_code(&body), "RATE_LIMITED");
        assert!(
            body["errors"][0]["extensions"]["retryAfter"]
                .as_u64()
                .unwrap()
                >= 1
        );
        assert_eq!(
            fake.api_requests().len(),
            3,
            "a refused call reached the provider"
        );
        // Another application's plan is its own, here without limits.
        let other = app.create_tenant("other").await;
        let usage = app.ok(&other.key, USAGE, json!({})).await;
        assert_eq!(
            usage["viewer"]["application"]["planUsage"],
            json!({ "minute": null, "month": null })
        );
    }
);

proxy_test!(
    graphql_rate_limit_counts_aliases_and_batch_entries,
    |c| c.graphql_rate_limit_per_minute = 10,
    |app, fake, tenant, _id| async {
        // `connected` used 2 requests of 1 root field each. Three aliases × 2 entries = 6 more.
        let batch = json!([
            { "query": "{ a: viewer { kind } b: viewer { kind } c: viewer { kind } }" },
            { "query": "{ a: viewer { kind } b: viewer { kind } c: viewer { kind } }" },
        ]);
        let (status, body) = app.post_json(&tenant.key, batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // 8 used: an operation of 3 root fields no longer fits, one of 2 does.
        let (status, body) = app
            .graphql(
                &tenant.key,
                "{ a: viewer { kind } b: viewer { kind } c: viewer { kind } }",
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(first_code(&body), "RATE_LIMITED");
        app.ok(
            &tenant.key,
            "{ a: viewer { kind } b: viewer { kind } }",
            json!({}),
        )
        .await;
        let (_, body) = app
            .graphql(&tenant.key, "{ viewer { kind } }", json!({}))
            .await;
        assert_eq!(first_code(&body), "RATE_LIMITED");
        // Limits are per key.
        let other = app.create_tenant("other").await;
        app.ok(&other.key, "{ viewer { kind } }", json!({})).await;
        let _ = fake;
    }
);

proxy_test!(
    calls_refused_before_their_body_is_read_keep_the_connection_past_a_limit,
    |_| {},
    |app, fake, tenant, id| async {
        let addr = app.base.trim_start_matches("http://").to_owned();
        let post = |key: &str| {
            format!(
                "POST /proxy/{id}/echo HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: 11\r\n\r\n{{\"a\": true}}"
            )
        };
        let health = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let (head, next) = two_on_one_connection(&app, &post("kw_sk_not_a_key"), &health);
        assert!(head.starts_with("http/1.1 401"), "{head}");
        assert_eq!(next.as_deref(), Some("http/1.1 200 ok"), "{head}");

        app.ok(
            &app.operator,
            "mutation($id: ID!) { updateApplication(id: $id, input: {requestsPerMinute: 1}) { id } }",
            json!({ "id": tenant.id }),
        )
        .await;
        let (head, next) = two_on_one_connection(&app, &post(&tenant.key), &health);
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(next.as_deref(), Some("http/1.1 200 ok"));
        let (head, next) = two_on_one_connection(&app, &post(&tenant.key), &health);
        assert!(head.starts_with("http/1.1 429"), "{head}");
        assert_eq!(next.as_deref(), Some("http/1.1 200 ok"), "{head}");
        assert_eq!(fake.api_requests().len(), 1);
    }
);

/// Two replicas on one PostgreSQL: an integration disabled on A stops B's calls through it at
/// once, though B holds the connection's target in its cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_changes_reach_every_replica() {
    if std::env::var("KEYWAY_TEST_DATABASE_URL").is_err() {
        return;
    }
    let Some((a, fake, tenant, _)) = setup_with(Backend::Postgres, |_| {}).await else {
        return;
    };
    let host = fake.host();
    let b = a.replica(|c| c.allowed_private_hosts = vec![host]).await;
    let (integration, id) = api_key_integration_and_connection(&a, &fake, &tenant, "key-one").await;
    let on_b = || {
        proxy(
            &b,
            &tenant.key,
            json!({ "connectionId": id, "path": "/me" }),
        )
    };
    // B caches the target once the connection's own events have reached it (each drops it).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(on_b().await["data"]["proxy"]["status"], 200);
    a.ok(
        &tenant.key,
        UPDATE_INTEGRATION,
        json!({ "id": integration, "i": { "enabled": false } }),
    )
    .await;
    let started = std::time::Instant::now();
    let mut body = on_b().await;
    // The notification crosses between replicas in milliseconds; the cache would hold 30 s.
    while body["errors"].is_null() && started.elapsed() < std::time::Duration::from_secs(5) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        body = on_b().await;
    }
    assert_eq!(
        first_code(&body),
        "CONFLICT",
        "replica B still calls through an integration disabled on A"
    );
    b.stop().await;
    a.stop().await;
    fake.stop().await;
}

/// Two replicas on one PostgreSQL share the plan's counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_limits_hold_across_replicas() {
    if std::env::var("KEYWAY_TEST_DATABASE_URL").is_err() {
        return;
    }
    avoid_minute_boundary().await;
    let Some((a, fake, tenant, _)) = setup_with(Backend::Postgres, |_| {}).await else {
        return;
    };
    let host = fake.host();
    let b = a.replica(|c| c.allowed_private_hosts = vec![host]).await;
    a.ok(
        &a.operator,
        "mutation($id: ID!) { updateApplication(id: $id, input: {requestsPerMinute: 4}) { id } }",
        json!({ "id": tenant.id }),
    )
    .await;
    for _ in 0..3 {
        a.ok(&tenant.key, "{ viewer { kind } }", json!({})).await;
    }
    // Replica A writes its counts within a second; then B sees them, in its usage too: read
    // from the shared row by an operator (not counted; B has counted nothing yet), then by
    // the key, whose read is the minute's fourth call.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let seen = b
        .ok(
            &b.operator,
            "query($id: ID!) { application(id: $id) { planUsage { minute { used remaining } } } }",
            json!({ "id": tenant.id }),
        )
        .await;
    assert_eq!(
        seen["application"]["planUsage"]["minute"],
        json!({ "used": 3, "remaining": 1 })
    );
    let usage = b.ok(&tenant.key, USAGE, json!({})).await;
    assert_eq!(
        usage["viewer"]["application"]["planUsage"]["minute"]["used"], 4,
        "{usage}"
    );
    let (status, _) = b
        .graphql(&tenant.key, "{ viewer { kind } }", json!({}))
        .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "replica B ignored A's requests"
    );
    b.stop().await;
    a.stop().await;
    fake.stop().await;
}
