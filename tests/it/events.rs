//! Connection events: the graphql-transport-ws subscription (order, isolation, the
//! protocol's close codes) and signed, retried webhooks (signatures checked independently,
//! retry schedule, 410, SSRF refusal, secret rotation, delivery after SIGKILL).

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::oauth::setup_with;
use crate::receiver::{Receiver, verify};
use crate::refresh::connected;
use crate::support::{Backend, TestApp, by_outcome, first_code};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn socket(app: &TestApp) -> Socket {
    let url = format!("{}/graphql/ws", app.base.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "graphql-transport-ws"
    );
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

/// The next text message, or the close code.
async fn next(socket: &mut Socket, secs: u64) -> Result<Value, Option<u16>> {
    let wait = std::time::Duration::from_secs(secs);
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Err(_) => return Err(None),
            Ok(Some(Ok(Message::Text(text)))) => return Ok(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(Message::Close(frame)))) => return Err(frame.map(|f| u16::from(f.code))),
            Ok(Some(Ok(_))) => continue,
            Ok(_) => return Err(None),
        }
    }
}

async fn subscribed(app: &TestApp, key: &str, filter: Value) -> Socket {
    let mut socket = socket(app).await;
    send(&mut socket, json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {key}") } })).await;
    assert_eq!(
        next(&mut socket, 5).await.unwrap()["type"],
        "connection_ack"
    );
    send(&mut socket, json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "subscription($f: EventFilterInput) { connectionEvents(filter: $f) { eventId type consumerId serviceId connectionId connection } }",
        "variables": { "f": filter } } })).await;
    // Let the subscription register before anything is published.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    socket
}

