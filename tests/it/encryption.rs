//! Secrets at rest: never in the clear in SQLite's file or PostgreSQL's rows; bound to their
//! row; rotation resumable; a wrong master key refuses to start.

use std::time::Duration;

use keyway::config::Config;
use keyway::crypto::Secret;
use sea_orm::{ConnectionTrait, EntityTrait, Statement};
use serde_json::json;

use crate::db_test;
use crate::support::{Backend, TestApp};

const CREDS: &str = "query($id: ID!) { connectionCredentials(id: $id, includeRefreshToken: true) { apiKey accessToken refreshToken } }";
const SECRETS: [&str; 4] = [
    "client-secret-VALUE-42",
    "sk_live_PLAINTEXT_CANARY",
    "at-PLAINTEXT-CANARY",
    "rt-PLAINTEXT-CANARY",
];

async fn seed(app: &TestApp) -> (String, String, String) {
    let tenant = app.create_tenant("acme").await;
    app.create_integration(&tenant.key, "stripe").await;
    app.create_integration(&tenant.key, "google").await;
    let stripe = app
        .create_stripe_connection(&tenant.key, "alice", SECRETS[1])
        .await;
    let data = app
        .ok(&tenant.key, "mutation($a: String!, $r: String!) { createConnection(input: {consumerId: \"bob\", serviceId: \"google\", credentials: {accessToken: $a, refreshToken: $r}}) { id } }",
            json!({ "a": SECRETS[2], "r": SECRETS[3] }))
        .await;
    let google = data["createConnection"]["id"].as_str().unwrap().to_owned();
    (tenant.key, stripe, google)
}

/// Every PostgreSQL row of the tables that hold secrets, as text the server renders.
async fn dump_rows(app: &TestApp) -> String {
    let backend = app.db().get_database_backend();
    let mut out = String::new();
    for table in [
        "integrations",
        "connections",
        "events",
        "data_keys",
        "api_keys",
    ] {
        let sql = format!("SELECT CAST(t.* AS text) AS row FROM {table} t");
        let rows = app
            .db()
            .query_all_raw(Statement::from_string(backend, sql))
            .await
            .unwrap();
        for row in rows {
            out.push_str(&row.try_get::<String>("", "row").unwrap());
            out.push('\n');
        }
    }
    out
}

db_test!(no_secret_is_stored_in_the_clear, |app| async {
    seed(&app).await;
    app.server()
        .state()
        .last_used
        .flush(app.db())
        .await
        .unwrap();
    if app.backend() == Backend::Postgres {
        let rows = dump_rows(&app).await;
        assert!(rows.contains("alice"), "the dump must show row contents");
        for secret in SECRETS {
            assert!(!rows.contains(secret), "{secret} is stored in the clear");
        }
    } else {
        // The raw file and its write-ahead log, byte for byte.
        let mut bytes = Vec::new();
        for file in ["keyway.db", "keyway.db-wal"] {
            bytes.extend(std::fs::read(app.data_dir().join(file)).unwrap_or_default());
        }
        assert!(
            bytes.windows(5).any(|w| w == b"alice"),
            "the file must hold the rows"
        );
        for secret in SECRETS {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in the SQLite file"
            );
        }
    }
});

db_test!(
    ciphertexts_are_bound_to_their_row_and_untamperable,
    |app| async {
        let (key, stripe, google) = seed(&app).await;
        let backend = app.db().get_database_backend();
        let (stripe_uuid, google_uuid) = (row_id(&stripe), row_id(&google));
        // Copy Google's sealed credentials onto Stripe's row: it must not open there.
        let copy = match backend {
            sea_orm::DatabaseBackend::Postgres => format!(
                "UPDATE connections SET credentials = (SELECT credentials FROM connections WHERE id = '{google_uuid}') WHERE id = '{stripe_uuid}'"
            ),
            _ => format!(
                "UPDATE connections SET credentials = (SELECT credentials FROM connections WHERE id = x'{}') WHERE id = x'{}'",
                google_uuid.simple(),
                stripe_uuid.simple()
            ),
        };
        app.db().execute_unprepared(&copy).await.unwrap();
        let (_, body) = app.graphql(&key, CREDS, json!({ "id": stripe })).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "INTERNAL",
            "{body}"
        );
        assert!(!body.to_string().contains("CANARY"));

        // Flip one byte of Google's own ciphertext: it must not open either.
        let flip = match backend {
            sea_orm::DatabaseBackend::Postgres => format!(
                "UPDATE connections SET credentials = set_byte(credentials, 30, get_byte(credentials, 30) # 1) WHERE id = '{google_uuid}'"
            ),
            _ => {
                let row = app
                    .db()
                    .query_one_raw(Statement::from_string(
                        backend,
                        format!(
                            "SELECT credentials FROM connections WHERE id = x'{}'",
                            google_uuid.simple()
                        ),
                    ))
                    .await
                    .unwrap()
                    .unwrap();
                let mut bytes: Vec<u8> = row.try_get("", "credentials").unwrap();
                bytes[30] ^= 1;
                format!(
                    "UPDATE connections SET credentials = x'{}' WHERE id = x'{}'",
                    hex::encode(bytes),
                    google_uuid.simple()
                )
            }
        };
        app.db().execute_unprepared(&flip).await.unwrap();
        let (_, body) = app.graphql(&key, CREDS, json!({ "id": google })).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "INTERNAL",
            "{body}"
        );
        assert_eq!(body["errors"][0]["message"], "internal error");
    }
);

