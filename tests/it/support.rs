//! `TestApp`: the real server, in-process on port 0, on a fresh database — SQLite always,
//! PostgreSQL when `KEYWAY_TEST_DATABASE_URL` is set.

use std::sync::Once;

use keyway::config::Config;
use keyway::crypto::Secret;
use keyway::{Server, Signals};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs the body once per backend: `db_test!(name, |app| async move { … })`. The PostgreSQL
/// variant returns early (and says so) when `KEYWAY_TEST_DATABASE_URL` is unset.
#[macro_export]
macro_rules! db_test {
    ($name:ident, |$app:ident| $body:expr) => {
        $crate::db_test!($name, config = |_config| {}, |$app| $body);
    };
    // `config` adjusts the server's configuration on both backends.
    ($name:ident, config = $tweak:expr, |$app:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $app =
                    $crate::support::TestApp::with_config($crate::support::Backend::Sqlite, $tweak)
                        .await
                        .expect("sqlite test app");
                $body.await;
                $app.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some($app) = $crate::support::TestApp::with_config(
                    $crate::support::Backend::Postgres,
                    $tweak,
                )
                .await
                else {
                    eprintln!("KEYWAY_TEST_DATABASE_URL unset: PostgreSQL variant skipped");
                    return;
                };
                $body.await;
                $app.stop().await;
            }
        }
    };
}

pub struct TestApp {
    backend: Backend,
    data_dir: std::path::PathBuf,
    pub base: String,
    pub client: reqwest::Client,
    pub operator: String,
    server: Option<Server>,
    pg: Option<PgDatabase>,
    _dir: tempfile::TempDir,
}

/// An application with one secret key, made through the API.
pub struct Tenant {
    pub id: String,
    pub key: String,
    pub key_id: String,
}

impl Tenant {
    /// The application's own uuid (`id` is its global GraphQL id).
    pub fn application_uuid(&self) -> uuid::Uuid {
        keyway::ids::decode_as(
            keyway::ids::NodeType::Application,
            &async_graphql::ID(self.id.clone()),
        )
        .expect("an application id")
    }
}

pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The value of one series (name and labels exactly as exposed) in `/metrics` text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// The value of `name{outcome="<outcome>"}` in `/metrics` text.
pub fn by_outcome(text: &str, name: &str, outcome: &str) -> Option<f64> {
    metric(text, &format!("{name}{{outcome=\"{outcome}\"}}"))
}

impl TestApp {
    /// `None` only for PostgreSQL when no test database is configured.
    pub async fn new(backend: Backend) -> Option<Self> {
        Self::with_config(backend, |_| {}).await
    }

