//! The `keyway` binary itself: operator commands, configuration errors, schema export and
//! clean shutdown on SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_keyway");

fn keyway(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KEYWAY_DATA_DIR", dir)
        .env("KEYWAY_LOG_LEVEL", "warn");
    cmd
}

#[test]
fn admin_create_reads_the_password_from_stdin_and_refuses_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let run = |password: &str| {
        let mut child = keyway(dir.path())
            .args(["admin", "create", "ops@example.com", "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let short = run("short");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12"));
    let ok = run("a long enough passphrase");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let again = run("a long enough passphrase");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    // The password never reaches the terminal or the database file in clear.
    let db = std::fs::read(dir.path().join("keyway.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains("a long enough passphrase"));
}

#[test]
fn unknown_configuration_is_named_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = keyway(dir.path())
        .env("KEYWAY_LISTN", "0.0.0.0:1")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEYWAY_LISTN"));

    let file = dir.path().join("keyway.toml");
    std::fs::write(&file, "databse_url = \"sqlite://x.db\"\n").unwrap();
    let out = keyway(dir.path())
        .args(["--config", file.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("databse_url"));

    let out = keyway(dir.path())
        .env("KEYWAY_ENV", "production")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("master key"));
}

#[test]
fn schema_file_is_current() {
    let out = Command::new(BIN).arg("schema").output().unwrap();
    assert!(out.status.success());
    let exported = String::from_utf8(out.stdout).unwrap();
    let stored = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .unwrap_or_default();
    assert!(
        exported == stored,
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql`"
    );
}

/// Serves, mints an operator token with the CLI, uses it, then stops cleanly on SIGTERM.
#[test]
fn serve_answers_then_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = keyway(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("KEYWAY_LOG_LEVEL", "info")
        .env("KEYWAY_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let started = Instant::now();
    let mut addr = String::new();
    let mut line = String::new();
    while addr.is_empty() && started.elapsed() < Duration::from_secs(20) {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(rest) = line.split("listening on http://").nth(1) {
            addr = rest.split_whitespace().next().unwrap().to_owned();
        }
    }
    assert!(!addr.is_empty(), "the server did not report its address");
    // Keep draining logs so the child never blocks on a full pipe.
    let logs = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stderr.lines() {
            all.push_str(&line.unwrap_or_default());
            all.push('\n');
        }
        all
    });

    let token = keyway(dir.path())
        .args(["admin", "token", "--label", "ci"])
        .output()
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("kw_admin_"));

    crate::support::install_crypto();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let body: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{addr}/graphql"))
            .bearer_auth(&token)
            .json(&json!({ "query": "{ viewer { kind } }" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(body["data"]["viewer"]["kind"], "OPERATOR");
    // OAuth callback URLs carry codes and states: they must never reach a log line.
    let status = rt.block_on(async {
        reqwest::Client::new()
            .get(format!(
                "http://{addr}/oauth/callback?code=CODECANARY&state=STATECANARY"
            ))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "keyway did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    let logs = logs.join().unwrap();
    // JSON logs, a request id on the request line, and no secret anywhere.
    assert!(logs.contains("\"request_id\""), "{logs}");
    assert!(
        !logs.contains(&token[9..]),
        "the token leaked into the logs"
    );
    assert!(logs.contains("keyway stopped"));
}

crate::db_test!(scripting_client_lists_and_reads_credentials, |app| async {
    let tenant = app.create_tenant("acme").await;
    app.create_integration(&tenant.key, "stripe").await;
    app.create_stripe_connection(&tenant.key, "alice", "sk_CLI_SECRET")
        .await;
    app.create_stripe_connection(&tenant.key, "bob", "sk_other")
        .await;
    let base = app.base.clone();
    let key = tenant.key.clone();
    let run = move |args: &[&str], key: &str| {
        let out = Command::new(BIN)
            .args(args)
            .env("KEYWAY_URL", &base)
            .env("KEYWAY_API_KEY", key)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, _) = run(&["connections", "list", "--page-size", "1"], &key);
    assert!(ok);
    assert!(stdout.starts_with("ID"), "{stdout}");
    assert!(
        stdout.contains("alice") && !stdout.contains("bob"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 of 2 connection(s)") && stdout.contains("--cursor"),
        "{stdout}"
    );
    let cursor = stdout
        .lines()
        .last()
        .unwrap()
        .split("--cursor ")
        .nth(1)
        .unwrap()
        .to_owned();
    let (ok, stdout, _) = run(
        &["connections", "list", "--json", "--cursor", &cursor],
        &key,
    );
    assert!(ok);
    let page: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(page["edges"][0]["node"]["consumerId"], "bob");
    // Or by page number: the pages before it are walked through.
    let (ok, stdout, _) = run(
        &["connections", "list", "--page-size", "1", "--page", "2"],
        &key,
    );
    assert!(ok);
    assert!(
        stdout.contains("bob") && !stdout.contains("alice"),
        "{stdout}"
    );
    assert!(
        stdout.contains("page 2 of 2: 1 of 2 connection(s)"),
        "{stdout}"
    );
    assert!(!stdout.contains("next page"), "{stdout}");
    let (ok, stdout, _) = run(
        &[
            "connections",
            "list",
            "--page-size",
            "1",
            "--page",
            "3",
            "--json",
        ],
        &key,
    );
    assert!(ok);
    let page: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(page["edges"], serde_json::json!([]), "past the last page");
    for bad in [
        &["--page", "0"][..],
        &["--page-size", "0"],
        &["--page-size", "201"],
        &["--page", "2", "--cursor", &cursor],
    ] {
        let (ok, _, stderr) = run(&[&["connections", "list"][..], bad].concat(), &key);
        assert!(!ok && !stderr.is_empty(), "{bad:?}");
    }

    let (ok, stdout, _) = run(
        &[
            "connections",
            "get-credentials",
            "stripe",
            "--consumer",
            "alice",
            "--json",
        ],
        &key,
    );
    assert!(ok);
    let creds: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(creds["apiKey"], "sk_CLI_SECRET");
    let (ok, stdout, _) = run(
        &[
            "connections",
            "get-credentials",
            "stripe",
            "--consumer",
            "alice",
        ],
        &key,
    );
    assert!(
        ok && stdout.contains("apiKey") && stdout.contains("sk_CLI_SECRET"),
        "{stdout}"
    );

    let (ok, _, stderr) = run(
        &[
            "connections",
            "get-credentials",
            "stripe",
            "--consumer",
            "nobody",
        ],
        &key,
    );
    assert!(!ok);
    assert!(stderr.contains("NOT_FOUND"), "{stderr}");
    let (ok, _, stderr) = run(&["connections", "list"], "kw_sk_wrong");
    assert!(!ok);
    assert!(
        stderr.contains("UNAUTHENTICATED") && stderr.contains("401"),
        "{stderr}"
    );
});

#[test]
fn keys_commands_rotate_report_and_refuse_a_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = "ab".repeat(32);
    let run = |args: &[&str], master: &str| {
        keyway(dir.path())
            .env("KEYWAY_MASTER_KEY", master)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["keys", "status"], &key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("current data key: 1"));
    let out = run(&["keys", "rotate"], &key);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("data key 2 is current"));
    let out = run(&["keys", "status"], &key);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("current data key: 2") && stdout.contains("complete"),
        "{stdout}"
    );

    let out = run(&["keys", "status"], &"cd".repeat(32));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrong key"), "{stderr}");
    assert!(!stderr.contains(&"cd".repeat(32)));
}

/// Log lines reach a pipe whole, written out before the process exits (they are written by a
/// thread of their own), and carry no terminal colour codes.
#[test]
fn logs_to_a_pipe_are_plain_and_flushed_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let out = keyway(dir.path())
        .arg("migrate")
        .env("KEYWAY_LOG_LEVEL", "info")
        .env("KEYWAY_LOG_FORMAT", "human")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logged: Vec<&str> = stderr.lines().filter(|l| l.contains(" INFO ")).collect();
    assert!(
        !logged.is_empty(),
        "no INFO line reached the pipe: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in piped logs: {stderr:?}"
    );
}
