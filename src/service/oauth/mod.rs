//! The OAuth2 authorization-code flow (RFC 6749, PKCE RFC 7636, the RFC 9700 advice).
//!
//! `start` records a single-use flow (a 256-bit `state`, stored hashed; a PKCE S256 verifier,
//! sealed; the issuer; a 10-minute expiry) and returns the provider's authorize URL.
//! `callback` (`callback.rs`) claims the flow atomically (a replayed or expired `state` gets
//! nothing, and no token request is made), checks the response's issuer when it names one
//! (`issuer.rs`), exchanges the code with a client that follows no redirects, stores the
//! tokens, and sends the browser back to the application's exact redirect URI.

mod callback;
pub mod client;
mod issuer;
mod link;
mod quirks;

pub use callback::{CallbackParams, Outcome, callback};
pub use link::{AUTHORIZE_LINK_MINUTES, authorize_link, open_authorize_link};

use chrono::{DateTime, Duration, Utc};
use client::{Endpoints, spec as oauth};
use entity::oauth_flow::{ActiveModel, Column, Entity};
use oauth2::{AuthUrl, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::connections::{self, Deps, Environment, IntegrationRef};
use super::integrations;
use crate::auth::{AppScope, Tenancy};
use crate::catalog::template;
use crate::crypto::Binding;
use crate::crypto::tokens::{hash_secret, random_base64};
use crate::error::{Error, Result};
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
    let configured_issuer = (endpoints.issuer.as_deref())
        .map(|issuer| template::render(issuer, &values))
        .transpose()
        .map_err(Error::BadInput)?;
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
        issuer: Set(issuer::expected(
            configured_issuer.as_deref(),
            &authorize_url,
        )),
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

fn flow_binding(id: Uuid, application_id: Uuid) -> Binding<'static> {
    Binding {
        table: "oauth_flows.pkce_verifier",
        row_id: id,
        application_id,
    }
}
