//! A provider's token and revocation endpoints, spoken through the `oauth2` crate over our
//! one upstream client (no redirects, timeouts).

use chrono::{DateTime, Duration, Utc};
use oauth2::basic::{
    BasicErrorResponse, BasicErrorResponseType, BasicRevocationErrorResponse,
    BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthorizationCode, ClientId, ClientSecret, EndpointNotSet, EndpointSet, ExtraTokenFields,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde_json::{Map, Value};

use crate::catalog::{ClientAuth, OAuthSpec, Provider, template};
use crate::error::{Error, Result};
use crate::service::connections::{self, Deps, Environment};
use crate::service::integrations;

/// What a token endpoint answered.
pub struct Tokens {
    pub access: String,
    pub refresh: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Option<Vec<String>>,
    /// Fields beyond RFC 6749's (`instance_url`, …).
    pub extra: Map<String, Value>,
}

#[derive(Debug)]
pub enum TokenError {
    /// `invalid_grant`: the grant is dead (revoked, expired, reused); retrying cannot help.
    InvalidGrant,
    /// Anything else: the network, the provider's other errors. Worth retrying later.
    Other(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::InvalidGrant => f.write_str("invalid_grant"),
            TokenError::Other(why) => f.write_str(why),
        }
    }
}

/// Token-response fields beyond RFC 6749's.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct Extra(#[serde(default)] pub Map<String, Value>);

impl ExtraTokenFields for Extra {}

type Configured = oauth2::Client<
    BasicErrorResponse,
    StandardTokenResponse<Extra, BasicTokenType>,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// One integration's token endpoint, for one connection's environment and settings.
pub struct TokenEndpoint {
    client: Configured,
    revoke_url: Option<String>,
    client_id: String,
    client_secret: Option<String>,
    client_auth: ClientAuth,
    scope_separator: String,
}

impl TokenEndpoint {
    pub fn new(
        deps: &Deps<'_>,
        integration: &entity::integration::Model,
        provider: &Provider,
        environment: Environment,
        settings: &Value,
    ) -> Result<Self> {
        let oauth = spec(provider)?;
        let endpoints = Endpoints::of(oauth, environment);
        let values = connections::settings_map(settings);
        let token_url = template::render(&endpoints.token, &values).map_err(Error::BadInput)?;
        let revoke_url = endpoints
            .revoke
            .map(|r| template::render(&r, &values))
            .transpose()
            .map_err(Error::BadInput)?;
        for url in std::iter::once(&token_url).chain(revoke_url.iter()) {
            let parsed =
                url::Url::parse(url).map_err(|_| Error::bad_input("a provider URL is invalid"))?;
            crate::upstream::check_url(deps.config, &parsed)?;
        }
        let client_id = integration.client_id.clone().unwrap_or_default();
        let client_secret =
            integrations::client_secret(deps.keys, integration)?.map(|s| s.expose().to_owned());
        let mut client = oauth2::Client::new(ClientId::new(client_id.clone()))
            .set_token_uri(TokenUrl::new(token_url).map_err(Error::internal)?)
            .set_redirect_uri(
                RedirectUrl::new(deps.config.oauth_callback_url()).map_err(Error::internal)?,
            )
            .set_auth_type(match oauth.client_auth {
                ClientAuth::Basic => oauth2::AuthType::BasicAuth,
                ClientAuth::RequestBody => oauth2::AuthType::RequestBody,
            });
        if let Some(secret) = &client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.clone()));
        }
        Ok(Self {
            client,
            revoke_url,
            client_id,
            client_secret,
            client_auth: oauth.client_auth,
            scope_separator: oauth.scope_separator.clone(),
        })
    }

    pub async fn exchange_code(
        &self,
        http: &reqwest::Client,
        code: String,
        verifier: Option<String>,
    ) -> std::result::Result<Tokens, TokenError> {
        let mut request = self.client.exchange_code(AuthorizationCode::new(code));
        if let Some(verifier) = verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(verifier));
        }
        let send = |req| token_request(http.clone(), req);
        tokens(request.request_async(&send).await, &self.scope_separator)
    }

    pub async fn refresh(
        &self,
        http: &reqwest::Client,
        refresh_token: String,
    ) -> std::result::Result<Tokens, TokenError> {
        let token = RefreshToken::new(refresh_token);
        let send = |req| token_request(http.clone(), req);
        let response = self
            .client
            .exchange_refresh_token(&token)
            .request_async(&send)
            .await;
        tokens(response, &self.scope_separator)
    }

    /// RFC 7009 revocation, when the provider has an endpoint. `Ok(false)` when it has none.
    pub async fn revoke(
        &self,
        http: &reqwest::Client,
        token: &str,
        hint: &str,
    ) -> std::result::Result<bool, TokenError> {
        let Some(url) = &self.revoke_url else {
            return Ok(false);
        };
        let mut form = vec![
            ("token", token.to_owned()),
            ("token_type_hint", hint.to_owned()),
        ];
        let mut request = http.post(url);
        match (self.client_auth, &self.client_secret) {
            (ClientAuth::Basic, Some(secret)) => {
                request = request.basic_auth(&self.client_id, Some(secret));
            }
            (_, secret) => {
                form.push(("client_id", self.client_id.clone()));
                if let Some(secret) = secret {
                    form.push(("client_secret", secret.clone()));
                }
            }
        }
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| TokenError::Other(format!("revocation request failed: {e}")))?;
        // RFC 7009 §2.2: 200 whether or not the token was valid.
        if response.status().is_success() {
            Ok(true)
        } else {
            Err(TokenError::Other(format!(
                "revocation answered {}",
                response.status()
            )))
        }
    }
}

