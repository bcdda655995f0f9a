//! The shape of a provider definition: catalog entries and integrations' custom providers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    #[graphql(name = "OAUTH2")]
    Oauth2,
    ApiKey,
    Basic,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::Oauth2 => "oauth2",
            AuthType::ApiKey => "api_key",
            AuthType::Basic => "basic",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [AuthType::Oauth2, AuthType::ApiKey, AuthType::Basic]
            .into_iter()
            .find(|a| a.as_str() == text)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub service_id: String,
    pub name: String,
    pub unified_api: String,
    pub auth_type: AuthType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthSpec>,
    /// `https://…`, may hold `{setting}` placeholders.
    pub base_url: String,
    /// Per-connection settings; the required ones must be set before authorization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<FormField>,
    /// The consumer's credentials, for API-key and basic providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credential_fields: Vec<FormField>,
    pub injection: Injection,
    /// Fixed headers every call to this API needs (API versions and the like).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A cheap GET relative to `base_url` that proves the credentials work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    #[serde(default)]
    pub website: String,
    #[serde(default)]
    pub tag_line: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with client id and secret (RFC 6749 §2.3.1, the default).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    RequestBody,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSpec {
    pub authorize_url: String,
    pub token_url: String,
    /// An RFC 7009 revocation endpoint, when the provider has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_url: Option<String>,
    /// The authorization server's issuer identifier, for a server whose issuer is not a
    /// path the authorize URL sits under (see `service::oauth::issuer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default)]
    pub default_scopes: Vec<String>,
    #[serde(default = "space")]
    pub scope_separator: String,
    /// Whether the provider accepts PKCE (S256).
    #[serde(default)]
    pub pkce: bool,
    #[serde(default = "basic_auth")]
    pub client_auth: ClientAuth,
    /// Extra query parameters for the authorize URL (`access_type=offline`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorize_params: BTreeMap<String, String>,
    /// Hosts for the `sandbox` environment, where they differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxHosts>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxHosts {
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub revoke_url: Option<String>,
    pub issuer: Option<String>,
    pub base_url: Option<String>,
}

fn space() -> String {
    " ".to_owned()
}

fn basic_auth() -> ClientAuth {
    ClientAuth::Basic
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Password,
    Url,
    Email,
    Select,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormField {
    pub id: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub required: bool,
    /// Shown as dots and never echoed back.
    #[serde(default)]
    pub masked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// A regular expression the whole value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// How the credential goes into an upstream request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Injection {
    /// `Authorization: Bearer <access token, or the named credential field>`.
    Bearer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
    },
    /// A header holding `prefix` + the access token or the named field.
    Header {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
    },
    /// A query parameter holding the named field.
    Query { name: String, field: String },
    /// HTTP Basic; each side a credential field or a fixed text.
    Basic {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username_field: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password_field: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
    },
}

impl Injection {
    /// The credential fields this injection reads.
    pub fn fields(&self) -> Vec<&str> {
        match self {
            Injection::Bearer { field } | Injection::Header { field, .. } => {
                field.iter().map(String::as_str).collect()
            }
            Injection::Query { field, .. } => vec![field.as_str()],
            Injection::Basic {
                username_field,
                password_field,
                ..
            } => username_field
                .iter()
                .chain(password_field.iter())
                .map(String::as_str)
                .collect(),
        }
    }
}
