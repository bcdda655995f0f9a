//! Calls out over TLS, as every real provider is reached: the proxy and the token/webhook
//! client verify the provider's certificate (the platform's roots, plus `upstream_ca_file`),
//! and a certificate they cannot verify is refused before any request, so no credential
//! leaves. The provider here is a local HTTPS server under a CA made for the test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use keyway::config::Config;
use serde_json::{Value, json};

use crate::proxy::raw_get;
use crate::support::{Backend, TestApp};

/// An HTTPS API on 127.0.0.1 whose certificate names `localhost`, issued by a CA of its own
/// (written to `ca_file`). Records the `X-Api-Key` of each request it answers.
struct TlsProvider {
    addr: SocketAddr,
    ca_file: PathBuf,
    keys_seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TlsProvider {
    async fn start() -> Self {
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
        let keys_seen = Arc::new(Mutex::new(Vec::new()));
        let seen = keys_seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate breaks off here.
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: http::Request<_>| {
                        let key = req
                            .headers()
                            .get("x-api-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        seen.lock().unwrap().push(key);
                        let body = json!({ "path": req.uri().path() }).to_string();
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(body),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            ca_file,
            keys_seen,
            task,
            _dir: dir,
        }
    }

    /// The API's base URL under the name its certificate carries.
    fn base(&self) -> String {
        format!("https://localhost:{}/api", self.addr.port())
    }

    fn keys_seen(&self) -> Vec<String> {
        self.keys_seen.lock().unwrap().clone()
    }

    /// A server configuration that may reach this provider on loopback, trusting its CA or not.
    fn allow(&self, config: &mut Config, trust_its_ca: bool) {
        config
            .allowed_private_hosts
            .push(format!("localhost:{}", self.addr.port()));
        if trust_its_ca {
            config.upstream_ca_file = Some(self.ca_file.clone());
        }
    }
}

impl Drop for TlsProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An API-key connection to `provider` for a new tenant: (the tenant's key, connection id).
async fn connection_to(app: &TestApp, provider: &TlsProvider) -> (String, String) {
    let tenant = app.create_tenant("acme").await;
    let definition = json!({
        "service_id": "tlsapi", "name": "TLS API", "unified_api": "crm", "auth_type": "api_key",
        "base_url": provider.base(),
        "credential_fields": [{"id": "api_key", "label": "API key", "type": "password", "required": true}],
        "injection": {"type": "header", "name": "X-Api-Key", "field": "api_key"}
    });
    app.ok(
        &tenant.key,
        "mutation($p: JSON) { createIntegration(input: {serviceId: \"tlsapi\", customProvider: $p}) { id } }",
        json!({ "p": definition }),
    )
    .await;
    let data = app
        .ok(
            &tenant.key,
            "mutation { createConnection(input: {consumerId: \"dana\", serviceId: \"tlsapi\", credentials: {fields: {api_key: \"tls-secret-key\"}}}) { id } }",
            json!({}),
        )
        .await;
    let id = data["createConnection"]["id"].as_str().unwrap().to_owned();
    (tenant.key, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_reaches_an_https_provider_under_a_ca_the_operator_trusts() {
    let provider = TlsProvider::start().await;
    let app = TestApp::with_config(Backend::Sqlite, |c| provider.allow(c, true))
        .await
        .unwrap();
    let (key, id) = connection_to(&app, &provider).await;
    // Read at start: a worker building its proxy client later trusts what the start read.
    std::fs::remove_file(&provider.ca_file).unwrap();

    let response = raw_get(&app, &key, &id, "/contacts").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["path"], "/api/contacts");
    // The mutation goes the same way.
    let data = app
        .ok(
            &key,
            "mutation($id: ID!) { proxy(input: {connectionId: $id, path: \"/deals\"}) { status body } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["proxy"]["status"], 200, "{data}");
    assert_eq!(provider.keys_seen(), ["tls-secret-key", "tls-secret-key"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_certificate_nobody_trusts_is_refused_before_the_credential_leaves() {
    let provider = TlsProvider::start().await;
    let app = TestApp::with_config(Backend::Sqlite, |c| provider.allow(c, false))
        .await
        .unwrap();
    let (key, id) = connection_to(&app, &provider).await;

    let response = raw_get(&app, &key, &id, "/contacts").await;
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(text.contains("UPSTREAM"), "{text}");
    assert!(!text.contains("tls-secret-key"), "{text}");
    assert!(
        provider.keys_seen().is_empty(),
        "no request reached the provider"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_and_webhook_client_trusts_the_same_ca() {
    let provider = TlsProvider::start().await;
    let url = format!("{}/token", provider.base());
    let mut trusting = Config::default();
    provider.allow(&mut trusting, true);
    let answer = keyway::upstream::client(&trusting)
        .unwrap()
        .get(&url)
        .send()
        .await
        .expect("the CA is trusted");
    assert_eq!(answer.status(), 200);
    // The same server under a name its certificate does not carry.
    let by_address = format!("https://{}/api/token", provider.addr);
    let client = keyway::upstream::client(&trusting).unwrap();
    assert!(
        client.get(&by_address).send().await.is_err(),
        "a certificate for another name must be refused"
    );

    let mut untrusting = Config::default();
    provider.allow(&mut untrusting, false);
    let refused = keyway::upstream::client(&untrusting)
        .unwrap()
        .get(&url)
        .send()
        .await;
    assert!(refused.is_err(), "an unknown CA must be refused");
    assert_eq!(
        provider.keys_seen().len(),
        1,
        "only the trusting client's call"
    );
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
