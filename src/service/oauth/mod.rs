//! The OAuth2 authorization-code flow (RFC 6749, PKCE RFC 7636, the RFC 9700 advice).
//!
//! `start` records a single-use flow (a 256-bit `state`, stored hashed; a PKCE S256 verifier,
//! sealed; the issuer; a 10-minute expiry) and returns the provider's authorize URL.
//! `callback` claims the flow atomically (a replayed or expired `state` gets nothing, and no
//! token request is made), checks the issuer when the provider names one, exchanges the code
//! with a client that follows no redirects, stores the tokens, and sends the browser back to
//! the application's exact redirect URI.

pub mod client;
mod link;

pub use link::{AUTHORIZE_LINK_MINUTES, authorize_link, open_authorize_link};

use chrono::{DateTime, Duration, Utc};
use client::{Endpoints, TokenEndpoint, Tokens, spec as oauth};
use entity::oauth_flow::{ActiveModel, Column, Entity, Model};
use oauth2::{AuthUrl, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::connections::{
    self, ConnectionChanges, CredentialsInput, Deps, Environment, IntegrationRef, NewConnection,
};
use super::integrations;
use crate::auth::{AppScope, Tenancy};
use crate::catalog::template;
use crate::crypto::Binding;
use crate::crypto::tokens::{hash_secret, random_base64};
use crate::error::{Error, Result};
use crate::ids::{self, NodeType};
use crate::service::{applications, validate};

pub const FLOW_TTL_MINUTES: i64 = 10;

pub struct StartFlow {
    pub consumer_id: String,
    pub integration: IntegrationRef,
    /// Must equal one of the application's redirect URIs; none means its default.
    pub redirect_uri: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub environment: Environment,
    /// Settings needed before authorization (a Zendesk subdomain, a Shopify shop…).
    pub settings: Option<Value>,
    /// Re-authorize this connection instead of creating a new one.
    pub connection_id: Option<Uuid>,
}

pub struct Started {
    pub authorize_url: String,
    pub expires_at: DateTime<Utc>,
}

/// What the provider sent to `/oauth/callback`.
#[derive(Default, serde::Deserialize)]
pub struct CallbackParams {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub iss: Option<String>,
    /// Anything else (QuickBooks' `realmId`, …): matched to provider settings.
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, String>,
}

/// Where the callback sends the browser.
pub enum Outcome {
    /// Back to the application, with `connection_id` or `error`.
    Redirect(String),
    /// No flow to return to (unknown, used or expired state): a plain error page.
    Rejected(&'static str),
}

pub async fn start(deps: &Deps<'_>, scope: &AppScope, input: StartFlow) -> Result<Started> {
    let integration = match &input.integration {
        IntegrationRef::Id(id) => integrations::get(deps.db, scope, *id).await?,
        IntegrationRef::ServiceId(s) => integrations::find_by_service(deps.db, scope, s).await?,
    };
    if !integration.enabled {
        return Err(Error::Conflict("the integration is disabled".into()));
    }
    let provider = integrations::provider(deps.catalog, &integration)?;
    let Some(client_id) = integration.client_id.clone() else {
        return Err(Error::Conflict(
            "the integration has no OAuth client id".into(),
        ));
    };
    let endpoints = Endpoints::of(oauth(&provider)?, input.environment);
    let app = applications::get(
        deps.db,
        Tenancy::Application(scope.application_id()),
        scope.application_id(),
    )
    .await?;
    let redirect_uri = resolve_redirect(&app, input.redirect_uri.as_deref())?;
    let consumer_id = validate::required_text("consumerId", &input.consumer_id, 255)?;
    if let Some(id) = input.connection_id {
        connections::get_live(deps.db, scope, id).await?;
    }
    let settings = connections::merge_settings(
        &provider,
        &Value::Object(Map::new()),
        input.settings.as_ref(),
    )?;
    let values = connections::settings_map(&settings);
    let authorize_url = template::render(&endpoints.authorize, &values)
        .map_err(|e| Error::bad_input(format!("{e}: it is needed before authorization")))?;
    let token_url = template::render(&endpoints.token, &values).map_err(Error::BadInput)?;
    for url in [&authorize_url, &token_url] {
        let parsed =
            url::Url::parse(url).map_err(|_| Error::bad_input("a provider URL is invalid"))?;
        crate::upstream::check_url(deps.config, &parsed)?;
    }
    let scopes = match input.scopes {
        Some(scopes) => scopes,
        None => integrations::scopes(&integration),
    };

    let id = Uuid::now_v7();
    let state = random_base64(32);
    let (challenge, sealed_verifier) = if oauth(&provider)?.pkce {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let sealed = deps.keys.seal(
            verifier.secret().as_bytes(),
            flow_binding(id, scope.application_id()),
        )?;
        (Some(challenge), Some(sealed))
    } else {
        (None, None)
    };
    let now = Utc::now();
    let expires_at = now + Duration::minutes(FLOW_TTL_MINUTES);
    ActiveModel {
        id: Set(id),
        state_hash: Set(hash_secret(&state)),
        application_id: Set(scope.application_id()),
        integration_id: Set(integration.id),
        connection_id: Set(input.connection_id),
        consumer_id: Set(consumer_id),
        redirect_uri: Set(redirect_uri),
        scopes: Set(Value::from(scopes.clone())),
        environment: Set(input.environment.as_str().to_owned()),
        settings: Set(settings),
        pkce_verifier: Set(sealed_verifier.as_ref().map(|(s, _)| s.clone())),
        pkce_verifier_key_id: Set(sealed_verifier.map(|(_, k)| k)),
        issuer: Set(issuer_of(&authorize_url)),
        created_at: Set(now),
        expires_at: Set(expires_at),
        used_at: Set(None),
    }
    .insert(deps.db)
    .await?;

    let client = oauth2::basic::BasicClient::new(ClientId::new(client_id))
        .set_auth_uri(AuthUrl::new(authorize_url).map_err(Error::internal)?)
        .set_redirect_uri(
            RedirectUrl::new(deps.config.oauth_callback_url()).map_err(Error::internal)?,
        );
    let oauth = oauth(&provider)?;
    let mut request = client.authorize_url(|| CsrfToken::new(state));
    if !scopes.is_empty() {
        // Providers differ on the separator; the crate always uses a space.
        request = request.add_extra_param("scope", scopes.join(&oauth.scope_separator));
    }
    for (name, value) in &oauth.authorize_params {
        request = request.add_extra_param(name.as_str(), value.as_str());
    }
    if let Some(challenge) = challenge {
        request = request.set_pkce_challenge(challenge);
    }
    let (url, _) = request.url();
    Ok(Started {
        authorize_url: url.to_string(),
        expires_at,
    })
}

/// Deletes flows past their expiry (used or not); they can never be completed. Returns how
/// many went.
pub async fn purge_expired_flows(db: &sea_orm::DatabaseConnection) -> Result<u64> {
    let deleted = Entity::delete_many()
        .filter(Column::ExpiresAt.lt(Utc::now()))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}

pub async fn callback(
    deps: &Deps<'_>,
    http: &reqwest::Client,
    params: CallbackParams,
) -> Result<Outcome> {
    let Some(state) = params.state.as_deref().filter(|s| s.len() <= 256) else {
        return Ok(Outcome::Rejected("the authorization response has no state"));
    };
    let Some(flow) = Entity::find()
        .filter(Column::StateHash.eq(hash_secret(state)))
        .one(deps.db)
        .await?
    else {
        return Ok(Outcome::Rejected("this authorization is unknown"));
    };
    // Claim the flow: exactly one callback may use it, and only before it expires.
    let claimed = Entity::update_many()
        .col_expr(Column::UsedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(flow.id))
        .filter(Column::UsedAt.is_null())
        .filter(Column::ExpiresAt.gt(Utc::now()))
        .exec(deps.db)
        .await?;
    if claimed.rows_affected != 1 {
        return Ok(Outcome::Rejected(
            "this authorization was already used or has expired",
        ));
    }
    let back = |query: &[(&str, &str)]| Outcome::Redirect(with_query(&flow.redirect_uri, query));
    if let Some(iss) = &params.iss
        && iss.trim_end_matches('/') != flow.issuer.trim_end_matches('/')
    {
        tracing::warn!(flow = %flow.id, "callback issuer does not match the flow's");
        return Ok(back(&[
            ("error", "invalid_request"),
            ("error_description", "issuer mismatch"),
        ]));
    }
    if let Some(error) = &params.error {
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_lowercase() || *c == '_')
            .take(64)
            .collect();
        return Ok(back(&[("error", error.as_str())]));
    }
    let Some(code) = params
        .code
        .clone()
        .filter(|c| !c.is_empty() && c.len() <= 4096)
    else {
        return Ok(back(&[("error", "invalid_request")]));
    };
    match exchange(deps, http, &flow, code).await {
        Ok(tokens) => {
            let connection = store(deps, &flow, tokens, &params.extra).await?;
            let id = ids::encode(NodeType::Connection, connection);
            Ok(back(&[("connection_id", id.as_str())]))
        }
        Err(err) => {
            tracing::warn!(flow = %flow.id, error = ?err, "token exchange failed");
            Ok(back(&[
                ("error", "server_error"),
                ("error_description", "token exchange failed"),
            ]))
        }
    }
}

async fn exchange(
    deps: &Deps<'_>,
    http: &reqwest::Client,
    flow: &Model,
    code: String,
) -> Result<Tokens> {
    let tenancy = Tenancy::Application(flow.application_id);
    let integration = integrations::get_in(deps.db, tenancy, flow.integration_id).await?;
    let provider = integrations::provider(deps.catalog, &integration)?;
    let environment = Environment::parse_stored(&flow.environment);
    let endpoint = TokenEndpoint::new(deps, &integration, &provider, environment, &flow.settings)?;
    let verifier = match &flow.pkce_verifier {
        Some(sealed) => {
            let plain = deps
                .keys
                .open_sealed(sealed, flow_binding(flow.id, flow.application_id))?;
            Some(String::from_utf8(plain.to_vec()).map_err(Error::internal)?)
        }
        None => None,
    };
    endpoint
        .exchange_code(http, code, verifier)
        .await
        .map_err(|e| Error::Upstream(e.to_string()))
}

/// Writes the tokens to a new connection, or to the one being re-authorized.
async fn store(
    deps: &Deps<'_>,
    flow: &Model,
    tokens: Tokens,
    callback_extra: &std::collections::BTreeMap<String, String>,
) -> Result<Uuid> {
    let scope = AppScope::trusted(flow.application_id);
    let integration = integrations::get_in(
        deps.db,
        Tenancy::Application(flow.application_id),
        flow.integration_id,
    )
    .await?;
    let provider = integrations::provider(deps.catalog, &integration)?;
    // Settings the provider hands over during authorization (Salesforce's instance_url in
    // the token response, QuickBooks' realmId on the callback).
    let mut settings = flow.settings.as_object().cloned().unwrap_or_default();
    for field in &provider.settings {
        let from_token = tokens
            .extra
            .get(&field.id)
            .and_then(Value::as_str)
            .map(str::to_owned);
        let from_callback = callback_extra
            .get(&field.id)
            .or_else(|| callback_extra.get(&camel_case(&field.id)))
            .cloned();
        if let Some(value) = from_token.or(from_callback) {
            settings.insert(field.id.clone(), Value::String(value));
        }
    }
    let requested: Vec<String> = serde_json::from_value(flow.scopes.clone()).unwrap_or_default();
    let credentials = CredentialsInput {
        fields: None,
        access_token: Some(crate::crypto::Secret::new(tokens.access)),
        refresh_token: tokens.refresh.map(crate::crypto::Secret::new),
        expires_at: tokens.expires_at,
        token_type: Some("Bearer".into()),
        // RFC 6749 §5.1: no scope in the answer means the requested ones were granted.
        scopes: Some(tokens.scopes.unwrap_or(requested)),
    };
    match flow.connection_id {
        Some(id) => {
            let changes = ConnectionChanges {
                settings: Some(Value::Object(settings)),
                credentials: Some(credentials),
                ..ConnectionChanges::default()
            };
            Ok(connections::update(deps, &scope, id, changes).await?.id)
        }
        None => {
            let new = NewConnection {
                consumer_id: flow.consumer_id.clone(),
                integration: IntegrationRef::Id(flow.integration_id),
                environment: Environment::parse_stored(&flow.environment),
                settings: Some(Value::Object(settings)),
                metadata: None,
                user_email: None,
                enabled: true,
                credentials: Some(credentials),
            };
            Ok(connections::create(deps, &scope, new).await?.id)
        }
    }
}

/// The authorization server's issuer identifier: its origin (RFC 9207 allows a path, but
/// no catalog provider uses one).
fn issuer_of(authorize_url: &str) -> String {
    url::Url::parse(authorize_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

fn resolve_redirect(app: &entity::application::Model, given: Option<&str>) -> Result<String> {
    let allowed = applications::redirect_uris(app);
    match given {
        // Exact string equality: no normalisation, no prefix or pattern matching.
        Some(uri) if allowed.iter().any(|a| a == uri) => Ok(uri.to_owned()),
        Some(_) => Err(Error::bad_input(
            "redirectUri is not one of the application's redirect URIs",
        )),
        None => app.default_redirect_uri.clone().ok_or_else(|| {
            Error::bad_input("redirectUri is required: the application has no default")
        }),
    }
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(base) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(pairs);
            url.to_string()
        }
        Err(_) => base.to_owned(),
    }
}

fn camel_case(id: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in id.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn flow_binding(id: Uuid, application_id: Uuid) -> Binding<'static> {
    Binding {
        table: "oauth_flows.pkce_verifier",
        row_id: id,
        application_id,
    }
}
