//! The proxy's own HTTP client: hyper's pooled client with nothing on top.
//!
//! Token, revocation and webhook calls use `reqwest` (`super::client`); the proxy's hot path
//! does not, because reqwest wraps every call in layers the proxy never uses (redirect and
//! retry services, a URL → URI re-parse, its own timeout futures) and they showed as a tenth
//! of the proxy's CPU. The rules stay the same as for the other client: no redirects are
//! followed (hyper follows none), names resolve through `PublicOnlyResolver`, TLS verifies
//! against the platform's roots with the process's ring provider, nodelay, a connect timeout
//! (the caller applies the overall one).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::mpsc;

use super::resolver::PublicOnlyResolver;
use crate::config::Config;
use crate::error::{Error, Result};

pub type ProxyClient = Client<HttpsConnector<HttpConnector<PublicOnlyResolver>>, OutboundBody>;

/// A request body towards a provider: held in full (retryable) or fed through a channel.
pub enum OutboundBody {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<std::io::Result<Bytes>>),
}

impl OutboundBody {
    pub fn full(bytes: Bytes) -> Self {
        Self::Full((!bytes.is_empty()).then_some(bytes))
    }
}

impl Body for OutboundBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::io::Result<Frame<Bytes>>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Channel(rx) => rx
                .poll_recv(cx)
                .map(|item| item.map(|chunk| chunk.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Channel(_) => SizeHint::default(),
        }
    }
}

fn build(config: &Config) -> Result<ProxyClient> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new(provider.clone()).map_err(Error::internal)?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::internal)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let mut http =
        HttpConnector::new_with_resolver(PublicOnlyResolver::new(super::allowed_names(config)));
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(https))
}

thread_local! {
    static PER_THREAD: std::cell::RefCell<Option<ProxyClient>> = const { std::cell::RefCell::new(None) };
}

/// A client of this thread's own. A client's pooled connections are driven by the runtime
/// that opened them; each HTTP worker runs its own runtime, so a shared pool would hand every
/// call's I/O to another thread (a wake-up and a context switch per call).
pub fn per_thread(config: &Config) -> Result<ProxyClient> {
    PER_THREAD.with(|slot| {
        if let Some(client) = slot.borrow().as_ref() {
            return Ok(client.clone());
        }
        let fresh = build(config)?;
        *slot.borrow_mut() = Some(fresh.clone());
        Ok(fresh)
    })
}
