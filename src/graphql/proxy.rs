//! The `proxy` mutation: one call to a provider with the connection's credential, answered
//! with the provider's status, headers and body (SPEC §5 "Proxy").

use std::time::Instant;

use async_graphql::{Context, Enum, ID, InputObject, Json, Object, SimpleObject};
use base64::Engine;

use super::context::ContextExt;
use crate::error::Error;
use crate::ids::{self, NodeType};
use crate::service::proxy::{self, CallBody, ConnectionRef, ProxyCall};
use crate::service::usage::{ApiStyle, LogEntry};
use crate::web::proxy::{Upstream, describe};

#[derive(InputObject)]
pub struct HttpHeaderInput {
    pub name: String,
    pub value: String,
}

#[derive(InputObject)]
pub struct QueryParamInput {
    pub name: String,
    pub value: String,
}

#[derive(InputObject)]
pub struct ProxyInput {
    /// The connection to call through; or name it by `consumerId` and `serviceId` (the
    /// consumer's callable connection to that service, the newest if several), and
    /// `environment` to choose between a production and a sandbox one.
    pub connection_id: Option<ID>,
    pub consumer_id: Option<String>,
    pub service_id: Option<String>,
    pub environment: Option<crate::service::connections::Environment>,
    /// One of `GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE`, `OPTIONS`, in any case; `GET`
    /// when not given.
    pub method: Option<String>,
    /// Relative to the provider's base URL (`/contacts/42`); no query string.
    pub path: String,
    pub query: Option<Vec<QueryParamInput>>,
    pub headers: Option<Vec<HttpHeaderInput>>,
    /// A text body; or `json` for a JSON one (then `Content-Type: application/json` unless
    /// given), or `bodyBase64` for bytes.
    pub body: Option<String>,
    pub json: Option<Json<serde_json::Value>>,
    pub body_base64: Option<String>,
    /// When the provider answers 429 with a `Retry-After` of at most this many seconds (and
    /// at most the server's `proxy_rate_limit_wait_max_secs`), wait that long and send the
    /// call once more; otherwise, and by default, the 429 is the answer.
    pub rate_limit_wait_secs: Option<i32>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    /// `body` is the answer as UTF-8 text.
    Text,
    /// The answer was not UTF-8: `body` holds it in base64.
    #[graphql(name = "BASE64")]
    Base64,
}

#[derive(SimpleObject)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

#[derive(SimpleObject)]
pub struct ProxyResult {
    /// The provider's status code (a 429 keeps its `Retry-After` in `headers`).
    pub status: i32,
    /// The provider's headers, less hop-by-hop ones, cookies and `Content-Length`; and less
    /// `Content-Encoding` when Keyway decoded a gzip answer (it asks for gzip, and decodes,
    /// unless the call's own headers name an `Accept-Encoding`).
    pub headers: Vec<HttpHeader>,
    pub body: String,
    pub body_encoding: BodyEncoding,
    /// The body parsed, when the provider answered with JSON.
    pub json: Option<Json<serde_json::Value>>,
    pub connection_id: ID,
    /// Time waiting for the provider, in milliseconds.
    pub latency_ms: f64,
}

#[derive(Default)]
pub struct ProxyMutation;

#[Object]
impl ProxyMutation {
    /// Permissions: secret keys only (as `connectionCredentials`: operators and sessions never
    /// use a consumer's credentials). Counted against the application's plan.
    async fn proxy(
        &self,
        ctx: &Context<'_>,
        input: ProxyInput,
    ) -> async_graphql::Result<ProxyResult> {
        let scope = ctx
            .principal()?
            .require_secret_key("only a secret key may proxy")?;
        let state = ctx.state()?;
        let started = Instant::now();
        let mut entry = LogEntry::new(scope.application_id(), ApiStyle::Proxy, "proxy");
        let info = ctx.request_info();
        entry.request_id = info.request_id.clone();
        entry.source_ip = info.source_ip.clone();
        entry.path = input.path.clone();
        entry.http_method = input
            .method
            .clone()
            .unwrap_or_else(|| "GET".into())
            .to_uppercase();
        let result = run(ctx, &scope, input, &mut entry).await;
        entry.duration = started.elapsed();
        match &result {
            Ok(answer) => entry.status_code = answer.status as u16,
            Err(err) => {
                entry.status_code = err.status().as_u16();
                entry.error_message = Some(err.message());
            }
        }
        state.logs.record(entry);
        Ok(result?)
    }
}

