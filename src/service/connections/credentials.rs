//! A connection's credentials: their sealed form at rest, the checks on what a caller gives,
//! and what `connectionCredentials` hands back.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::settings::check_value;
use super::{ConnectionState, Deps, get_live, provider_of};
use crate::auth::AppScope;
use crate::catalog::{AuthType, Injection, Provider};
use crate::crypto::Secret;
use crate::error::{Error, Result};
use crate::service::keys::{KeyStore, connection_binding};

const TOKEN_MAX: usize = 16 * 1024;

/// What is sealed in `connections.credentials`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoredCredentials {
    Oauth2(OAuthTokens),
    /// API-key and basic providers: the credential form's values by field id.
    Fields {
        values: BTreeMap<String, String>,
    },
}

#[derive(Clone, Serialize, Deserialize)]
pub struct OAuthTokens {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The provider's token response, minus the tokens themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<serde_json::Value>,
}

impl fmt::Debug for StoredCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoredCredentials(***)")
    }
}

/// Credentials a caller gives: form fields, or existing OAuth tokens to import.
#[derive(Default)]
pub struct CredentialsInput {
    pub fields: Option<BTreeMap<String, String>>,
    pub access_token: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub expires_at: Option<DateTime<Utc>>,
    pub token_type: Option<String>,
    pub scopes: Option<Vec<String>>,
}

impl StoredCredentials {
    /// Checks the input against the provider: the right kind, every required field, nothing
    /// unknown, each value in its field's format.
    pub fn from_input(provider: &Provider, input: CredentialsInput) -> Result<Self> {
        match provider.auth_type {
            AuthType::Oauth2 => {
                if input.fields.is_some() {
                    return Err(Error::bad_input(
                        "an OAuth2 connection takes accessToken (and refreshToken), not fields",
                    ));
                }
                let access = input
                    .access_token
                    .ok_or_else(|| Error::bad_input("credentials.accessToken is required"))?;
                Ok(StoredCredentials::Oauth2(OAuthTokens {
                    access_token: bounded_token("accessToken", access)?,
                    refresh_token: input
                        .refresh_token
                        .map(|t| bounded_token("refreshToken", t))
                        .transpose()?,
                    token_type: input.token_type,
                    expires_at: input.expires_at,
                    scopes: input.scopes.unwrap_or_default(),
                    raw: None,
                }))
            }
            AuthType::ApiKey | AuthType::Basic => {
                if input.access_token.is_some() || input.refresh_token.is_some() {
                    return Err(Error::bad_input(format!(
                        "{} takes credential fields, not tokens",
                        provider.service_id
                    )));
                }
                let values = input
                    .fields
                    .ok_or_else(|| Error::bad_input("credentials.fields is required"))?;
                for key in values.keys() {
                    if !provider.credential_fields.iter().any(|f| &f.id == key) {
                        return Err(Error::bad_input(format!(
                            "{key} is not a credential field of {}",
                            provider.service_id
                        )));
                    }
                }
                let mut checked = BTreeMap::new();
                for field in &provider.credential_fields {
                    match values.get(&field.id).map(|v| v.trim()) {
                        Some(value) if !value.is_empty() => {
                            check_value(field, value)?;
                            checked.insert(field.id.clone(), value.to_owned());
                        }
                        _ if field.required => {
                            return Err(Error::bad_input(format!("{} is required", field.id)));
                        }
                        _ => {}
                    }
                }
                Ok(StoredCredentials::Fields { values: checked })
            }
        }
    }

    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self {
            StoredCredentials::Oauth2(tokens) => tokens.expires_at,
            StoredCredentials::Fields { .. } => None,
        }
    }

    pub fn seal(&self, keys: &KeyStore, id: Uuid, application_id: Uuid) -> Result<(Vec<u8>, i32)> {
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(self).map_err(Error::internal)?);
        keys.seal(&plain, connection_binding(id, application_id))
    }

    pub fn open(keys: &KeyStore, sealed: &[u8], id: Uuid, application_id: Uuid) -> Result<Self> {
        let plain = keys.open_sealed(sealed, connection_binding(id, application_id))?;
        serde_json::from_slice(&plain)
            .map_err(|_| Error::internal(anyhow::anyhow!("sealed credentials are not valid JSON")))
    }
}

