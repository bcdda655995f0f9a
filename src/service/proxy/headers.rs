//! Which headers cross the proxy, and how the credential is added.
//!
//! Towards the provider: the caller's headers minus its `Authorization`, `Host`, cookies,
//! hop-by-hop headers (RFC 9110 §7.6.1, plus whatever `Connection` names), forwarding headers,
//! Keyway's own `Keyway-…` headers and whatever header the credential travels in; then the
//! catalog's fixed headers, `Via` (raw route) and the credential. Back to the caller: the
//! provider's headers minus hop-by-hop ones and cookies.

use std::collections::BTreeMap;

use base64::Engine;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use crate::catalog::{Injection, Provider};
use crate::error::{Error, Result};
use crate::service::connections::StoredCredentials;

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Never passed on from the caller: they name or prove the caller, not the consumer.
const CALLER_ONLY: &[&str] = &[
    "authorization",
    "host",
    "cookie",
    "content-length",
    "expect",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// Never passed back: the provider's session cookies are no business of the caller.
const PROVIDER_ONLY: &[&str] = &["set-cookie", "set-cookie2", "content-length"];

/// Whether a caller's header is dropped whatever the provider: hop-by-hop, the caller's own,
/// or addressed to Keyway (`Keyway-…`, as `Keyway-Rate-Limit-Wait`). The raw route skips
/// these before copying the caller's headers at all, so the caller's `Authorization` (its
/// secret key) is never copied.
pub fn never_forwarded(lower_case_name: &str) -> bool {
    HOP_BY_HOP.contains(&lower_case_name)
        || CALLER_ONLY.contains(&lower_case_name)
        || lower_case_name.starts_with("keyway-")
}

/// The header names a `Connection` header lists (as written: compare ignoring case).
fn connection_listed(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(reqwest::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect()
}

/// The caller's headers that may go to the provider.
pub fn outbound(caller: &HeaderMap, provider: &Provider) -> HeaderMap {
    let listed = connection_listed(caller);
    let injected = match &provider.injection {
        Injection::Header { name, .. } => Some(name.to_ascii_lowercase()),
        _ => None,
    };
    let mut out = HeaderMap::with_capacity(caller.len() + provider.headers.len() + 1);
    for (name, value) in caller {
        let lower = name.as_str();
        if never_forwarded(lower)
            || listed.iter().any(|l| l.eq_ignore_ascii_case(lower))
            || injected.as_deref() == Some(lower)
            || provider
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case(lower))
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    for (name, value) in &provider.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            out.insert(name, value);
        }
    }
    out
}

/// This hop's entry in `Via` (RFC 9110 §7.6.3: a gateway adds one to every request it
/// forwards): the version of the request Keyway received, and a pseudonym rather than its host
/// name. Appended after the caller's own entries, as a list field's later line.
pub fn via(received: http::Version) -> HeaderValue {
    HeaderValue::from_static(match received {
        http::Version::HTTP_09 => "0.9 keyway",
        http::Version::HTTP_10 => "1.0 keyway",
        http::Version::HTTP_2 => "2 keyway",
        http::Version::HTTP_3 => "3 keyway",
        _ => "1.1 keyway",
    })
}

/// The provider's headers that may go back to the caller, as they come (no copy: the raw
/// route writes them straight into its answer).
pub fn inbound(provider: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    let listed = connection_listed(provider);
    provider.iter().filter(move |(name, _)| {
        let lower = name.as_str();
        !(HOP_BY_HOP.contains(&lower)
            || PROVIDER_ONLY.contains(&lower)
            || listed.iter().any(|l| l.eq_ignore_ascii_case(lower)))
    })
}

/// Where the credential goes: a header to set, or a query parameter to add.
pub enum Credential {
    Header(HeaderName, HeaderValue),
    Query(String, String),
}

impl Credential {
    /// A copy that shares no buffer with this one: cloning a header value only counts one
    /// more reference to its bytes, and every call clones it into its request.
    pub fn unshared(&self) -> Credential {
        match self {
            // Parsed again from their text, name and value get buffers of their own.
            Credential::Header(name, value) => {
                let name = HeaderName::from_bytes(name.as_str().as_bytes())
                    .unwrap_or_else(|_| name.clone());
                let mut copied =
                    HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
                copied.set_sensitive(value.is_sensitive());
                Credential::Header(name, copied)
            }
            Credential::Query(name, value) => Credential::Query(name.clone(), value.clone()),
        }
    }
}