    pub async fn with_config(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<Self> {
        install_crypto();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().to_path_buf(),
            http_workers: Some(1),
            database_max_connections: 5,
            ..Config::default()
        };
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let admin_url = std::env::var("KEYWAY_TEST_DATABASE_URL").ok()?;
                let pg = PgDatabase::create(&admin_url).await;
                config.database_url = Some(Secret::new(pg.url.clone()));
                Some(pg)
            }
        };
        tweak(&mut config);
        let server = Server::start(config, Signals::Ignore)
            .await
            .expect("server starts");
        let (_, operator) = keyway::service::admin_tokens::create(&server.state().db, "tests")
            .await
            .expect("operator token");
        Some(Self {
            backend,
            data_dir: dir.path().to_path_buf(),
            base: format!("http://{}", server.addr()),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            operator: operator.expose().to_owned(),
            server: Some(server),
            pg,
            _dir: dir,
        })
    }

    /// The PostgreSQL URL of this app's database, to start a second replica on it.
    pub fn database_url(&self) -> Option<String> {
        self.pg.as_ref().map(|pg| pg.url.clone())
    }

    /// A second replica of this (PostgreSQL) app: its own server on the same database, with
    /// the same master key, then `tweak`.
    pub async fn replica(&self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let url = self
            .database_url()
            .expect("replicas share a PostgreSQL database");
        let master = keyway::crypto::master::load(&self.server().state().config)
            .expect("the first replica's master key");
        // The database is set here, so the backend only names the data directory's use.
        Self::with_config(Backend::Sqlite, |c| {
            c.database_url = Some(Secret::new(url));
            c.master_key = Some(Secret::new(hex::encode(master.expose())));
            tweak(c);
        })
        .await
        .expect("the replica starts")
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    pub fn db(&self) -> &sea_orm::DatabaseConnection {
        &self.server().state().db
    }

    /// `GET /metrics` (no token), after writing the queued request logs: calls are counted
    /// as their entries leave the queue.
    pub async fn metrics(&self) -> String {
        self.server().state().logs.flush(self.db()).await.unwrap();
        let response = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        response.text().await.unwrap()
    }

    /// Stops the server but keeps its data directory (returned; deleted when dropped).
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        let placeholder = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self._dir, placeholder)
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_database().await;
        }
    }

    /// POSTs one GraphQL request; returns the HTTP status and the JSON body.
    pub async fn graphql(&self, token: &str, query: &str, variables: Value) -> (StatusCode, Value) {
        self.post_json(token, json!({ "query": query, "variables": variables }))
            .await
    }

    pub async fn post_json(&self, token: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/graphql", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.expect("json body"))
    }

    /// The `data` of a request that must succeed.
    pub async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        let (status, body) = self.graphql(token, query, variables).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// The code of the first error of a request that must fail.
    pub async fn error_code(&self, token: &str, query: &str, variables: Value) -> String {
        let (_, body) = self.graphql(token, query, variables).await;
        first_code(&body)
    }

    pub async fn create_tenant(&self, name: &str) -> Tenant {
        let data = self
            .ok(
                &self.operator,
                "mutation($name: String!) { createApplication(input: {name: $name, \
                 redirectUris: [\"https://app.example.com/done\"]}) { id } }",
                json!({ "name": name }),
            )
            .await;
        let id = data["createApplication"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let data = self
            .ok(
                &self.operator,
                "mutation($app: ID!) { createApiKey(input: {applicationId: $app, label: \"main\"}) \
                 { secret apiKey { id } } }",
                json!({ "app": id }),
            )
            .await;
        Tenant {
            id,
            key: data["createApiKey"]["secret"]
                .as_str()
                .expect("secret")
                .to_owned(),
            key_id: data["createApiKey"]["apiKey"]["id"]
                .as_str()
                .expect("key id")
                .to_owned(),
        }
    }

    /// An integration of the tenant for a catalog provider; returns its id.
    pub async fn create_integration(&self, token: &str, service_id: &str) -> String {
        let data = self
            .ok(
                token,
                "mutation($s: String!) { createIntegration(input: {serviceId: $s, clientId: \"client-id\", \
                 clientSecret: \"client-secret-VALUE-42\"}) { id } }",
                json!({ "s": service_id }),
            )
            .await;
        data["createIntegration"]["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    /// A new secret key of the tenant restricted to one integration; returns its secret.
    pub async fn restricted_key(&self, token: &str, integration_id: &str) -> String {
        let data = self
            .ok(
                token,
                "mutation($i: ID) { createApiKey(input: {label: \"restricted\", integrationId: $i}) { secret } }",
                json!({ "i": integration_id }),
            )
            .await;
        data["createApiKey"]["secret"]
            .as_str()
            .expect("secret")
            .to_owned()
    }

    /// A callable Stripe connection holding `api_key`; returns its id.
    pub async fn create_stripe_connection(
        &self,
        token: &str,
        consumer: &str,
        api_key: &str,
    ) -> String {
        let data = self
            .ok(
                token,
                "mutation($c: String!, $k: String!) { createConnection(input: {consumerId: $c, \
                 serviceId: \"stripe\", userEmail: \"Owner@Example.com\", \
                 credentials: {fields: {api_key: $k}}}) { id state } }",
                json!({ "c": consumer, "k": api_key }),
            )
            .await;
        assert_eq!(data["createConnection"]["state"], "CALLABLE");
        data["createConnection"]["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    pub async fn upsert_consumer(&self, token: &str, consumer_id: &str) -> Value {
        self.ok(
            token,
            "mutation($c: String!) { upsertConsumer(input: {consumerId: $c, \
             metadata: {email: \"someone@example.com\"}}) { id consumerId } }",
            json!({ "c": consumer_id }),
        )
        .await["upsertConsumer"]
            .clone()
    }
}

/// The outbox's event types, oldest first.
pub async fn event_types(app: &TestApp) -> Vec<String> {
    use sea_orm::Statement;
    let backend = app.db().get_database_backend();
    app.db()
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT event_type FROM events ORDER BY id",
        ))
        .await
        .expect("events")
        .iter()
        .map(|r| r.try_get::<String>("", "event_type").expect("event_type"))
        .collect()
}

pub fn first_code(body: &Value) -> String {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
        .to_owned()
}

/// The nodes of the Relay connection `data[field]`, in its order.
pub fn nodes<'a>(data: &'a Value, field: &str) -> Vec<&'a Value> {
    data[field]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} edges in {data}"))
        .iter()
        .map(|edge| &edge["node"])
        .collect()
}

