//! The flow's second half: the provider sends the browser back to `/oauth/callback`; the flow
//! is claimed once, the code exchanged, the tokens stored, and the browser sent back to the
//! application.

use std::collections::BTreeMap;

use chrono::Utc;
use entity::oauth_flow::{Column, Entity, Model};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::Value;
use uuid::Uuid;

use super::client::{Endpoints, TokenEndpoint, Tokens, spec};
use super::{flow_binding, issuer};
use crate::auth::{AppScope, Tenancy};
use crate::crypto::tokens::hash_secret;
use crate::error::{Error, Result};
use crate::ids::{self, NodeType};
use crate::service::connections::{
    self, ConnectionChanges, CredentialsInput, Deps, Environment, IntegrationRef, NewConnection,
};
use crate::service::integrations;

/// What the provider sent to `/oauth/callback`.
#[derive(Default, serde::Deserialize)]
pub struct CallbackParams {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub iss: Option<String>,
    /// Anything else (QuickBooks' `realmId`, …): matched to provider settings.
    #[serde(flatten)]
    pub extra: BTreeMap<String, String>,
}

/// Where the callback sends the browser.
pub enum Outcome {
    /// Back to the application, with `connection_id` or `error`.
    Redirect(String),
    /// No flow to return to (unknown, used or expired state): a plain error page.
    Rejected(&'static str),
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
    let source = match Source::of(deps, &flow).await {
        Ok(source) => source,
        Err(err) => {
            tracing::warn!(flow = %flow.id, error = ?err, "the flow's integration is unavailable");
            return Ok(back(&[
                ("error", "server_error"),
                ("error_description", "the integration is unavailable"),
            ]));
        }
    };
    if let Some(iss) = &params.iss
        && !issuer::matches(iss, &flow.issuer, source.endpoints.issuer.is_some())
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
    match exchange(deps, http, &source, &flow, code).await {
        Ok(tokens) => {
            let connection = store(deps, &flow, &source, tokens, &params.extra).await?;
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

/// The flow's integration and provider, read once for the issuer check, the exchange and
/// the stored connection's settings.
struct Source {
    integration: entity::integration::Model,
    provider: std::sync::Arc<crate::catalog::Provider>,
    environment: Environment,
    endpoints: Endpoints,
}

impl Source {
    async fn of(deps: &Deps<'_>, flow: &Model) -> Result<Self> {
        let tenancy = Tenancy::Application(flow.application_id);
        let integration = integrations::get_in(deps.db, tenancy, flow.integration_id).await?;
        let provider = integrations::provider(deps.catalog, &integration)?;
        let environment = Environment::parse_stored(&flow.environment);
        let endpoints = Endpoints::of(spec(&provider)?, environment);
        Ok(Self {
            integration,
            provider,
            environment,
            endpoints,
        })
    }
}

async fn exchange(
    deps: &Deps<'_>,
    http: &reqwest::Client,
    source: &Source,
    flow: &Model,
    code: String,
) -> Result<Tokens> {
    let endpoint = TokenEndpoint::new(
        deps,
        &source.integration,
        &source.provider,
        source.environment,
        &flow.settings,
    )?;
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
    source: &Source,
    tokens: Tokens,
    callback_extra: &BTreeMap<String, String>,
) -> Result<Uuid> {
    let scope = AppScope::trusted(flow.application_id);
    let provider = &source.provider;
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