macro_rules! events_test {
    ($name:ident, $tweak:expr, |$app:ident, $fake:ident, $tenant:ident| $body:expr) => {
        mod $name {
            use super::*;

            async fn run(backend: Backend) {
                let Some(($app, $fake, $tenant, _)) = setup_with(backend, $tweak).await else {
                    return;
                };
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

/// The events of a connect followed by `update_refresh_delete`, in order.
const LIFECYCLE: [&str; 5] = [
    "connection.created",
    "connection.callable",
    "connection.updated",
    "connection.refreshed",
    "connection.deleted",
];

/// Updates, refreshes and deletes a connection: `updated`, `refreshed`, `deleted` after the
/// `created` and `callable` of its connect.
async fn update_refresh_delete(app: &TestApp, key: &str, id: &str) {
    app.ok(key, "mutation($id: ID!) { updateConnection(id: $id, input: {metadata: {plan: \"pro\"}}) { id } }", json!({ "id": id })).await;
    for mutation in ["refreshConnection", "deleteConnection"] {
        let query = format!("mutation($id: ID!) {{ {mutation}(id: $id) {{ id }} }}");
        app.ok(key, &query, json!({ "id": id })).await;
    }
}

events_test!(
    a_subscriber_receives_its_events_in_order_and_no_one_elses,
    |_| {},
    |app, fake, tenant| async {
        let other = app.create_tenant("other").await;
        let mut mine = subscribed(&app, &tenant.key, json!({ "consumerId": "alice" })).await;
        let mut theirs = subscribed(&app, &other.key, json!({})).await;
        let id = connected(&app, &fake, &tenant).await;
        update_refresh_delete(&app, &tenant.key, &id).await;
        let mut types = Vec::new();
        while types.last().map(String::as_str) != Some("connection.deleted") {
            let message = next(&mut mine, 5)
                .await
                .unwrap_or_else(|e| panic!("closed {e:?} after {types:?}"));
            assert_eq!(message["type"], "next", "{message}");
            assert_eq!(message["id"], "1");
            let event = &message["payload"]["data"]["connectionEvents"];
            assert_eq!(event["connectionId"], id.as_str());
            assert_eq!(event["consumerId"], "alice");
            assert!(event["connection"].get("credentials").is_none());
            assert!(!event.to_string().contains("at-1"), "a token in an event");
            types.push(event["type"].as_str().unwrap().to_owned());
        }
        assert_eq!(types, LIFECYCLE);
        assert!(
            next(&mut theirs, 1).await.is_err(),
            "another application received an event"
        );
        // A rolled-back change emits nothing: an update that fails validation.
        let (_, body) = app.graphql(&tenant.key, "mutation { createConnection(input: {consumerId: \"alice\", serviceId: \"fake\", credentials: {fields: {x: \"y\"}}}) { id } }", json!({})).await;
        assert_eq!(first_code(&body), "BAD_USER_INPUT");
        assert!(next(&mut mine, 1).await.is_err());
        // The client ends the subscription; the connection stays usable.
        send(&mut mine, json!({ "id": "1", "type": "complete" })).await;
        send(&mut mine, json!({ "type": "ping" })).await;
        assert_eq!(next(&mut mine, 2).await.unwrap()["type"], "pong");
    }
);

events_test!(
    events_go_out_at_commit_not_at_the_next_outbox_poll,
    // An hour between polls: on SQLite only the commit's wake-up of the relay can deliver.
    |config| config.outbox_poll_ms = 3_600_000,
    |app, fake, tenant| async {
        let mut socket = subscribed(&app, &tenant.key, json!({})).await;
        let id = connected(&app, &fake, &tenant).await;
        update_refresh_delete(&app, &tenant.key, &id).await;
        let mut types = Vec::new();
        for _ in LIFECYCLE {
            types.push(next_event(&mut socket, "1").await);
        }
        assert_eq!(types, LIFECYCLE);
    }
);

/// The event type of a socket's next message, checking it is a `next` for operation `id`.
async fn next_event(socket: &mut Socket, id: &str) -> String {
    let message = next(socket, 5).await.expect("an event");
    assert_eq!(message["type"], "next", "{message}");
    assert_eq!(message["id"], id, "{message}");
    message["payload"]["data"]["connectionEvents"]["type"]
        .as_str()
        .unwrap()
        .to_owned()
}

events_test!(
    sockets_running_the_same_subscription_share_it_and_leave_it_independently,
    |_| {},
    |app, fake, tenant| async {
        // a and b run the same subscription (one execution); a runs it twice (ids 1 and 2);
        // c asks for another consumer's events (other variables: its own execution).
        let mut a = subscribed(&app, &tenant.key, json!({})).await;
        send(&mut a, json!({ "id": "2", "type": "subscribe", "payload": {
            "query": "subscription($f: EventFilterInput) { connectionEvents(filter: $f) { eventId type consumerId serviceId connectionId connection } }",
            "variables": { "f": {} } } })).await;
        let mut b = subscribed(&app, &tenant.key, json!({})).await;
        let mut c = subscribed(&app, &tenant.key, json!({ "consumerId": "bob" })).await;
        let id = connected(&app, &fake, &tenant).await;
        let mut seen_by_a = Vec::new();
        for _ in 0..4 {
            let message = next(&mut a, 5).await.expect("an event");
            seen_by_a.push((
                message["id"].as_str().unwrap().to_owned(),
                message["payload"]["data"]["connectionEvents"]["type"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ));
        }
        seen_by_a.sort();
        assert_eq!(
            seen_by_a,
            [
                ("1".to_owned(), "connection.callable".to_owned()),
                ("1".to_owned(), "connection.created".to_owned()),
                ("2".to_owned(), "connection.callable".to_owned()),
                ("2".to_owned(), "connection.created".to_owned()),
            ]
        );
        assert_eq!(next_event(&mut b, "1").await, "connection.created");
        assert_eq!(next_event(&mut b, "1").await, "connection.callable");
        assert!(
            next(&mut c, 1).await.is_err(),
            "bob's subscriber got alice's event"
        );

        // b leaves; a's operations go on, b hears nothing more.
        send(&mut b, json!({ "id": "1", "type": "complete" })).await;
        send(&mut a, json!({ "id": "2", "type": "complete" })).await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        app.ok(&tenant.key, "mutation($id: ID!) { updateConnection(id: $id, input: {metadata: {plan: \"pro\"}}) { id } }", json!({ "id": id })).await;
        assert_eq!(next_event(&mut a, "1").await, "connection.updated");
        assert!(
            next(&mut a, 1).await.is_err(),
            "a completed operation still delivers"
        );
        assert!(next(&mut b, 1).await.is_err(), "b left but still receives");

        // Everyone leaves; a newcomer with the same subscription starts a fresh execution.
        send(&mut a, json!({ "id": "1", "type": "complete" })).await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let mut d = subscribed(&app, &tenant.key, json!({})).await;
        app.ok(
            &tenant.key,
            "mutation($id: ID!) { refreshConnection(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
        assert_eq!(next_event(&mut d, "1").await, "connection.refreshed");

        // A subscription that fails validation answers `error` on every socket that sent it.
        for socket in [&mut b, &mut c] {
            send(socket, json!({ "id": "bad", "type": "subscribe", "payload": {
                "query": "subscription { connectionEvents(filter: {types: [\"nope\"]}) { type } }" } })).await;
        }
        for socket in [&mut b, &mut c] {
            let message = next(socket, 5).await.expect("an answer");
            assert_eq!(message["id"], "bad", "{message}");
            assert_eq!(message["type"], "error", "{message}");
            assert_eq!(
                message["payload"][0]["extensions"]["code"], "BAD_USER_INPUT",
                "{message}"
            );
        }
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_close_codes() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let tenant = app.create_tenant("acme").await;
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { connectionEvents { type } }" } });
    // Subscribing before the acknowledgement: 4401.
    let mut s = socket(&app).await;
    send(&mut s, subscribe.clone()).await;
    assert_eq!(next(&mut s, 5).await, Err(Some(4401)));
    // A wrong, a revoked-looking or a missing token: 4403.
    for payload in [
        json!({ "authorization": "Bearer kw_sk_wrong" }),
        json!({}),
        json!({ "authorization": app.operator.replace('a', "b") }),
    ] {
        let mut s = socket(&app).await;
        send(
            &mut s,
            json!({ "type": "connection_init", "payload": payload }),
        )
        .await;
        assert_eq!(next(&mut s, 5).await, Err(Some(4403)));
    }
    // Two inits: 4429. A reused id: 4409. Garbage: 4400.
    let mut s = socket(&app).await;
    let init = json!({ "type": "connection_init", "payload": { "authorization": tenant.key } });
    send(&mut s, init.clone()).await;
    assert_eq!(next(&mut s, 5).await.unwrap()["type"], "connection_ack");
    send(&mut s, init.clone()).await;
    assert_eq!(next(&mut s, 5).await, Err(Some(4429)));
    let mut s = socket(&app).await;
    send(&mut s, init.clone()).await;
    next(&mut s, 5).await.unwrap();
    send(&mut s, subscribe.clone()).await;
    send(&mut s, subscribe.clone()).await;
    assert_eq!(next(&mut s, 5).await, Err(Some(4409)));
    let mut s = socket(&app).await;
    s.send(Message::text("{not json")).await.unwrap();
    assert_eq!(next(&mut s, 5).await, Err(Some(4400)));
    // A query that does not validate gets an `error` message for its id, not a close.
    let mut s = socket(&app).await;
    send(&mut s, init).await;
    next(&mut s, 5).await.unwrap();
    send(
        &mut s,
        json!({ "id": "7", "type": "subscribe", "payload": { "query": "subscription { nope }" } }),
    )
    .await;
    let error = next(&mut s, 5).await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["id"], "7");
    assert_eq!(error["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");
    // Without the subprotocol, no upgrade.
    let plain = app
        .client
        .get(format!("{}/graphql/ws", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    app.stop().await;
}

/// A subscribe message passes the same admission as a POST: the per-key rate limit (each
/// subscribe costs its root fields) and the document limits, answered with an `error` for its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_admitted_like_posts() {
    let app = TestApp::with_config(Backend::Sqlite, |c| c.graphql_rate_limit_per_minute = 3)
        .await
        .unwrap();
    let tenant = app.create_tenant("acme").await;
    let mut s = socket(&app).await;
    send(
        &mut s,
        json!({ "type": "connection_init", "payload": { "authorization": tenant.key } }),
    )
    .await;
    assert_eq!(next(&mut s, 5).await.unwrap()["type"], "connection_ack");
    let error_code = |message: &Value, id: &str| {
        assert_eq!(message["id"], id, "{message}");
        assert_eq!(message["type"], "error", "{message}");
        message["payload"][0]["extensions"]["code"].clone()
    };

    // 31 aliases: refused, and not counted against the limit (the query below still fits).
    let aliases: String = (0..31).map(|i| format!("a{i}: __typename ")).collect();
    send(&mut s, json!({ "id": "aliases", "type": "subscribe", "payload": { "query": format!("subscription {{ {aliases} }}") } })).await;
    let message = next(&mut s, 5).await.unwrap();
    assert_eq!(error_code(&message, "aliases"), "BAD_USER_INPUT");
    assert!(
        message["payload"][0]["message"]
            .as_str()
            .unwrap()
            .contains("aliases"),
        "{message}"
    );

    // The limit is 3 root fields a minute. A query of 3 (aliases count) uses them up.
    let three = "{ a: viewer { kind } b: viewer { kind } c: viewer { kind } }";
    send(
        &mut s,
        json!({ "id": "three", "type": "subscribe", "payload": { "query": three } }),
    )
    .await;
    let message = next(&mut s, 5).await.unwrap();
    assert_eq!(message["type"], "next", "{message}");
    assert_eq!(
        message["payload"]["data"]["c"]["kind"], "SECRET_KEY",
        "{message}"
    );
    assert_eq!(next(&mut s, 5).await.unwrap()["type"], "complete");
    send(&mut s, json!({ "id": "limited", "type": "subscribe", "payload": { "query": "subscription { connectionEvents { type } }" } })).await;
    let message = next(&mut s, 5).await.unwrap();
    assert_eq!(error_code(&message, "limited"), "RATE_LIMITED");
    assert!(
        message["payload"][0]["extensions"]["retryAfter"]
            .as_u64()
            .is_some(),
        "{message}"
    );
    // The socket stays open.
    send(&mut s, json!({ "type": "ping" })).await;
    assert_eq!(next(&mut s, 5).await.unwrap()["type"], "pong");
    drop(s);
    app.stop().await;
}

async fn create_webhook(app: &TestApp, key: &str, url: &str) -> (String, String) {
    let data = app
        .ok(key, "mutation($u: String!) { createWebhook(input: {url: $u, eventTypes: [\"connection.created\"]}) { webhook { id } secret } }", json!({ "u": url }))
        .await;
    (
        data["createWebhook"]["webhook"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        data["createWebhook"]["secret"].as_str().unwrap().to_owned(),
    )
}

/// The endpoint's delivery of `event_type` once its outcome is written. The receiver sees an
/// attempt before the worker records how it went, so a read right after the last attempt can
/// still say `pending`.
async fn settled_delivery(app: &TestApp, key: &str, webhook: &str, event_type: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let deliveries = app
            .ok(key, "query($w: ID!) { webhookDeliveries(endpointId: $w) { edges { node { id eventType status attempts lastStatusCode } } } }", json!({ "w": webhook }))
            .await;
        let delivery = deliveries["webhookDeliveries"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"].clone())
            .find(|n| n["eventType"] == event_type)
            .unwrap();
        if delivery["status"] != "pending" || started.elapsed().as_secs() >= 5 {
            return delivery;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

events_test!(
    webhooks_are_signed_retried_and_disabled_by_410,
    |c| {
        c.webhook_retry_schedule = "0,1,1".into();
        c.allowed_private_hosts.push("127.0.0.1".into());
    },
    |app, fake, tenant| async {
        let receiver = Receiver::start().await;
        app.create_integration(&tenant.key, "stripe").await;
        let (webhook, secret) = create_webhook(&app, &tenant.key, &receiver.url).await;
        assert!(secret.starts_with("whsec_"));
        // Fails twice, then succeeds: three attempts, one id, attempts counted in the body.
        receiver.answer(&[500, 302]);
        app.create_stripe_connection(&tenant.key, "bob", "sk_test_webhook")
            .await;
        // Only `connection.created` (the endpoint's one type), retried twice.
        let got = receiver.wait_for(3, 10).await;
        let created: Vec<_> = got
            .iter()
            .filter(|r| r.json()["type"] == "connection.created")
            .collect();
        assert_eq!(
            created.len(),
            3,
            "{:?}",
            got.iter()
                .map(|r| r.json()["type"].clone())
                .collect::<Vec<_>>()
        );
        let ids: Vec<&str> = created.iter().map(|r| r.header("webhook-id")).collect();
        assert!(
            ids.iter().all(|i| *i == ids[0] && !i.is_empty()),
            "webhook-id changed: {ids:?}"
        );
        let attempts: Vec<i64> = created
            .iter()
            .map(|r| r.json()["execution_attempt"].as_i64().unwrap())
            .collect();
        assert_eq!(attempts, [1, 2, 3]);
        for pair in created.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(
                gap >= std::time::Duration::from_millis(850),
                "retried after {gap:?}"
            );
        }
        for r in &got {
            assert!(verify(&secret, r), "bad signature");
            assert_eq!(r.header("content-type"), "application/json");
            let age = chrono::Utc::now().timestamp()
                - r.header("webhook-timestamp").parse::<i64>().unwrap();
            assert!((0..30).contains(&age));
            assert!(
                !String::from_utf8_lossy(&r.body).contains("sk_test_webhook"),
                "a credential in a webhook"
            );
        }
        let created_delivery =
            settled_delivery(&app, &tenant.key, &webhook, "connection.created").await;
        assert_eq!(created_delivery["status"], "succeeded");
        assert_eq!(created_delivery["attempts"], 3);

        // Redelivery: same id, next attempt.
        let before = receiver.received().len();
        app.ok(
            &tenant.key,
            "mutation($d: ID!) { redeliverWebhook(deliveryId: $d) { status } }",
            json!({ "d": created_delivery["id"] }),
        )
        .await;
        let again = receiver.wait_for(before + 1, 5).await;
        assert_eq!(again.last().unwrap().header("webhook-id"), ids[0]);

        // Rotation: both secrets sign during the overlap.
        let rotated = app
            .ok(&tenant.key, "mutation($w: ID!) { updateWebhook(id: $w, input: {rotateSecret: true}) { secret } }", json!({ "w": webhook }))
            .await;
        let new_secret = rotated["updateWebhook"]["secret"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(new_secret, secret);
        let before = receiver.received().len();
        app.create_stripe_connection(&tenant.key, "carol", "sk_test_two")
            .await;
        let got = receiver.wait_for(before + 1, 5).await;
        let last = got.last().unwrap();
        assert!(
            verify(&secret, last) && verify(&new_secret, last),
            "{}",
            last.header("webhook-signature")
        );

        // 410 Gone disables the endpoint; nothing more is sent to it.
        receiver.answer(&[410]);
        let before = receiver.received().len();
        app.create_stripe_connection(&tenant.key, "dave", "sk_test_three")
            .await;
        receiver.wait_for(before + 1, 5).await;
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert_eq!(receiver.received().len(), before + 1, "sent after 410");
        // Every attempt counted by how it ended: 500 and 302, then the first success, the
        // redelivery and the rotation's, then the 410.
        let metrics = app.metrics().await;
        let attempts = |outcome| by_outcome(&metrics, "keyway_webhook_attempts_total", outcome);
        assert_eq!(attempts("failed"), Some(2.0));
        assert_eq!(attempts("delivered"), Some(3.0));
        assert_eq!(attempts("gone"), Some(1.0));
        let listed = app
            .ok(
                &tenant.key,
                "{ webhooks { id enabled disabledReason } }",
                json!({}),
            )
            .await;
        assert_eq!(listed["webhooks"][0]["enabled"], false);
        assert!(
            listed["webhooks"][0]["disabledReason"]
                .as_str()
                .unwrap()
                .contains("410")
        );
        // Another application cannot see or touch it.
        let other = app.create_tenant("other").await;
        let (_, body) = app
            .graphql(
                &other.key,
                "mutation($w: ID!) { deleteWebhook(id: $w) { id } }",
                json!({ "w": webhook }),
            )
            .await;
        assert_eq!(first_code(&body), "NOT_FOUND");
        receiver.stop().await;
        let _ = fake;
    }
);

events_test!(
    a_delivery_held_by_a_lost_worker_goes_out_when_its_claim_lapses,
    |c| {
        // After a failed first attempt the next is an hour away: only the end of a claim
        // can make the delivery due sooner.
        c.webhook_retry_schedule = "0,3600".into();
        c.allowed_private_hosts.push("127.0.0.1".into());
    },
    |app, fake, tenant| async {
        use entity::webhook_delivery::{Column, Entity};
        use sea_orm::sea_query::Expr;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

        let receiver = Receiver::start().await;
        app.create_integration(&tenant.key, "stripe").await;
        create_webhook(&app, &tenant.key, &receiver.url).await;
        receiver.answer(&[500]);
        app.create_stripe_connection(&tenant.key, "bob", "sk_test_lease")
            .await;
        let first = receiver.wait_for(1, 5).await;
        assert_eq!(first.len(), 1);
        let recorded = std::time::Instant::now();
        let held = loop {
            let rows = Entity::find()
                .filter(Column::Attempts.eq(1))
                .all(app.db())
                .await
                .unwrap();
            if let [row] = rows.as_slice() {
                break row.id;
            }
            assert!(
                recorded.elapsed().as_secs() < 5,
                "the failure was not recorded"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        // Due now, but claimed for two more seconds by a worker that has since died.
        let lapses = chrono::Utc::now() + chrono::Duration::seconds(2);
        Entity::update_many()
            .col_expr(Column::NextAttemptAt, Expr::value(chrono::Utc::now()))
            .col_expr(Column::LockedUntil, Expr::value(lapses))
            .filter(Column::Id.eq(held))
            .exec(app.db())
            .await
            .unwrap();
        let claimed = std::time::Instant::now();
        // Another event wakes the worker; it sends the new delivery and must then wait for
        // the claim, not for its next routine look (ten seconds away).
        app.create_stripe_connection(&tenant.key, "carol", "sk_test_other")
            .await;
        let got = receiver.wait_for(3, 6).await;
        let retried: Vec<_> = got
            .iter()
            .filter(|r| r.header("webhook-id") == first[0].header("webhook-id"))
            .collect();
        assert_eq!(retried.len(), 2, "the held delivery was not sent again");
        assert_eq!(retried[1].json()["execution_attempt"], 2);
        let after = retried[1].at - claimed;
        assert!(
            after >= std::time::Duration::from_millis(1_800),
            "sent while another worker held it: after {after:?}"
        );
        receiver.stop().await;
        let _ = fake;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_urls_must_be_public_https() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let tenant = app.create_tenant("acme").await;
    for url in [
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.1/x",
        "https://169.254.169.254/latest",
        "https://localhost/x",
        "https://[::1]/x",
        "https://2130706433/x",
        "https://198.18.0.1/x",
        "https://[::ffff:10.0.0.1]/x",
        "https://[64:ff9b::a9fe:a9fe]/latest",
        "https://user:pw@example.com/x",
        "not a url",
        "ftp://example.com",
    ] {
        let (_, body) = app
            .graphql(
                &tenant.key,
                "mutation($u: String!) { createWebhook(input: {url: $u}) { secret } }",
                json!({ "u": url }),
            )
            .await;
        assert_eq!(first_code(&body), "BAD_USER_INPUT", "{url}");
    }
    // A name that resolves to a private address (this machine's own name, where it does).
    let own = std::fs::read_to_string("/etc/hostname")
        .unwrap_or_default()
        .trim()
        .to_owned();
    if tokio::net::lookup_host((own.as_str(), 443))
        .await
        .is_ok_and(|mut a| a.all(|a| a.ip().is_loopback()))
    {
        let (_, body) = app
            .graphql(
                &tenant.key,
                "mutation($u: String!) { createWebhook(input: {url: $u}) { secret } }",
                json!({ "u": format!("https://{own}/hook") }),
            )
            .await;
        assert_eq!(first_code(&body), "BAD_USER_INPUT");
    }
    let (_, body) = app.graphql(&tenant.key, "mutation { createWebhook(input: {url: \"https://hooks.example.com/k\", eventTypes: [\"connection.exploded\"]}) { secret } }", json!({})).await;
    assert_eq!(first_code(&body), "BAD_USER_INPUT");
    app.ok(&tenant.key, "mutation { createWebhook(input: {url: \"https://hooks.example.com/k\", eventTypes: [\"connection.created\"]}) { secret } }", json!({})).await;
    app.stop().await;
}

/// The server is killed with SIGKILL right after a connection is created; the webhook is
/// delivered once it runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_survives_sigkill() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let receiver_port = free_port();
    let receiver_addr = format!("127.0.0.1:{receiver_port}");
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_keyway"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("KEYWAY_DATA_DIR", dir.path())
            .env("KEYWAY_ALLOWED_PRIVATE_HOSTS", &receiver_addr)
            .env("KEYWAY_WEBHOOK_RETRY_SCHEDULE", "0,1,1,1,1,1,1,1,1,1")
            .env("KEYWAY_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut server = start();
    wait_ready(&client, &base).await;
    let operator = String::from_utf8(
        Command::new(env!("CARGO_BIN_EXE_keyway"))
            .args(["admin", "token", "--label", "t"])
            .env("KEYWAY_DATA_DIR", dir.path())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let gql = |token: String, query: String| {
        let client = client.clone();
        let base = base.clone();
        async move {
            client
                .post(format!("{base}/graphql"))
                .bearer_auth(token)
                .json(&json!({ "query": query }))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let app = gql(
        operator.clone(),
        "mutation { createApplication(input: {name: \"a\"}) { id } }".into(),
    )
    .await;
    let app_id = app["data"]["createApplication"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = gql(operator, format!("mutation {{ createApiKey(input: {{applicationId: \"{app_id}\", label: \"k\"}}) {{ secret }} }}")).await;
    let key = key["data"]["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    gql(
        key.clone(),
        "mutation { createIntegration(input: {serviceId: \"stripe\"}) { id } }".into(),
    )
    .await;
    let hook = gql(key.clone(), format!("mutation {{ createWebhook(input: {{url: \"http://{receiver_addr}/hook\", eventTypes: [\"connection.created\"]}}) {{ secret }} }}")).await;
    assert!(
        hook["data"]["createWebhook"]["secret"].is_string(),
        "{hook}"
    );
    let created = gql(key, "mutation { createConnection(input: {consumerId: \"c\", serviceId: \"stripe\", credentials: {fields: {api_key: \"sk_test_x\"}}}) { id } }".into()).await;
    assert!(
        created["data"]["createConnection"]["id"].is_string(),
        "{created}"
    );
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();

    let receiver = Receiver::start_on(&receiver_addr).await;
    let mut server = start();
    wait_ready(&client, &base).await;
    let got = receiver.wait_for(1, 20).await;
    assert_eq!(got.len(), 1, "the webhook was lost");
    assert_eq!(got[0].json()["type"], "connection.created");
    server.kill().unwrap();
    server.wait().unwrap();
    receiver.stop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    for _ in 0..500 {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the server did not start");
}

/// Two replicas on one PostgreSQL: every event wakes both webhook workers at once, and each
/// delivery still goes out exactly once (one claim wins).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_woken_together_send_each_webhook_once() {
    if std::env::var("KEYWAY_TEST_DATABASE_URL").is_err() {
        return;
    }
    let local = |c: &mut keyway::config::Config| c.allowed_private_hosts.push("127.0.0.1".into());
    let a = TestApp::with_config(Backend::Postgres, local)
        .await
        .unwrap();
    let b = a.replica(local).await;
    let tenant = a.create_tenant("acme").await;
    a.create_integration(&tenant.key, "stripe").await;
    let receiver = Receiver::start().await;
    create_webhook(&a, &tenant.key, &receiver.url).await;
    const CONNECTIONS: usize = 20;
    for i in 0..CONNECTIONS {
        // Alternating replicas: each commit's notification wakes both workers.
        let on = if i % 2 == 0 { &a } else { &b };
        on.create_stripe_connection(&tenant.key, &format!("c{i}"), "sk_test_twice")
            .await;
    }
    let got = receiver.wait_for(CONNECTIONS, 10).await;
    assert_eq!(got.len(), CONNECTIONS, "deliveries are missing");
    // Anything sent twice would have arrived by now.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut ids: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), CONNECTIONS);
    assert_eq!(
        receiver.received().len(),
        CONNECTIONS,
        "a delivery went out twice"
    );
    let delivered = |metrics: &str| {
        by_outcome(metrics, "keyway_webhook_attempts_total", "delivered").unwrap_or(0.0)
    };
    assert_eq!(
        delivered(&a.metrics().await) + delivered(&b.metrics().await),
        CONNECTIONS as f64
    );
    receiver.stop().await;
    b.stop().await;
    a.stop().await;
}

/// Two replicas on one PostgreSQL: a subscriber on B sees what A commits, and a key revoked
/// on A stops working on B (whose proven-key cache hears of it through the same channel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_revocations_reach_every_replica() {
    if std::env::var("KEYWAY_TEST_DATABASE_URL").is_err() {
        return;
    }
    let a = TestApp::new(Backend::Postgres).await.unwrap();
    let b = a.replica(|_| {}).await;
    let tenant = a.create_tenant("acme").await;
    a.create_integration(&tenant.key, "stripe").await;
    let mut on_b = subscribed(&b, &tenant.key, json!({})).await;
    a.create_stripe_connection(&tenant.key, "zoe", "sk_test_replica")
        .await;
    let first = next(&mut on_b, 5)
        .await
        .expect("no event on the other replica");
    assert_eq!(
        first["payload"]["data"]["connectionEvents"]["type"],
        "connection.created"
    );
    assert_eq!(
        first["payload"]["data"]["connectionEvents"]["consumerId"],
        "zoe"
    );

    // B has proven the key (and cached it); A revokes it.
    b.ok(&tenant.key, "{ viewer { kind } }", json!({})).await;
    a.ok(
        &a.operator,
        "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        json!({ "id": tenant.key_id }),
    )
    .await;
    let mut status = 0;
    for _ in 0..50 {
        status = b
            .graphql(&tenant.key, "{ viewer { kind } }", json!({}))
            .await
            .0
            .as_u16();
        if status == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        status, 401,
        "the revoked key still works on the other replica"
    );
    b.stop().await;
    a.stop().await;
}

/// A replica cut off from the database for longer than its pool waits for a connection
/// (5 s) still delivers what another replica committed meanwhile: its listener reads back
/// from where it last heard, however long the outage, not from a few seconds before it got
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_the_database_delivers_what_it_missed() {
    if std::env::var("KEYWAY_TEST_DATABASE_URL").is_err() {
        return;
    }
    let a = TestApp::new(Backend::Postgres).await.unwrap();
    let mut gate = Gate::to(&a.database_url().unwrap()).await;
    let b = a
        .replica(|c| c.database_url = Some(keyway::crypto::Secret::new(gate.url.clone())))
        .await;
    let tenant = a.create_tenant("acme").await;
    a.create_integration(&tenant.key, "stripe").await;
    let mut on_b = subscribed(&b, &tenant.key, json!({})).await;

    gate.cut();
    a.create_stripe_connection(&tenant.key, "zoe", "sk_test_cut_off")
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    assert!(
        matches!(next(&mut on_b, 0).await, Err(None)),
        "B delivered an event while cut off from the database"
    );
    gate.restore();

    let first = next(&mut on_b, 15)
        .await
        .expect("B never delivered what A committed while it was cut off");
    let event = &first["payload"]["data"]["connectionEvents"];
    assert_eq!(event["type"], "connection.created");
    assert_eq!(event["consumerId"], "zoe");
    b.stop().await;
    a.stop().await;
}

/// A TCP relay to PostgreSQL that can be cut and restored: a partition between one replica and
/// the database. Cut, it ends every open link and drops each new connection as soon as it is
/// accepted (as a proxy in front of a database that is down does), so a connection attempt
/// fails at once instead of being retried until the server is back.
struct Gate {
    url: String,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    async fn to(database_url: &str) -> Gate {
        let mut url = reqwest::Url::parse(database_url).unwrap();
        let target = url.socket_addrs(|| Some(5432)).unwrap()[0];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        url.set_port(Some(listener.local_addr().unwrap().port()))
            .unwrap();
        let (open, watch) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*watch.borrow() {
                    continue;
                }
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Gate {
            url: url.to_string(),
            open,
        }
    }

    fn cut(&mut self) {
        self.open.send_replace(false);
    }

    fn restore(&mut self) {
        self.open.send_replace(true);
    }
}

crate::db_test!(
    one_change_queues_a_delivery_per_event_and_interested_endpoint,
    |app| async {
        let tenant = app.create_tenant("acme").await;
        app.create_integration(&tenant.key, "stripe").await;
        let every = app
            .ok(&tenant.key, "mutation { createWebhook(input: {url: \"https://hooks.example.com/all\"}) { webhook { id } } }", json!({}))
            .await["createWebhook"]["webhook"]["id"]
            .clone();
        let created_only = create_webhook(&app, &tenant.key, "https://hooks.example.com/created")
            .await
            .0;
        // Created with its credentials: `created` and `callable`, recorded together.
        app.create_stripe_connection(&tenant.key, "bob", "sk_test_pair")
            .await;
        let every = every.as_str().unwrap();
        assert_eq!(
            queued_types(&app, &tenant.key, every).await,
            ["connection.callable", "connection.created"]
        );
        assert_eq!(
            queued_types(&app, &tenant.key, &created_only).await,
            ["connection.created"]
        );
    }
);

/// The events of a new connection (created and callable), for the purge tests to copy.
async fn a_connections_events(app: &TestApp) -> Vec<entity::event::Model> {
    use sea_orm::EntityTrait;
    let tenant = app.create_tenant("acme").await;
    app.create_integration(&tenant.key, "stripe").await;
    app.create_stripe_connection(&tenant.key, "bob", "sk_test_kept")
        .await;
    let recorded = entity::event::Entity::find().all(app.db()).await.unwrap();
    assert_eq!(recorded.len(), 2, "created and callable");
    recorded
}

/// `event` as `events::record` would have made it at `at` (its id a UUIDv7 of that time).
fn recorded_at(
    event: &entity::event::Model,
    at: chrono::DateTime<chrono::Utc>,
) -> entity::event::Model {
    entity::event::Model {
        id: crate::support::uuid_v7_at(at),
        occurred_at: at,
        ..event.clone()
    }
}

crate::db_test!(
    the_outbox_purge_deletes_only_events_past_retention,
    |app| async {
        use sea_orm::{EntityTrait, IntoActiveModel};
        let recorded = a_connections_events(&app).await;
        // Recorded 8 days ago and before; more than one batch of the purge.
        let old: Vec<entity::event::ActiveModel> = (0..2_100)
            .map(|second| {
                let at = chrono::Utc::now()
                    - chrono::Duration::days(8)
                    - chrono::Duration::seconds(second);
                recorded_at(&recorded[0], at).into_active_model()
            })
            .collect();
        crate::support::insert_in_chunks(app.db(), &old).await;

        // A round of housekeeping, at the default retention (7 days).
        keyway::service::housekeeping::round(app.db(), &app.server().state().config).await;
        let mut left: Vec<uuid::Uuid> = entity::event::Entity::find()
            .all(app.db())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        left.sort();
        let mut expected: Vec<uuid::Uuid> = recorded.iter().map(|e| e.id).collect();
        expected.sort();
        assert_eq!(left, expected, "the events within retention are kept");
    }
);

// With a pool of one connection: the lock's session must not be one of the pool's, which
// the round's purges need.
crate::db_test!(
    one_replica_runs_housekeeping_at_a_time,
    config = |c| c.database_max_connections = 1,
    |app| async {
        use keyway::service::housekeeping::exclusive_round;
        use keyway::store::fleet_lock::{Work, try_lock};
        use sea_orm::{EntityTrait, IntoActiveModel};
        let recorded = a_connections_events(&app).await;
        let old = recorded_at(&recorded[0], chrono::Utc::now() - chrono::Duration::days(8));
        entity::event::Entity::insert(old.clone().into_active_model())
            .exec(app.db())
            .await
            .unwrap();
        let config = &app.server().state().config;
        let old_is_there = || async {
            entity::event::Entity::find_by_id(old.id)
                .one(app.db())
                .await
                .unwrap()
                .is_some()
        };

        // Another replica's round is running (its lock, on a session of its own).
        let other = try_lock(app.db(), Work::Housekeeping)
            .await
            .unwrap()
            .unwrap();
        let second = try_lock(app.db(), Work::Housekeeping).await.unwrap();
        match app.backend() {
            crate::support::Backend::Postgres => {
                assert!(second.is_none());
                assert!(!exclusive_round(app.db(), config).await.unwrap(), "skipped");
                assert!(
                    old_is_there().await,
                    "nothing purged while the other round runs"
                );
            }
            // One process owns a SQLite store: there is no other replica to wait for.
            crate::support::Backend::Sqlite => assert!(second.is_some()),
        }
        other.release().await;
        assert!(exclusive_round(app.db(), config).await.unwrap(), "ran");
        assert!(!old_is_there().await, "purged once the other round is over");
        assert_eq!(
            entity::event::Entity::find()
                .all(app.db())
                .await
                .unwrap()
                .len(),
            recorded.len()
        );
        // Dropped without a release (a replica stopped mid-round), the lock goes with its session,
        // which is closed rather than pooled (a pooled one would keep it for ever).
        if matches!(app.backend(), crate::support::Backend::Postgres) {
            use sea_orm::ConnectionTrait;
            drop(
                try_lock(app.db(), Work::Housekeeping)
                    .await
                    .unwrap()
                    .unwrap(),
            );
            let held = || async {
                let row = app
                    .db()
                    .query_one_raw(sea_orm::Statement::from_string(
                        sea_orm::DatabaseBackend::Postgres,
                        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory'",
                    ))
                    .await
                    .unwrap()
                    .unwrap();
                row.try_get::<i64>("", "n").unwrap()
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while held().await > 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the dropped lock is still held"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
);

crate::db_test!(
    the_delivery_purge_deletes_only_finished_deliveries_past_retention,
    |app| async {
        use entity::webhook_delivery::{Entity, Model};
        use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel};
        let tenant = app.create_tenant("acme").await;
        app.create_integration(&tenant.key, "stripe").await;
        create_webhook(&app, &tenant.key, "https://hooks.example.com/all").await;
        app.create_stripe_connection(&tenant.key, "bob", "sk_test_history")
            .await;
        let queued = Entity::find().all(app.db()).await.unwrap();
        assert!(!queued.is_empty());
        let now = chrono::Utc::now();
        let days_ago = |days: i64| now - chrono::Duration::days(days);
        // (queued, status, last attempt, kept by a purge at 30 days)
        let cases = [
            (days_ago(31), "succeeded", Some(days_ago(31)), false),
            (
                days_ago(31),
                "failed",
                Some(days_ago(30) - chrono::Duration::hours(1)),
                false,
            ),
            (days_ago(31), "failed", None, false),
            (days_ago(31), "pending", Some(days_ago(31)), true),
            (days_ago(31), "succeeded", Some(days_ago(1)), true),
            (days_ago(29), "succeeded", Some(days_ago(29)), true),
        ];
        let mut expected_kept: Vec<uuid::Uuid> = queued.iter().map(|d| d.id).collect();
        for (queued_at, status, last_attempt_at, kept) in cases {
            let id = crate::support::uuid_v7_at(queued_at);
            Model {
                id,
                status: status.into(),
                // A pending one is not due during the test.
                next_attempt_at: (status == "pending").then(|| days_ago(-1)),
                last_attempt_at,
                created_at: queued_at,
                ..queued[0].clone()
            }
            .into_active_model()
            .insert(app.db())
            .await
            .unwrap();
            if kept {
                expected_kept.push(id);
            }
        }

        // A round of housekeeping, at the default retention (30 days).
        keyway::service::housekeeping::round(app.db(), &app.server().state().config).await;
        let mut left: Vec<uuid::Uuid> = Entity::find()
            .all(app.db())
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        left.sort();
        expected_kept.sort();
        assert_eq!(left, expected_kept);
    }
);

/// The event types of the deliveries queued for a webhook endpoint, sorted.
async fn queued_types(app: &TestApp, key: &str, endpoint: &str) -> Vec<String> {
    let data = app
        .ok(
            key,
            "query($w: ID!) { webhookDeliveries(endpointId: $w) { edges { node { eventType } } } }",
            json!({ "w": endpoint }),
        )
        .await;
    let mut types: Vec<String> = data["webhookDeliveries"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["eventType"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    types
}