fn bounded_token(field: &str, token: Secret) -> Result<String> {
    let text = token.expose().trim();
    if text.is_empty() || text.len() > TOKEN_MAX || text.chars().any(char::is_control) {
        return Err(Error::bad_input(format!(
            "credentials.{field} is empty, too long or malformed"
        )));
    }
    Ok(text.to_owned())
}

/// What a secret key receives from `connectionCredentials`.
pub struct LiveCredentials {
    /// Whose they are (for request logs).
    pub consumer_id: String,
    pub service_id: String,
    pub auth_type: AuthType,
    pub access_token: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub token_type: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
    pub instance_url: Option<String>,
    pub api_key: Option<Secret>,
    pub username: Option<Secret>,
    pub password: Option<Secret>,
    pub fields: BTreeMap<String, Secret>,
}

impl LiveCredentials {
    pub fn new(
        provider: &Provider,
        stored: StoredCredentials,
        instance_url: Option<String>,
    ) -> Self {
        let mut live = LiveCredentials {
            consumer_id: String::new(),
            service_id: provider.service_id.clone(),
            auth_type: provider.auth_type,
            access_token: None,
            refresh_token: None,
            token_type: None,
            expires_at: None,
            scopes: Vec::new(),
            instance_url,
            api_key: None,
            username: None,
            password: None,
            fields: BTreeMap::new(),
        };
        match stored {
            StoredCredentials::Oauth2(tokens) => {
                live.access_token = Some(Secret::new(tokens.access_token));
                live.refresh_token = tokens.refresh_token.map(Secret::new);
                live.token_type = tokens.token_type.or_else(|| Some("Bearer".into()));
                live.expires_at = tokens.expires_at;
                live.scopes = tokens.scopes;
            }
            StoredCredentials::Fields { values } => {
                let field = |id: &Option<String>, fixed: &Option<String>| {
                    id.as_ref()
                        .and_then(|id| values.get(id).cloned())
                        .or_else(|| fixed.clone())
                        .map(Secret::new)
                };
                match &provider.injection {
                    Injection::Basic {
                        username_field,
                        username,
                        password_field,
                        password,
                    } => {
                        live.username = field(username_field, username);
                        live.password = field(password_field, password);
                    }
                    other => {
                        live.api_key = other
                            .fields()
                            .first()
                            .and_then(|f| values.get(*f))
                            .cloned()
                            .map(Secret::new);
                    }
                }
                live.fields = values
                    .into_iter()
                    .map(|(k, v)| (k, Secret::new(v)))
                    .collect();
            }
        }
        live
    }
}

/// The decrypted credentials of a connection, for its application's backend. An OAuth token
/// near expiry (`refresh::due`; any token with `force_refresh`) is refreshed first; if that
/// fails while the old token still lives, the old token is handed out.
pub async fn credentials(
    deps: &Deps<'_>,
    scope: &AppScope,
    id: Uuid,
    force_refresh: bool,
) -> Result<LiveCredentials> {
    let read = get_live(deps.db, scope, id).await?;
    // The common case (a live token) costs this one read; the row is read again only after
    // a refresh ran.
    let conn = match deps
        .refresher
        .ensure_fresh_from(deps, &read, force_refresh)
        .await
    {
        Ok(false) => read,
        Ok(true) => get_live(deps.db, scope, id).await?,
        Err(err) => {
            let current = get_live(deps.db, scope, id).await?;
            let still_valid = current.expires_at.is_none_or(|at| at > Utc::now());
            if force_refresh || !still_valid {
                return Err(err);
            }
            tracing::warn!(connection = %id, "refresh failed; handing out the unexpired token");
            current
        }
    };
    let provider = provider_of(deps, &conn).await?;
    let sealed = match (
        &conn.credentials,
        ConnectionState::parse_stored(&conn.state),
    ) {
        (_, ConnectionState::Revoked) => {
            return Err(Error::Conflict("the connection was revoked".into()));
        }
        (Some(sealed), _) => sealed,
        (None, _) => {
            return Err(Error::Conflict(
                "the connection has no credentials yet".into(),
            ));
        }
    };
    let stored = StoredCredentials::open(deps.keys, sealed, conn.id, conn.application_id)?;
    let instance_url = conn
        .settings
        .get("instance_url")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut live = LiveCredentials::new(&provider, stored, instance_url);
    live.consumer_id = conn.consumer_id;
    live.service_id = conn.service_id;
    Ok(live)
}
