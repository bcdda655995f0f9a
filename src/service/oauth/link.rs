//! A connection's `authorizeUrl`: a signed, expiring Keyway link that starts a
//! re-authorization flow for that connection when the consumer opens it.

use chrono::{Duration, Utc};
use uuid::Uuid;

use super::{StartFlow, Started, start};
use crate::auth::{AppScope, Tenancy};
use crate::error::{Error, Result};
use crate::ids::{self, NodeType};
use crate::service::connections::{self, Deps, Environment, IntegrationRef};

/// How long a connection's `authorizeUrl` stays valid.
pub const AUTHORIZE_LINK_MINUTES: i64 = 60;

/// A signed, expiring Keyway link that (re-)authorizes an existing OAuth connection when
/// opened. Reading it writes nothing; the flow is created on the visit.
pub fn authorize_link(deps: &Deps<'_>, connection: &entity::connection::Model) -> Option<String> {
    let usable = connection.auth_type == "oauth2"
        && connection.deleted_at.is_none()
        && connection.revoked_at.is_none();
    if !usable {
        return None;
    }
    let expires = (Utc::now() + Duration::minutes(AUTHORIZE_LINK_MINUTES)).timestamp();
    let message = format!("authorize|{}|{expires}", connection.id);
    let signature = crate::crypto::tokens::sign(&deps.keys.link_signing_key(), message.as_bytes());
    let id = ids::encode(NodeType::Connection, connection.id);
    Some(format!(
        "{}/oauth/authorize/{}?exp={expires}&sig={signature}",
        deps.config.public_base_url(),
        id.as_str()
    ))
}

/// Opens an `authorize_link`: checks signature and expiry, then starts a re-authorization
/// flow that returns to the application's default redirect URI.
pub async fn open_authorize_link(
    deps: &Deps<'_>,
    connection: Uuid,
    expires: i64,
    signature: &str,
) -> Result<Started> {
    let message = format!("authorize|{connection}|{expires}");
    if !crate::crypto::tokens::verify(&deps.keys.link_signing_key(), message.as_bytes(), signature)
    {
        return Err(Error::Forbidden("this link is not valid"));
    }
    if expires < Utc::now().timestamp() {
        return Err(Error::Forbidden("this link has expired; ask for a new one"));
    }
    let app = connections::owner(deps.db, Tenancy::All, connection).await?;
    let scope = AppScope::trusted(app);
    let conn = connections::get_live(deps.db, &scope, connection).await?;
    if authorize_link(deps, &conn).is_none() {
        return Err(Error::Conflict(
            "this connection cannot be authorized again".into(),
        ));
    }
    let integration = conn.integration_id.ok_or(Error::NotFound)?;
    start(
        deps,
        &scope,
        StartFlow {
            consumer_id: conn.consumer_id.clone(),
            integration: IntegrationRef::Id(integration),
            redirect_uri: None,
            scopes: None,
            environment: Environment::parse_stored(&conn.environment),
            settings: Some(conn.settings.clone()),
            connection_id: Some(conn.id),
        },
    )
    .await
}
