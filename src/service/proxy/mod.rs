//! Calls to a provider on a consumer's behalf, with the connection's credential injected
//! (SPEC §5 "Proxy"). The URL never leaves the provider's base URL (`url`); the caller's
//! identity and hop-by-hop headers never reach the provider (`headers`); redirects are never
//! followed (the one upstream client); a token near expiry is refreshed first, and an upstream
//! 401 triggers one refresh and one retry; a 429 is passed back, or, when the caller allows a
//! wait and the provider's `Retry-After` is within it, waited out and retried once (`rate_limit`).
//! Decrypted credentials come from `cache`, so a call reads nothing from the database unless
//! its entry is missing.
//!
//! What it must never do: log or return a credential, or send one anywhere but the
//! provider's own host.

pub mod cache;
pub mod content_coding;
pub mod headers;
pub mod max_forwards;
pub mod method;
pub mod rate_limit;
pub mod response;
pub mod url;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use entity::connection::Model;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue, USER_AGENT, VIA};
use uuid::Uuid;

pub use cache::CredentialCache;
use headers::Credential;
pub use response::UpstreamResponse;

use super::connections::{
    self, ConnectionFilter, ConnectionState, Deps, Environment, StoredCredentials,
};
use crate::auth::AppScope;
use crate::catalog::{AuthType, Provider};
use crate::error::{Error, Result};
use crate::service::pagination::PageRequest;
use crate::service::{integrations, refresh};
use crate::upstream::proxy_client::{OutboundBody, ProxyClient, SendError};

/// A connection ready to be called through: decrypted, checked, its base URL resolved.
pub struct Target {
    pub connection: Model,
    pub provider: Arc<Provider>,
    pub base: ::url::Url,
    credential: Credential,
    /// An OAuth2 connection with a refresh token: a 401 is worth one refresh.
    refreshable: bool,
    /// What every call's log entry says about the target, made once per load: each entry
    /// shares these rather than copying them.
    pub labels: LogLabels,
}

pub struct LogLabels {
    pub base_url: Arc<str>,
    pub service_id: Arc<str>,
    pub unified_api: Arc<str>,
    pub consumer_id: Arc<str>,
}

impl Target {
    /// A copy for one thread's cache front (`cache`): nothing a call clones (the credential,
    /// the log labels) is shared with another thread's copy, so no reference count moves
    /// between cores.
    pub fn for_this_thread(&self) -> Target {
        let labels = &self.labels;
        Target {
            connection: self.connection.clone(),
            provider: self.provider.clone(),
            base: self.base.clone(),
            credential: self.credential.unshared(),
            refreshable: self.refreshable,
            labels: LogLabels {
                base_url: Arc::from(&*labels.base_url),
                service_id: Arc::from(&*labels.service_id),
                unified_api: Arc::from(&*labels.unified_api),
                consumer_id: Arc::from(&*labels.consumer_id),
            },
        }
    }

    pub fn sandbox(&self) -> bool {
        Environment::parse_stored(&self.connection.environment) == Environment::Sandbox
    }
}

pub enum ConnectionRef {
    Id(Uuid),
    /// The consumer's connection to the service (the callable one, the newest if several),
    /// in `environment` when one is named.
    Consumer {
        consumer_id: String,
        service_id: String,
        environment: Option<Environment>,
    },
}

pub enum CallBody {
    Empty,
    /// Held in full: a 401 can be retried.
    Bytes(bytes::Bytes),
    /// Streamed through (`OutboundBody::Channel`): sent once, never retried.
    Stream(OutboundBody),
}

pub struct ProxyCall {
    pub method: Method,
    /// Relative to the provider's base URL; no query string.
    pub path: String,
    /// Already percent-encoded, as the caller sent it.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: CallBody,
    /// How long the caller is willing to wait out a 429 (`rate_limit::allowed_wait`); zero:
    /// the 429 is the answer.
    pub rate_limit_wait: Duration,
    /// The HTTP version of the caller's request when Keyway forwards it as a gateway (the raw
    /// route), which `Via` records; none when Keyway makes the request itself (the mutation).
    pub forwarded_from: Option<http::Version>,
}

pub struct Forwarded {
    /// Status, headers and a body still to be read (or streamed).
    pub response: UpstreamResponse,
    pub target: Arc<Target>,
    /// Time waiting for the provider's answer (both calls when retried).
    pub latency: Duration,
}