db_test!(
    rotation_interrupted_half_way_resumes_and_everything_opens,
    // The server's own sweep would move values between the test's steps.
    config = |c| c.reencrypt_in_background = false,
    |app| async {
        let (key, stripe, google) = seed(&app).await;
        let state = app.server().state();
        assert_eq!(state.keys.ring().current_key_id(), 1);
        let new_key = state.keys.rotate(app.db()).await.unwrap();
        assert_eq!(new_key, 2);

        // New writes use the new key at once.
        app.create_integration(&key, "hubspot").await;
        let usage = state.keys.status(app.db()).await.unwrap();
        assert!(
            usage
                .iter()
                .any(|u| u.column == "integrations.client_secret" && u.key_id == Some(2))
        );

        // Move one value per column, then "crash": drop this keyring and open a fresh one.
        let moved = state.keys.reencrypt_batch(app.db(), 1).await.unwrap();
        assert_eq!(moved, 2);
        let old_left = |usage: &[keyway::service::keys::KeyUsage]| {
            usage
                .iter()
                .filter(|u| u.key_id == Some(1))
                .map(|u| u.count)
                .sum::<u64>()
        };
        // Two integration secrets and two connections were under key 1: one of each moved.
        assert_eq!(
            old_left(&state.keys.status(app.db()).await.unwrap()),
            2,
            "half-way"
        );
        let master = keyway::crypto::master::load(&state.config).unwrap();
        let resumed = keyway::service::keys::KeyStore::open(app.db(), master)
            .await
            .unwrap();
        assert_eq!(resumed.ring().current_key_id(), 2);
        while resumed.reencrypt_batch(app.db(), 1).await.unwrap() > 0 {}
        assert_eq!(old_left(&resumed.status(app.db()).await.unwrap()), 0);

        for (id, field, expected) in [
            (&stripe, "apiKey", SECRETS[1]),
            (&google, "refreshToken", SECRETS[3]),
        ] {
            let data = app.ok(&key, CREDS, json!({ "id": id })).await;
            assert_eq!(data["connectionCredentials"][field], expected);
        }
    }
);