/// One call to a token endpoint, its answer made readable (`quirks`).
async fn token_request(
    http: reqwest::Client,
    request: oauth2::HttpRequest,
) -> std::result::Result<oauth2::HttpResponse, reqwest::Error> {
    crate::upstream::send_oauth(http, request)
        .await
        .map(super::quirks::normalize)
}

/// `separator`: the provider's scope separator. The crate splits `scope` on spaces only, so
/// comma-separating providers (Slack, Shopify, Zoho, …) are split again here.
fn tokens<E: std::error::Error + 'static>(
    result: std::result::Result<
        StandardTokenResponse<Extra, BasicTokenType>,
        RequestTokenError<E, BasicErrorResponse>,
    >,
    separator: &str,
) -> std::result::Result<Tokens, TokenError> {
    match result {
        Ok(response) => Ok(Tokens {
            access: response.access_token().secret().clone(),
            refresh: response.refresh_token().map(|t| t.secret().clone()),
            expires_at: response
                .expires_in()
                .and_then(|d| Duration::from_std(d).ok())
                .map(|d| Utc::now() + d),
            scopes: response.scopes().map(|scopes| {
                scopes
                    .iter()
                    .flat_map(|s| s.split(separator).map(str::to_owned).collect::<Vec<_>>())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
            extra: response.extra_fields().0.clone(),
        }),
        Err(RequestTokenError::ServerResponse(r))
            if *r.error() == BasicErrorResponseType::InvalidGrant =>
        {
            Err(TokenError::InvalidGrant)
        }
        Err(RequestTokenError::ServerResponse(r)) => Err(TokenError::Other(format!(
            "provider refused: {}",
            r.error()
        ))),
        Err(other) => Err(TokenError::Other(format!("token request failed: {other}"))),
    }
}

/// The provider's endpoints for an environment (sandbox hosts where the catalog has them).
pub struct Endpoints {
    pub authorize: String,
    pub token: String,
    pub revoke: Option<String>,
    /// The issuer, when the catalog names it.
    pub issuer: Option<String>,
}

impl Endpoints {
    pub fn of(oauth: &OAuthSpec, environment: Environment) -> Self {
        let sandbox = match environment {
            Environment::Sandbox => oauth.sandbox.clone().unwrap_or_default(),
            Environment::Production => Default::default(),
        };
        Self {
            authorize: sandbox
                .authorize_url
                .unwrap_or_else(|| oauth.authorize_url.clone()),
            token: sandbox.token_url.unwrap_or_else(|| oauth.token_url.clone()),
            revoke: sandbox.revoke_url.or_else(|| oauth.revoke_url.clone()),
            issuer: sandbox.issuer.or_else(|| oauth.issuer.clone()),
        }
    }
}

pub fn spec(provider: &Provider) -> Result<&OAuthSpec> {
    provider
        .oauth
        .as_ref()
        .ok_or_else(|| Error::bad_input(format!("{} does not use OAuth2", provider.service_id)))
}