/// A database of its own on the configured PostgreSQL server.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create(admin_url: &str) -> Self {
        let name = format!("keyway_test_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(admin_url)
            .await
            .expect("connect to PostgreSQL");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        admin.close().await.ok();
        let mut url = url::Url::parse(admin_url).expect("KEYWAY_TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Self {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        }
    }

    pub async fn drop_database(self) {
        if let Ok(admin) = Database::connect(&self.admin_url).await {
            let _ = admin
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await;
            admin.close().await.ok();
        }
    }
}

/// A well-formed global id of the given type that names no row.
pub fn missing_id(type_name: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{type_name}:{}", uuid::Uuid::now_v7()))
}

/// Sends `first` (a whole HTTP/1.1 request, written as is) on a new connection to the app and
/// reads its answer; then sends `second` on the same connection. Returns the first answer's
/// head (lower-cased) and the second's status line, or `None` when the server had closed the
/// connection after the first answer. `first`'s body follows its head 200 ms later, as from
/// a slow network: a server that answers without reading it answers before it arrives.
pub fn two_on_one_connection(app: &TestApp, first: &str, second: &str) -> (String, Option<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let addr = app.base.trim_start_matches("http://");
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    // One answer's head, its body read by its Content-Length; `None` at end of stream.
    let answer = |reader: &mut BufReader<std::net::TcpStream>| -> Option<String> {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        Some(head)
    };
    let (first_head, first_body) = first.split_once("\r\n\r\n").unwrap();
    writer
        .write_all(format!("{first_head}\r\n\r\n").as_bytes())
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // A server that has answered and closed may refuse the body.
    let _ = writer.write_all(first_body.as_bytes());
    let head = answer(&mut reader).expect("an answer to the first request");
    // A server that closes may still accept the write; the read then ends.
    let _ = writer.write_all(second.as_bytes());
    let next = answer(&mut reader).map(|h| h.lines().next().unwrap_or_default().to_owned());
    (head, next)
}

/// A UUIDv7 of `at`: the key a row written then (a log entry, an event, a delivery) would have.
pub fn uuid_v7_at(at: chrono::DateTime<chrono::Utc>) -> uuid::Uuid {
    uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        at.timestamp() as u64,
        0,
    ))
}

/// Inserts `rows` in statements of 500 (SQLite binds at most 32,766 values in one).
pub async fn insert_in_chunks<A>(db: &sea_orm::DatabaseConnection, rows: &[A])
where
    A: sea_orm::ActiveModelTrait + Clone + Send,
{
    use sea_orm::EntityTrait;
    for chunk in rows.chunks(500) {
        A::Entity::insert_many(chunk.to_vec())
            .exec(db)
            .await
            .unwrap();
    }
}
