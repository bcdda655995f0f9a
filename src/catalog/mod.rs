//! The provider catalog: a data file in the repo (`providers.json`), embedded in the binary
//! and validated at start. Integrations may also carry a custom provider of the same shape.

mod model;
pub mod template;
mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use model::{
    AuthType, ClientAuth, FieldType, FormField, Injection, OAuthSpec, Provider, SandboxHosts,
};
pub use validate::{is_slug, provider as validate_provider};

const PROVIDERS_JSON: &str = include_str!("providers.json");

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    providers: Vec<Provider>,
}

/// The built-in providers, by service id.
#[derive(Debug)]
pub struct Catalog {
    providers: BTreeMap<String, Arc<Provider>>,
}

impl Catalog {
    /// Loads and validates the embedded catalog; any bad entry is an error naming it.
    pub fn builtin() -> Result<Self, String> {
        let file: CatalogFile =
            serde_json::from_str(PROVIDERS_JSON).map_err(|e| format!("providers.json: {e}"))?;
        let mut providers = BTreeMap::new();
        for provider in file.providers {
            validate::provider(&provider, &|_| false)?;
            let id = provider.service_id.clone();
            if providers.insert(id.clone(), Arc::new(provider)).is_some() {
                return Err(format!("provider {id} is listed twice"));
            }
        }
        Ok(Self { providers })
    }

    /// Adds a provider served by this deployment (the demo provider), whose plain-http URLs
    /// `allow_insecure` vouches for.
    pub fn add_local(
        &mut self,
        definition: serde_json::Value,
        allow_insecure: &dyn Fn(&url::Url) -> bool,
    ) -> Result<(), String> {
        let provider: Provider = serde_json::from_value(definition).map_err(|e| e.to_string())?;
        validate::provider(&provider, allow_insecure)?;
        self.providers
            .insert(provider.service_id.clone(), Arc::new(provider));
        Ok(())
    }

    pub fn get(&self, service_id: &str) -> Option<&Arc<Provider>> {
        self.providers.get(service_id)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.values()
    }

    /// Service ids whose unified API is the given one.
    pub fn service_ids_of_unified_api(&self, unified_api: &str) -> Vec<String> {
        self.all()
            .filter(|p| p.unified_api == unified_api)
            .map(|p| p.service_id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_provider_is_valid_and_uses_https() {
        let catalog = Catalog::builtin().unwrap();
        assert!(catalog.all().count() >= 30);
        let oauth = catalog
            .all()
            .filter(|p| p.auth_type == AuthType::Oauth2)
            .count();
        assert!(oauth >= 20, "{oauth} OAuth2 providers");
        for id in [
            "salesforce",
            "google",
            "microsoft",
            "github",
            "hubspot",
            "slack",
            "pipedrive",
            "zoho-crm",
            "xero",
            "quickbooks",
            "notion",
            "jira",
            "linear",
            "asana",
            "dropbox",
            "box",
            "zendesk",
            "shopify",
            "intercom",
            "stripe",
            "sendgrid",
            "airtable",
            "mailchimp",
            "freshdesk",
            "twilio",
        ] {
            assert!(catalog.get(id).is_some(), "{id} is missing");
        }
        let salesforce = catalog.get("salesforce").unwrap();
        let sandbox = salesforce.oauth.as_ref().unwrap().sandbox.as_ref().unwrap();
        assert!(
            sandbox
                .authorize_url
                .as_deref()
                .unwrap()
                .starts_with("https://test.salesforce.com/")
        );
        assert!(
            catalog
                .get("zendesk")
                .unwrap()
                .oauth
                .as_ref()
                .unwrap()
                .authorize_url
                .contains("{subdomain}")
        );
        assert!(catalog.get("mailchimp").unwrap().base_url.contains("{dc}"));
        assert_eq!(catalog.get("twilio").unwrap().auth_type, AuthType::Basic);
    }

    #[test]
    fn validation_catches_bad_definitions() {
        let catalog = Catalog::builtin().unwrap();
        let mut p = (**catalog.get("zendesk").unwrap()).clone();
        p.base_url = "http://{subdomain}.zendesk.com".into();
        assert!(
            validate_provider(&p, &|_| false)
                .unwrap_err()
                .contains("https")
        );
        let mut p = (**catalog.get("zendesk").unwrap()).clone();
        p.base_url = "https://{tenant}.zendesk.com".into();
        assert!(
            validate_provider(&p, &|_| false)
                .unwrap_err()
                .contains("tenant")
        );
        let mut p = (**catalog.get("stripe").unwrap()).clone();
        p.injection = Injection::Query {
            name: "k".into(),
            field: "nope".into(),
        };
        assert!(validate_provider(&p, &|_| false).is_err());
        let mut p = (**catalog.get("stripe").unwrap()).clone();
        p.headers.insert("Authorization".into(), "x".into());
        assert!(validate_provider(&p, &|_| false).is_err());
    }
}