/// The credential as the catalog says to send it.
pub fn credential(provider: &Provider, stored: &StoredCredentials) -> Result<Credential> {
    let missing = || Error::Conflict("the connection's credentials are incomplete".into());
    let value_of = |field: &Option<String>| -> Result<String> {
        match (stored, field) {
            (StoredCredentials::Oauth2(tokens), None) => Ok(tokens.access_token.clone()),
            (StoredCredentials::Fields { values }, Some(field)) => {
                values.get(field).cloned().ok_or_else(missing)
            }
            (StoredCredentials::Oauth2(_), Some(_)) | (StoredCredentials::Fields { .. }, None) => {
                Err(missing())
            }
        }
    };
    let sensitive = |text: String| -> Result<HeaderValue> {
        let mut value = HeaderValue::from_str(&text)
            .map_err(|_| Error::Conflict("the stored credential cannot be sent".into()))?;
        value.set_sensitive(true);
        Ok(value)
    };
    Ok(match &provider.injection {
        Injection::Bearer { field } => Credential::Header(
            AUTHORIZATION,
            sensitive(format!("Bearer {}", value_of(field)?))?,
        ),
        Injection::Header {
            name,
            prefix,
            field,
        } => {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                Error::Conflict("the provider's credential header is invalid".into())
            })?;
            let prefix = prefix.as_deref().unwrap_or("");
            Credential::Header(name, sensitive(format!("{prefix}{}", value_of(field)?))?)
        }
        Injection::Query { name, field } => {
            Credential::Query(name.clone(), value_of(&Some(field.clone()))?)
        }
        Injection::Basic {
            username_field,
            username,
            password_field,
            password,
        } => {
            let values = match stored {
                StoredCredentials::Fields { values } => values.clone(),
                StoredCredentials::Oauth2(_) => BTreeMap::new(),
            };
            let side = |field: &Option<String>, fixed: &Option<String>| {
                field
                    .as_ref()
                    .and_then(|f| values.get(f).cloned())
                    .or_else(|| fixed.clone())
                    .unwrap_or_default()
            };
            let pair = format!(
                "{}:{}",
                side(username_field, username),
                side(password_field, password)
            );
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            Credential::Header(AUTHORIZATION, sensitive(format!("Basic {encoded}"))?)
        }
    })
}

/// The caller's query string without `name` (the credential's parameter), then the
/// credential added. The caller's own encoding of everything else is kept as sent.
pub fn query_with(query: Option<&str>, name: &str, value: &str) -> String {
    let mut kept: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            percent_encoding::percent_decode_str(&key.replace('+', " ")).decode_utf8_lossy() != name
        })
        .collect();
    let added = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(name, value)
        .finish();
    kept.push(&added);
    kept.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unshared_credential_is_the_same_credential_in_a_buffer_of_its_own() {
        let mut value = HeaderValue::from_static("Bearer at-1");
        value.set_sensitive(true);
        let original = Credential::Header(HeaderName::from_static("x-api-key"), value);
        let Credential::Header(name, copied) = original.unshared() else {
            panic!("still a header");
        };
        let Credential::Header(original_name, original_value) = &original else {
            unreachable!()
        };
        assert_eq!((&name, &copied), (original_name, original_value));
        assert!(copied.is_sensitive(), "still kept out of debug output");
        assert_ne!(
            copied.as_bytes().as_ptr(),
            original_value.as_bytes().as_ptr()
        );
    }

    #[test]
    fn query_credential_replaces_the_callers() {
        assert_eq!(
            query_with(Some("a=1&api_key=mine&b=%20"), "api_key", "s3cr&t"),
            "a=1&b=%20&api_key=s3cr%26t"
        );
        assert_eq!(query_with(Some("api%5Fkey=x"), "api_key", "k"), "api_key=k");
        assert_eq!(query_with(None, "k", "v"), "k=v");
    }

    #[test]
    fn strips_what_the_caller_may_not_send() {
        let provider: Provider = serde_json::from_value(serde_json::json!({
            "service_id": "x", "name": "X", "unified_api": "crm", "auth_type": "api_key",
            "base_url": "https://api.x.com",
            "credential_fields": [{"id": "key", "label": "Key", "type": "password"}],
            "injection": {"type": "header", "name": "X-Api-Key", "field": "key"},
            "headers": {"X-Version": "2024"}
        }))
        .unwrap();
        let mut caller = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer kw_sk_mine"),
            ("host", "keyway.local"),
            ("cookie", "session=1"),
            ("connection", "close, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("x-api-key", "forged"),
            ("x-version", "forged"),
            ("x-forwarded-for", "10.0.0.1"),
            ("accept", "application/json"),
            ("x-custom", "kept"),
        ] {
            caller.append(name, HeaderValue::from_static(value));
        }
        let out = outbound(&caller, &provider);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(out["accept"], "application/json");
        assert_eq!(out["x-custom"], "kept");
        assert_eq!(out["x-version"], "2024");
    }
}