/// Resolves a `ConnectionRef` the scope may use.
pub async fn resolve(deps: &Deps<'_>, scope: &AppScope, which: ConnectionRef) -> Result<Uuid> {
    match which {
        ConnectionRef::Id(id) => Ok(id),
        ConnectionRef::Consumer {
            consumer_id,
            service_id,
            environment,
        } => {
            let filter = ConnectionFilter {
                consumer_id: Some(consumer_id),
                service_id: Some(service_id),
                environment,
                ..ConnectionFilter::default()
            };
            let page = PageRequest::parse(Some(200), None)?;
            let rows = connections::list(deps.db, deps.catalog, scope, &filter, &page).await?;
            rows.items
                .iter()
                .rev()
                .find(|c| c.state == ConnectionState::Callable.as_str())
                .or(rows.items.last())
                .map(|c| c.id)
                .ok_or(Error::NotFound)
        }
    }
}

/// Sends the call to the provider and returns its answer, whatever its status.
pub async fn forward(
    deps: &Deps<'_>,
    scope: &AppScope,
    id: Uuid,
    call: ProxyCall,
) -> Result<Forwarded> {
    let mut target = target(deps, scope, id).await?;
    if refresh::due(&target.connection) {
        target = Box::pin(fresh_target(deps, scope, &target, false)).await?;
    }
    let ProxyCall {
        method,
        path,
        query,
        headers,
        body,
        rate_limit_wait,
        forwarded_from,
    } = call;
    let mut outbound = headers::outbound(&headers, &target.provider);
    if let Some(version) = forwarded_from {
        outbound.append(VIA, headers::via(version));
    }
    outbound
        .entry(USER_AGENT)
        .or_insert(HeaderValue::from_static(crate::upstream::USER_AGENT));
    let http = crate::upstream::proxy_client::per_thread(deps.config)?;
    let (body, replay) = match body {
        CallBody::Empty => (OutboundBody::full(Bytes::new()), Some(Bytes::new())),
        CallBody::Bytes(bytes) => (OutboundBody::full(bytes.clone()), Some(bytes)),
        CallBody::Stream(stream) => (stream, None),
    };
    let request = |target: &Target,
                   body: OutboundBody,
                   headers: HeaderMap|
     -> Result<http::Request<OutboundBody>> {
        let query = match &target.credential {
            Credential::Query(name, value) => {
                Some(headers::query_with(query.as_deref(), name, value))
            }
            Credential::Header(..) => query.clone(),
        };
        let url = url::join(&target.base, &path, query.as_deref())?;
        let uri = http::Uri::try_from(url.as_str())
            .map_err(|_| Error::bad_input("path refused: not a valid URL"))?;
        let mut request = http::Request::new(body);
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        if let Credential::Header(name, value) = &target.credential {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        Ok(request)
    };
    let timeout = Duration::from_secs(deps.config.upstream_timeout_secs);

    // Only a call that may be retried needs its headers twice. A call is sent twice at
    // most, whichever answer asked for the second.
    let retry = replay
        .filter(|_| target.refreshable || !rate_limit_wait.is_zero())
        .map(|r| (r, outbound.clone()));
    let started = Instant::now();
    let mut response = send(&http, request(&target, body, outbound)?, timeout).await?;
    if let Some((replay, headers)) = retry {
        match response.status() {
            reqwest::StatusCode::UNAUTHORIZED if target.refreshable => {
                // The token may have been revoked or rotated early: refresh once and try
                // again. If the refresh fails, the provider's 401 is the answer.
                if let Ok(fresh) = Box::pin(fresh_target(deps, scope, &target, true)).await {
                    target = fresh;
                    let again = request(&target, OutboundBody::full(replay), headers)?;
                    response = send(&http, again, timeout).await?;
                }
            }
            reqwest::StatusCode::TOO_MANY_REQUESTS => {
                let delay = rate_limit::retry_after(response.headers(), Utc::now())
                    .filter(|delay| *delay <= rate_limit_wait);
                if let Some(delay) = delay {
                    // Its body is not wanted: dropping it closes its connection.
                    drop(response);
                    tokio::time::sleep(delay).await;
                    let again = request(&target, OutboundBody::full(replay), headers)?;
                    response = send(&http, again, timeout).await?;
                }
            }
            _ => {}
        }
    }
    Ok(Forwarded {
        response,
        target,
        latency: started.elapsed(),
    })
}

/// One call; `timeout` covers the answer's head here and its body where it is read.
async fn send(
    http: &ProxyClient,
    request: http::Request<OutboundBody>,
    timeout: Duration,
) -> Result<UpstreamResponse> {
    let deadline = tokio::time::Instant::now() + timeout;
    match tokio::time::timeout_at(deadline, http.request(request)).await {
        Err(_) => Err(response::timed_out()),
        Ok(Err(err)) => Err(upstream_error(&err)),
        Ok(Ok(answer)) => Ok(UpstreamResponse::new(answer, deadline)),
    }
}

/// A transport failure. These errors name no URL (which may carry a query credential).
fn upstream_error(err: &SendError) -> Error {
    let text = if err.is_connect() {
        if crate::upstream::refused_address(err) {
            "the provider's host resolves to a private address"
        } else {
            "could not connect to the provider"
        }
    } else {
        "the request to the provider failed"
    };
    tracing::warn!(error = %err, "proxy call failed");
    Error::Upstream(text.into())
}

/// The target from the cache, or loaded and cached: where a call would go, every check of the
/// connection's state passed.
///
/// Loading (and refreshing, in `forward`) is boxed: their database futures are large, and
/// held inline they made every call's future 24 KB, which actix moves into a box on every
/// request, and which the cached path never needs.
pub async fn target(deps: &Deps<'_>, scope: &AppScope, id: Uuid) -> Result<Arc<Target>> {
    if let Some(cached) = deps.cache.get(id)
        && connections::visible(scope, &cached.connection)
    {
        return Ok(cached);
    }
    Box::pin(load(deps, scope, id)).await
}

/// Refreshes the token (or waits for whoever is refreshing it) and loads the result. When
/// the refresh fails but the old token has not expired, the old one is used.
async fn fresh_target(
    deps: &Deps<'_>,
    scope: &AppScope,
    seen: &Arc<Target>,
    force: bool,
) -> Result<Arc<Target>> {
    match deps
        .refresher
        .ensure_fresh_from(deps, &seen.connection, force)
        .await
    {
        Ok(false) => Ok(seen.clone()),
        Ok(true) => load(deps, scope, seen.connection.id).await,
        Err(err) => {
            let alive = seen.connection.expires_at.is_none_or(|at| at > Utc::now());
            if force || !alive {
                return Err(err);
            }
            Ok(seen.clone())
        }
    }
}

async fn load(deps: &Deps<'_>, scope: &AppScope, id: Uuid) -> Result<Arc<Target>> {
    let epoch = deps.cache.epoch();
    let conn = connections::get_live(deps.db, scope, id).await?;
    match ConnectionState::parse_stored(&conn.state) {
        ConnectionState::Revoked => {
            return Err(Error::Conflict("the connection was revoked".into()));
        }
        ConnectionState::Invalid => {
            return Err(Error::Conflict(
                "the connection is invalid; the consumer must reconnect".into(),
            ));
        }
        _ => {}
    }
    if !conn.enabled {
        return Err(Error::Conflict("the connection is disabled".into()));
    }
    let Some(sealed) = &conn.credentials else {
        return Err(Error::Conflict(
            "the connection has no credentials yet".into(),
        ));
    };
    let integration = connections::integration_of(deps.db, &conn).await?;
    if !integration.enabled {
        return Err(Error::Conflict("the integration is disabled".into()));
    }
    let provider = integrations::provider(deps.catalog, &integration)?;
    let stored = StoredCredentials::open(deps.keys, sealed, conn.id, conn.application_id)?;
    let template = match Environment::parse_stored(&conn.environment) {
        Environment::Sandbox => provider
            .oauth
            .as_ref()
            .and_then(|o| o.sandbox.as_ref())
            .and_then(|s| s.base_url.clone())
            .unwrap_or_else(|| provider.base_url.clone()),
        Environment::Production => provider.base_url.clone(),
    };
    let base = url::base_url(&template, &connections::settings_map(&conn.settings))?;
    crate::upstream::check_url(deps.config, &base)
        .map_err(|_| Error::Conflict("the provider's base URL is not allowed".into()))?;
    let credential = headers::credential(&provider, &stored)?;
    let refreshable = provider.auth_type == AuthType::Oauth2
        && matches!(&stored, StoredCredentials::Oauth2(t) if t.refresh_token.is_some());
    let labels = LogLabels {
        base_url: base.as_str().into(),
        service_id: conn.service_id.as_str().into(),
        unified_api: provider.unified_api.as_str().into(),
        consumer_id: conn.consumer_id.as_str().into(),
    };
    let target = Arc::new(Target {
        connection: conn,
        provider,
        base,
        credential,
        refreshable,
        labels,
    });
    deps.cache.insert(target.clone(), epoch);
    Ok(target)
}