db_test!(
    a_running_server_moves_values_to_a_new_key_by_itself,
    |app| async {
        let (key, stripe, _) = seed(&app).await;
        let state = app.server().state();
        state.keys.rotate(app.db()).await.expect("rotating");
        // One reload moves them (5 s here); the margin is for a loaded CI machine.
        let deadline = std::time::Instant::now() + 12 * keyway::service::keys::RELOAD_INTERVAL;
        loop {
            let usage = state
                .keys
                .status(app.db())
                .await
                .expect("reading key usage");
            let under_old: Vec<_> = usage
                .iter()
                .filter(|u| u.key_id == Some(1) && u.count > 0)
                .map(|u| format!("{}: {}", u.column, u.count))
                .collect();
            if under_old.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still under the old key: {under_old:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let data = app.ok(&key, CREDS, json!({ "id": stripe })).await;
        assert_eq!(data["connectionCredentials"]["apiKey"], SECRETS[1]);
    }
);

db_test!(
    with_background_reencryption_off_values_wait_for_the_command,
    config = |c| c.reencrypt_in_background = false,
    |app| async {
        let (key, stripe, _) = seed(&app).await;
        let state = app.server().state();
        state.keys.rotate(app.db()).await.expect("rotating");
        // Two reloads, each of which would have swept with the setting on.
        tokio::time::sleep(2 * keyway::service::keys::RELOAD_INTERVAL + Duration::from_secs(1))
            .await;
        let usage = state
            .keys
            .status(app.db())
            .await
            .expect("reading key usage");
        let under_old: u64 = usage
            .iter()
            .filter(|u| u.key_id == Some(1))
            .map(|u| u.count)
            .sum();
        assert_eq!(
            under_old, 4,
            "two integration secrets and two connections stay"
        );
        // Still readable under the old key, as they would be mid-way through a sweep.
        let data = app.ok(&key, CREDS, json!({ "id": stripe })).await;
        assert_eq!(data["connectionCredentials"]["apiKey"], SECRETS[1]);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_key_refuses_to_start() {
    crate::support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let config = |key: &str| Config {
        data_dir: dir.path().to_path_buf(),
        master_key: Some(Secret::new(key)),
        ..Config::default()
    };
    let state = keyway::build_state(config(&"11".repeat(32))).await.unwrap();
    state.db.close().await.unwrap();
    let err = keyway::build_state(config(&"22".repeat(32)))
        .await
        .err()
        .expect("must refuse");
    let message = format!("{err:#}");
    assert!(message.contains("wrong key"), "{message}");
    assert!(!message.contains(&"22".repeat(32)));
    // The right key still opens it.
    keyway::build_state(config(&"11".repeat(32))).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_key_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let path = app.data_dir().join("master.key");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    app.stop().await;
}

fn row_id(global: &str) -> uuid::Uuid {
    use base64::Engine;
    let text = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(global)
            .unwrap(),
    )
    .unwrap();
    uuid::Uuid::parse_str(text.split_once(':').unwrap().1).unwrap()
}

/// `keyway keys rotate` killed with SIGKILL mid-way leaves every value readable, and
/// `keyway keys reencrypt` finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_survives_kill_9() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let tenant = app.create_tenant("acme").await;
    app.create_integration(&tenant.key, "stripe").await;
    // Enough rows for several re-encryption batches.
    let deps = app.server().state().deps();
    let scope = keyway::auth::Principal::SecretKey {
        key_id: uuid::Uuid::nil(),
        application_id: row_id(&tenant.id),
        integration_id: None,
    }
    .require_app(app.db(), None)
    .await
    .unwrap();
    for i in 0..1200 {
        let input = keyway::service::connections::NewConnection {
            consumer_id: format!("c{i}"),
            integration: keyway::service::connections::IntegrationRef::ServiceId("stripe".into()),
            environment: keyway::service::connections::Environment::Production,
            settings: None,
            metadata: None,
            user_email: None,
            enabled: true,
            credentials: Some(keyway::service::connections::CredentialsInput {
                fields: Some([("api_key".to_owned(), format!("sk_{i}"))].into()),
                ..Default::default()
            }),
        };
        keyway::service::connections::create(&deps, &scope, input)
            .await
            .unwrap();
    }
    let kept = app.stop_keeping_data().await;
    let dir = kept.path().to_path_buf();

    let bin = env!("CARGO_BIN_EXE_keyway");
    let mut child = Command::new(bin)
        .args(["keys", "rotate"])
        .env("KEYWAY_DATA_DIR", &dir)
        .env("KEYWAY_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill it as soon as it reports its first batch.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 && !line.contains("re-encrypted") {
        line.clear();
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let status = |dir: &std::path::Path| {
        let out = Command::new(bin)
            .args(["keys", "status"])
            .env("KEYWAY_DATA_DIR", dir)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let halfway = status(&dir);
    assert!(halfway.contains("current data key: 2"), "{halfway}");
    assert!(
        halfway.contains("still under older keys"),
        "the kill came too late to test anything: {halfway}"
    );

    let out = Command::new(bin)
        .args(["keys", "reencrypt"])
        .env("KEYWAY_DATA_DIR", &dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(status(&dir).contains("re-encryption: complete"));

    // Every credential opens under the final keyring.
    let config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    let state = keyway::build_state(config).await.unwrap();
    let rows = entity::connection::Entity::find()
        .all(&state.db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1200);
    for row in rows {
        let stored = keyway::service::connections::StoredCredentials::open(
            &state.keys,
            row.credentials.as_deref().unwrap(),
            row.id,
            row.application_id,
        );
        assert!(stored.is_ok(), "connection {} does not open", row.id);
        assert_eq!(row.credentials_key_id, Some(2));
    }
}