async fn run(
    ctx: &Context<'_>,
    scope: &crate::auth::AppScope,
    input: ProxyInput,
    entry: &mut LogEntry,
) -> Result<ProxyResult, Error> {
    let state = ctx.state()?;
    let which = match (input.connection_id, input.consumer_id, input.service_id) {
        (Some(id), None, None) if input.environment.is_none() => {
            ConnectionRef::Id(ids::decode_as(NodeType::Connection, &id)?)
        }
        (None, Some(consumer_id), Some(service_id)) => ConnectionRef::Consumer {
            consumer_id,
            service_id,
            environment: input.environment,
        },
        _ => {
            return Err(Error::bad_input(
                "give either connectionId, or consumerId and serviceId (and environment)",
            ));
        }
    };
    let method = proxy::method::listed(&entry.http_method)?;
    let mut headers = reqwest::header::HeaderMap::new();
    for header in input.headers.unwrap_or_default() {
        let name = reqwest::header::HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| Error::bad_input("a header name is invalid"))?;
        let value = reqwest::header::HeaderValue::from_str(&header.value)
            .map_err(|_| Error::bad_input(format!("the value of header {name} is invalid")))?;
        headers.append(name, value);
    }
    let body = match (input.body, input.json, input.body_base64) {
        (None, None, None) => CallBody::Empty,
        (Some(text), None, None) => CallBody::Bytes(text.into()),
        (None, Some(Json(value)), None) => {
            headers.entry(reqwest::header::CONTENT_TYPE).or_insert(
                reqwest::header::HeaderValue::from_static("application/json"),
            );
            CallBody::Bytes(serde_json::to_vec(&value).map_err(Error::internal)?.into())
        }
        (None, None, Some(encoded)) => CallBody::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| Error::bad_input("bodyBase64 is not base64"))?
                .into(),
        ),
        _ => {
            return Err(Error::bad_input(
                "give at most one of body, json and bodyBase64",
            ));
        }
    };
    // (`content_coding`: the answer comes back as text or JSON, so Keyway decodes it.)
    let decodes = !headers.contains_key(reqwest::header::ACCEPT_ENCODING);
    if decodes {
        headers.insert(
            reqwest::header::ACCEPT_ENCODING,
            proxy::content_coding::ASKED,
        );
    }
    let max = state.config.proxy_max_body_bytes;
    if let CallBody::Bytes(bytes) = &body
        && bytes.len() as u64 > max
    {
        return Err(Error::bad_input(format!(
            "the body is larger than {max} bytes"
        )));
    }
    let rate_limit_wait =
        proxy::rate_limit::allowed_wait(&state.config, input.rate_limit_wait_secs.map(i64::from))?;
    let query = input.query.filter(|q| !q.is_empty()).map(|params| {
        let mut encoder = url::form_urlencoded::Serializer::new(String::new());
        for param in params {
            encoder.append_pair(&param.name, &param.value);
        }
        encoder.finish()
    });

    state
        .limits
        .count_request(&state.db, scope.application_id())
        .await?;
    let deps = state.deps();
    let id = proxy::resolve(&deps, scope, which).await?;
    entry.connection_id = Some(id);
    let is_head = method == reqwest::Method::HEAD;
    let call = ProxyCall {
        method,
        path: input.path,
        query,
        headers,
        body,
        rate_limit_wait,
        forwarded_from: None,
    };
    let forwarded = proxy::forward(&deps, scope, id, call).await?;
    let response = forwarded.response;
    describe(
        entry,
        &Upstream {
            target: forwarded.target,
            latency: forwarded.latency,
            status: response.status(),
        },
    );
    if response.content_length().is_some_and(|l| l > max) {
        return Err(Error::Upstream(format!(
            "the provider's answer is larger than {max} bytes"
        )));
    }
    let status = i32::from(response.status().as_u16());
    // The answer's framing is the mutation's own, so the provider's `Content-Length` is left
    // out, except for HEAD, where it is the answer: the size a GET would have (RFC 9110 §9.3.2).
    let length = response
        .headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .filter(|_| is_head)
        .map(|value| (&reqwest::header::CONTENT_LENGTH, value));
    let gzipped = decodes && proxy::content_coding::is_gzip(response.headers());
    let headers: Vec<HttpHeader> = proxy::headers::inbound(response.headers())
        .filter(|(name, _)| !(gzipped && *name == reqwest::header::CONTENT_ENCODING))
        .chain(length)
        .map(|(name, value)| HttpHeader {
            name: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect();
    let is_json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let mut bytes = response.bytes(max).await?;
    if gzipped && !bytes.is_empty() {
        bytes = proxy::content_coding::gunzip(bytes, max).await?;
    }
    let bytes = bytes.to_vec();
    let json = is_json
        .then(|| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .flatten()
        .map(Json);
    let (body, body_encoding) = match String::from_utf8(bytes) {
        Ok(text) => (text, BodyEncoding::Text),
        Err(raw) => (
            base64::engine::general_purpose::STANDARD.encode(raw.as_bytes()),
            BodyEncoding::Base64,
        ),
    };
    Ok(ProxyResult {
        status,
        headers,
        body,
        body_encoding,
        json,
        connection_id: ids::encode(NodeType::Connection, id),
        latency_ms: entry.latency.map_or(0.0, |l| l.as_secs_f64() * 1000.0),
    })
}
