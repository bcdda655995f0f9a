//! API keys of an application. The secret appears once, in `createApiKey`'s answer.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::api_key::Model;

use super::context::ContextExt;
use crate::ids::{self, NodeType};
use crate::service::api_keys;

pub struct ApiKey(pub Model);

#[Object]
impl ApiKey {
    pub async fn id(&self) -> ID {
        ids::encode(NodeType::ApiKey, self.0.id)
    }

    async fn label(&self) -> &str {
        &self.0.label
    }

    /// The first characters of the secret, to tell keys apart. Never the secret itself.
    async fn prefix(&self) -> &str {
        &self.0.secret_prefix
    }

    /// The non-secret public key (`kw_pk_…`) for connect links.
    async fn public_key(&self) -> &str {
        &self.0.public_key
    }

    async fn application_id(&self) -> ID {
        ids::encode(NodeType::Application, self.0.application_id)
    }

    /// Set when the key is restricted to one integration.
    async fn integration_id(&self) -> Option<ID> {
        self.0
            .integration_id
            .map(|id| ids::encode(NodeType::Integration, id))
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// Updated in batches: may trail the real last use by a few seconds.
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }

    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }

    async fn active(&self) -> bool {
        self.0.revoked_at.is_none()
    }
}

#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// Required for operators; a secret key may only name its own application.
    pub application_id: Option<ID>,
    pub label: String,
    /// Restrict the key to one integration of the application.
    pub integration_id: Option<ID>,
}

#[derive(SimpleObject)]
pub struct CreateApiKeyPayload {
    pub api_key: ApiKey,
    /// The secret key (`kw_sk_…`). Shown this once: only its hash is kept.
    pub secret: String,
}

#[derive(Default)]
pub struct ApiKeyQuery;

#[Object]
impl ApiKeyQuery {
    /// Permissions: operator, or an unrestricted secret key of the application.
    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        application_id: Option<ID>,
    ) -> async_graphql::Result<Vec<ApiKey>> {
        let state = ctx.state()?;
        let app = ids::decode_optional(NodeType::Application, application_id.as_ref())?;
        let scope = ctx.principal()?.require_app_admin(&state.db, app).await?;
        let keys = api_keys::list(&state.db, &scope).await?;
        Ok(keys.into_iter().map(ApiKey).collect())
    }
}

#[derive(Default)]
pub struct ApiKeyMutation;

#[Object]
impl ApiKeyMutation {
    /// Permissions: operator, or an unrestricted secret key of the application.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> async_graphql::Result<CreateApiKeyPayload> {
        let state = ctx.state()?;
        let app = ids::decode_optional(NodeType::Application, input.application_id.as_ref())?;
        let scope = ctx.principal()?.require_app_admin(&state.db, app).await?;
        let integration =
            ids::decode_optional(NodeType::Integration, input.integration_id.as_ref())?;
        let created = api_keys::create(&state.db, &scope, &input.label, integration).await?;
        Ok(CreateApiKeyPayload {
            api_key: ApiKey(created.key),
            secret: created.secret.expose().to_owned(),
        })
    }

    /// Permissions: operator, or an unrestricted secret key of the key's application.
    /// Takes effect on the key's very next request.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ApiKey> {
        let state = ctx.state()?;
        let principal = ctx.principal()?;
        let id = ids::decode_as(NodeType::ApiKey, &id)?;
        let key = api_keys::get(&state.db, principal.tenancy(), id).await?;
        let scope = principal
            .require_app_admin(&state.db, Some(key.application_id))
            .await?;
        let revoked = api_keys::revoke(&state.db, &scope, id).await?;
        // This replica forgets it now; the others when the revocation's notification arrives.
        state.principals.forget_all();
        Ok(ApiKey(revoked))
    }
}
