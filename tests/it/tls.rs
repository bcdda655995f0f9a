//! Calls out over TLS, as every real provider is reached: the proxy and the token/webhook
//! client verify the provider's certificate (the platform's roots, plus `upstream_ca_file`),
//! and a certificate they cannot verify is refused before any request, so neither a
//! credential nor a client secret leaves. The provider is the fake one, behind a TLS front
//! whose certificate names `localhost`, under a CA made for the test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use keyway::config::Config;
use serde_json::{Value, json};

use crate::fake_provider::FakeProvider;
use crate::oauth::{consent_and_return, query_of};
use crate::proxy::{fake_key_provider, raw_get};
use crate::support::{Backend, Tenant, TestApp};

/// Terminates TLS on 127.0.0.1 and passes the bytes on to the fake provider's plain port.
struct TlsFront {
    addr: SocketAddr,
    ca_file: PathBuf,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TlsFront {
    async fn start(behind: &FakeProvider) -> Self {
        crate::support::install_crypto();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Keyway test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &rcgen::Issuer::new(ca_params, ca_key))
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target: SocketAddr = behind.host().parse().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that does not trust the certificate breaks off here, before
                    // anything reaches the provider.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if let Ok(mut plain) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        });
        Self {
            addr,
            ca_file,
            task,
            _dir: dir,
        }
    }

    /// The provider's base URL under the name the certificate carries.
    fn base(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// A server configuration that may reach the front on loopback, trusting its CA or not.
    fn allow(&self, config: &mut Config, trust_its_ca: bool) {
        config
            .allowed_private_hosts
            .push(format!("localhost:{}", self.addr.port()));
        if trust_its_ca {
            config.upstream_ca_file = Some(self.ca_file.clone());
        }
    }

    /// `definition` with every URL of the fake moved onto this front.
    fn moved(&self, fake: &FakeProvider, definition: &Value) -> Value {
        serde_json::from_str(&definition.to_string().replace(&fake.base, &self.base())).unwrap()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fake provider, a TLS front to it, a server (SQLite) that trusts the front's CA or not,
/// and a tenant with the fake's OAuth integration, every URL on the front.
async fn setup(trust_its_ca: bool) -> (FakeProvider, TlsFront, TestApp, Tenant) {
    let fake = FakeProvider::start().await;
    let front = TlsFront::start(&fake).await;
    let app = TestApp::with_config(Backend::Sqlite, |c| front.allow(c, trust_its_ca))
        .await
        .unwrap();
    let tenant = app.create_tenant("acme").await;
    app.ok(
        &tenant.key,
        "mutation($p: JSON) { createIntegration(input: {serviceId: \"fake\", clientId: \"cid\", clientSecret: \"csecret\", customProvider: $p}) { id } }",
        json!({ "p": front.moved(&fake, &fake.definition()) }),
    )
    .await;
    (fake, front, app, tenant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_connection_connects_refreshes_and_proxies_over_tls() {
    let (fake, front, app, tenant) = setup(true).await;
    // The code exchange (the token client).
    let id = crate::refresh::connected(&app, &fake, &tenant).await;
    assert_eq!(fake.token_requests(), 1);
    // Read once, at start: each worker building its proxy client later trusts what was read.
    std::fs::remove_file(&front.ca_file).unwrap();

    // A refresh (the token client again).
    let data = app
        .ok(
            &tenant.key,
            "query($id: ID!) { connectionCredentials(id: $id, forceRefresh: true) { accessToken } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["connectionCredentials"]["accessToken"], "at-2");
    assert_eq!(fake.refresh_requests(), 1);

    // The raw route and the mutation (the proxy's client), with the refreshed token.
    let response = raw_get(&app, &tenant.key, &id, "/contacts").await;
    assert_eq!(response.status(), 200);
    let data = app
        .ok(
            &tenant.key,
            "mutation($id: ID!) { proxy(input: {connectionId: $id, path: \"/deals\"}) { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["proxy"]["status"], 200, "{data}");
    let calls = fake.api_requests();
    let seen: Vec<(&str, Option<&str>)> = calls
        .iter()
        .map(|r| (r.path.as_str(), r.header("authorization")))
        .collect();
    assert_eq!(
        seen,
        [
            ("/api/contacts", Some("Bearer at-2")),
            ("/api/deals", Some("Bearer at-2"))
        ]
    );
    app.stop().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_nobody_trusts_gets_neither_the_client_secret_nor_a_credential() {
    let (fake, front, app, tenant) = setup(false).await;
    // The code exchange fails before its request (client secret, code, verifier) is sent.
    let location = consent_and_return(&app, &fake, &tenant.key).await;
    assert_eq!(query_of(&location)["error"], "server_error");
    assert_eq!(fake.token_requests(), 0);

    // The proxy refuses the provider before sending the injected key.
    let key_provider = front.moved(&fake, &fake_key_provider(&fake, "v1", "X-Api-Key"));
    app.ok(
        &tenant.key,
        "mutation($p: JSON) { createIntegration(input: {serviceId: \"fakekey\", customProvider: $p}) { id } }",
        json!({ "p": key_provider }),
    )
    .await;
    let data = app
        .ok(
            &tenant.key,
            "mutation { createConnection(input: {consumerId: \"dana\", serviceId: \"fakekey\", credentials: {fields: {api_key: \"tls-secret-key\"}}}) { id } }",
            json!({}),
        )
        .await;
    let id = data["createConnection"]["id"].as_str().unwrap();
    let response = raw_get(&app, &tenant.key, id, "/contacts").await;
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(text.contains("UPSTREAM"), "{text}");
    assert!(!text.contains("tls-secret-key"), "{text}");
    assert!(
        fake.api_requests().is_empty(),
        "no request reached the provider"
    );
    app.stop().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_client_trusts_the_same_ca_and_checks_the_name() {
    let fake = FakeProvider::start().await;
    let front = TlsFront::start(&fake).await;
    let mut trusting = Config::default();
    front.allow(&mut trusting, true);
    let client = keyway::upstream::client(&trusting).unwrap();
    let answer = client
        .post(format!("{}/api/hooks", front.base()))
        .send()
        .await
        .expect("the CA is trusted");
    assert_eq!(answer.status(), 200);
    // The same server under a name its certificate does not carry.
    let by_address = format!("https://{}/api/hooks", front.addr);
    assert!(
        client.post(&by_address).send().await.is_err(),
        "a certificate for another name must be refused"
    );

    let mut untrusting = Config::default();
    front.allow(&mut untrusting, false);
    let refused = keyway::upstream::client(&untrusting)
        .unwrap()
        .post(format!("{}/api/hooks", front.base()))
        .send()
        .await;
    assert!(refused.is_err(), "an unknown CA must be refused");
    assert_eq!(
        fake.api_requests().len(),
        1,
        "only the trusting client's call"
    );
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_ca_file_stops_the_server_naming_the_key() {
    crate::support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("empty.pem");
    std::fs::write(&not_pem, "no certificate in here\n").unwrap();
    for path in [dir.path().join("missing.pem"), not_pem] {
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            upstream_ca_file: Some(path.clone()),
            ..Config::default()
        };
        let err = keyway::build_state(config)
            .await
            .err()
            .expect("must refuse to start");
        let message = format!("{err:#}");
        assert!(message.contains("upstream_ca_file"), "{message}");
        assert!(message.contains(&*path.to_string_lossy()), "{message}");
    }
}
