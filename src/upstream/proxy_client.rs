//! The proxy's own HTTP client: hyper's HTTP/1.1 connections, pooled per thread
//! (`proxy_pool`), with nothing on top.
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
use http::header::{CONTENT_LENGTH, HOST, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::mpsc;
use tower_service::Service;

use super::proxy_pool::{self, Origin, PooledBody, Sender};
use super::resolver::PublicOnlyResolver;
use crate::config::Config;
use crate::error::{Error, Result};

/// A request body towards a provider: held in full (retryable) or fed through a channel.
pub enum OutboundBody {
    Full(Option<Bytes>),
    /// `length`: the caller's declared `Content-Length`, sent on as declared. Without it the
    /// body goes out chunked, which some providers refuse (411) for an upload.
    Channel {
        chunks: mpsc::Receiver<std::io::Result<Bytes>>,
        length: Option<u64>,
    },
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
            Self::Channel { chunks, .. } => chunks
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
            Self::Channel {
                length: Some(length),
                ..
            } => SizeHint::with_exact(*length),
            Self::Channel { length: None, .. } => SizeHint::default(),
        }
    }
}

/// The proxy's HTTP client: a connector (names resolved by `PublicOnlyResolver`, TLS) and
/// this thread's idle connections (`proxy_pool`). Cheap to clone.
#[derive(Clone)]
pub struct ProxyClient {
    connector: HttpsConnector<HttpConnector<PublicOnlyResolver>>,
}

/// Why a call got no answer.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (a name refused by the resolver among them).
    Connect(BoxError),
    /// The connection failed before a complete answer head arrived.
    Http(hyper::Error),
    /// The URL has no scheme or host (the caller builds it from a checked base URL).
    NotAbsolute,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl SendError {
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(err) => write!(f, "could not connect: {err}"),
            SendError::Http(err) => write!(f, "{err}"),
            SendError::NotAbsolute => f.write_str("the URL is not absolute"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Connect(err) => Some(err.as_ref()),
            SendError::Http(err) => Some(err),
            SendError::NotAbsolute => None,
        }
    }
}

