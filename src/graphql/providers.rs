//! The provider catalog as the API shows it.

use std::sync::Arc;

use async_graphql::{Context, InputObject, Object, SimpleObject};

use super::context::ContextExt;
use crate::catalog::{AuthType, FieldType, FormField as CatalogField, Provider as CatalogProvider};

pub struct Provider(pub Arc<CatalogProvider>);

#[Object]
impl Provider {
    async fn service_id(&self) -> &str {
        &self.0.service_id
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn unified_api(&self) -> &str {
        &self.0.unified_api
    }

    async fn auth_type(&self) -> AuthType {
        self.0.auth_type
    }

    /// The URL template calls go to; `{setting}` placeholders come from connection settings.
    async fn base_url(&self) -> &str {
        &self.0.base_url
    }

    async fn authorize_url(&self) -> Option<&str> {
        self.0.oauth.as_ref().map(|o| o.authorize_url.as_str())
    }

    async fn token_url(&self) -> Option<&str> {
        self.0.oauth.as_ref().map(|o| o.token_url.as_str())
    }

    async fn revoke_url(&self) -> Option<&str> {
        self.0.oauth.as_ref().and_then(|o| o.revoke_url.as_deref())
    }

    async fn default_scopes(&self) -> Vec<String> {
        self.0
            .oauth
            .as_ref()
            .map(|o| o.default_scopes.clone())
            .unwrap_or_default()
    }

    async fn pkce(&self) -> bool {
        self.0.oauth.as_ref().is_some_and(|o| o.pkce)
    }

    async fn has_sandbox(&self) -> bool {
        self.0.oauth.as_ref().is_some_and(|o| o.sandbox.is_some())
    }

    /// Per-connection settings; the required ones are needed before authorization.
    async fn settings(&self) -> Vec<FormField> {
        self.0.settings.iter().map(FormField::from).collect()
    }

    /// The credential form of API-key and basic providers.
    async fn credential_fields(&self) -> Vec<FormField> {
        self.0
            .credential_fields
            .iter()
            .map(FormField::from)
            .collect()
    }

    async fn logo_url(&self) -> Option<&str> {
        self.0.logo_url.as_deref()
    }

    async fn website(&self) -> &str {
        &self.0.website
    }

    async fn tag_line(&self) -> &str {
        &self.0.tag_line
    }
}

#[derive(SimpleObject)]
pub struct FormField {
    id: String,
    label: String,
    #[graphql(name = "type")]
    kind: FieldType,
    required: bool,
    masked: bool,
    default_value: Option<String>,
    placeholder: Option<String>,
    help: Option<String>,
    options: Vec<String>,
    pattern: Option<String>,
}

impl From<&CatalogField> for FormField {
    fn from(f: &CatalogField) -> Self {
        Self {
            id: f.id.clone(),
            label: f.label.clone(),
            kind: f.kind,
            required: f.required,
            masked: f.masked,
            default_value: f.default.clone(),
            placeholder: f.placeholder.clone(),
            help: f.help.clone(),
            options: f.options.clone(),
            pattern: f.pattern.clone(),
        }
    }
}

#[derive(InputObject, Default)]
pub struct ProviderFilter {
    pub auth_type: Option<AuthType>,
    pub unified_api: Option<String>,
    /// Case-insensitive substring of the service id or name.
    pub search: Option<String>,
}

#[derive(Default)]
pub struct ProviderQuery;

#[Object]
impl ProviderQuery {
    /// Permissions: any authenticated caller.
    async fn providers(
        &self,
        ctx: &Context<'_>,
        filter: Option<ProviderFilter>,
    ) -> async_graphql::Result<Vec<Provider>> {
        ctx.principal()?;
        let filter = filter.unwrap_or_default();
        let search = filter.search.map(|s| s.to_lowercase());
        Ok(ctx
            .state()?
            .catalog
            .all()
            .filter(|p| filter.auth_type.is_none_or(|a| a == p.auth_type))
            .filter(|p| {
                filter
                    .unified_api
                    .as_ref()
                    .is_none_or(|u| *u == p.unified_api)
            })
            .filter(|p| {
                search.as_ref().is_none_or(|s| {
                    p.service_id.contains(s.as_str()) || p.name.to_lowercase().contains(s.as_str())
                })
            })
            .cloned()
            .map(Provider)
            .collect())
    }
}