impl ProxyClient {
    /// Sends one request (an absolute URI; `Host` is set from it unless present) over an idle
    /// connection to its origin, or a new one, and returns the answer's head as soon as it
    /// arrives. A request that an idle connection could not take (the provider had closed it)
    /// is sent again on another, as it never left; an idempotent one that a connection idle
    /// for `LONG_IDLE` or more failed under is sent once more on a new connection
    /// (`replayable`). A connection whose request body was streamed is closed after its
    /// answer rather than pooled (`PooledBody::new`).
    pub async fn request(
        &self,
        mut request: http::Request<OutboundBody>,
    ) -> std::result::Result<http::Response<PooledBody>, SendError> {
        let uri = request.uri().clone();
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(SendError::NotAbsolute);
        };
        let origin = Origin {
            scheme: scheme.clone(),
            authority: authority.clone(),
        };
        if !request.headers().contains_key(HOST) {
            let host = host_header(&uri, authority).map_err(|_| SendError::NotAbsolute)?;
            request.headers_mut().insert(HOST, host);
        }
        // hyper sends no length for an empty body; a POST, PUT or PATCH should say it is empty
        // (RFC 9110 §8.6), and some providers answer 411 when it does not.
        if http_body::Body::is_end_stream(request.body())
            && matches!(
                *request.method(),
                http::Method::POST | http::Method::PUT | http::Method::PATCH
            )
        {
            request
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        // HTTP/1.1 sends the path and query only (RFC 9112 §3.2.1).
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = http::Uri::try_from(path).map_err(|_| SendError::NotAbsolute)?;
        let reuse = !matches!(request.body(), OutboundBody::Channel { .. });
        // Set once a sent request is to go again: then on a new connection, and only once.
        let mut replaying = false;
        loop {
            let idle = if replaying {
                None
            } else {
                proxy_pool::take(&origin)
            };
            let (mut sender, idle_for) = match idle {
                Some((sender, idle_for)) => (sender, Some(idle_for)),
                None => (self.connect(&uri).await?, None),
            };
            if let Err(err) = sender.ready().await {
                if idle_for.is_some() {
                    continue;
                }
                return Err(SendError::Http(err));
            }
            // (A replay goes out on a new connection, so it is never copied again.)
            let replay = match idle_for {
                Some(idle_for) if idle_for >= LONG_IDLE => replayable(&request),
                _ => None,
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    return Ok(response.map(|body| PooledBody::new(body, origin, sender, reuse)));
                }
                Err(mut failed) => match (failed.take_message(), replay) {
                    // Never sent: the connection was closing; any other will do.
                    (Some(unsent), _) if idle_for.is_some() => request = unsent,
                    // Sent on a connection the provider was closing as it arrived.
                    (_, Some(again)) => {
                        request = again;
                        replaying = true;
                    }
                    _ => return Err(SendError::Http(failed.into_error())),
                },
            }
        }
    }

    async fn connect(&self, uri: &http::Uri) -> std::result::Result<Sender, SendError> {
        let io = self
            .connector
            .clone()
            .call(uri.clone())
            .await
            .map_err(SendError::Connect)?;
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(SendError::Http)?;
        // The connection is driven by this thread's runtime until either side closes it;
        // its errors reach the call that is using it.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// A connection idle this long may have been closed by its provider (servers' idle timeouts
/// are seconds or more) just as a request goes out on it; one busy a moment ago has not.
const LONG_IDLE: Duration = Duration::from_secs(1);

/// A copy of an idempotent request (RFC 9110 §9.2.2) with its body held, to send once more
/// when a long-idle connection fails under it, as nginx's `proxy_next_upstream` does. None
/// for other methods and for streamed bodies, which are sent once.
fn replayable(request: &http::Request<OutboundBody>) -> Option<http::Request<OutboundBody>> {
    use http::Method;
    let idempotent = [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ];
    let OutboundBody::Full(body) = request.body() else {
        return None;
    };
    if !idempotent.contains(request.method()) {
        return None;
    }
    let mut copy = http::Request::new(OutboundBody::Full(body.clone()));
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

/// `host[:port]`, the port only when it is not the scheme's default; never the authority's
/// user information (RFC 9110 §7.2).
fn host_header(
    uri: &http::Uri,
    authority: &http::uri::Authority,
) -> std::result::Result<HeaderValue, http::header::InvalidHeaderValue> {
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    match authority.port_u16() {
        // The authority as written, when it is just `host:port` (no formatting per call).
        Some(port) if port != default_port && !authority.as_str().contains('@') => {
            HeaderValue::from_str(authority.as_str())
        }
        Some(port) if port != default_port => {
            HeaderValue::from_str(&format!("{}:{port}", authority.host()))
        }
        _ => HeaderValue::from_str(authority.host()),
    }
}

fn build(config: &Config) -> Result<ProxyClient> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let extra_roots = super::roots::extra(config).map_err(Error::internal)?;
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider.clone())
            .map_err(Error::internal)?;
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
    // HTTP/1.1 only (ALPN offers nothing else), as nginx speaks to its upstreams: the pool
    // keeps one call per connection.
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(ProxyClient { connector })
}

thread_local! {
    static PER_THREAD: std::cell::RefCell<Option<ProxyClient>> = const { std::cell::RefCell::new(None) };
}

/// This thread's client (built once per thread: the TLS set-up reads the platform's roots).
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_header_has_no_user_information_and_no_default_port() {
        for (url, host) in [
            ("http://user:secret@127.0.0.1:8080/x", "127.0.0.1:8080"),
            ("https://user@api.example.com:443/x", "api.example.com"),
            ("http://api.example.com:80/x", "api.example.com"),
            ("https://[::1]:8443/x", "[::1]:8443"),
        ] {
            let uri: http::Uri = url.parse().unwrap();
            let value = super::host_header(&uri, uri.authority().unwrap()).unwrap();
            assert_eq!(value, host, "{url}");
        }
    }
}
