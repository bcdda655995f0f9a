//! The built-in demo provider: a small but real OAuth2 authorization server and API, on in
//! development so a newcomer can run connect → credentials → refresh with no internet.
//! It plays the third party; nothing else in Keyway depends on it. State lives in memory.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use crate::crypto::tokens::random_base64;

/// Short-lived on purpose, so refresh is exercised within minutes.
pub const ACCESS_TOKEN_SECONDS: i64 = 600;
const CODE_SECONDS: i64 = 60;

pub struct TokenSet {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub scope: String,
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: Option<String>,
    scope: String,
    expires_at: DateTime<Utc>,
}

struct Family {
    client_id: String,
    scope: String,
    /// The one refresh token that may be used next.
    live_refresh: String,
}

#[derive(Default)]
struct Inner {
    codes: HashMap<String, Grant>,
    access: HashMap<String, (String, DateTime<Utc>)>,
    /// Every refresh token ever issued → its family (to detect reuse).
    refresh: HashMap<String, String>,
    families: HashMap<String, Family>,
    revoked: HashSet<String>,
}

#[derive(Default)]
pub struct DemoProvider {
    inner: Mutex<Inner>,
}

/// An OAuth error code (RFC 6749 §5.2).
pub type OAuthError = &'static str;

impl DemoProvider {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The consent was given: a single-use code bound to client, redirect URI and challenge.
    pub fn issue_code(
        &self,
        client_id: &str,
        redirect_uri: &str,
        scope: &str,
        challenge: Option<&str>,
    ) -> String {
        let code = random_base64(24);
        self.inner().codes.insert(
            code.clone(),
            Grant {
                client_id: client_id.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                challenge: challenge.map(str::to_owned),
                scope: scope.to_owned(),
                expires_at: Utc::now() + Duration::seconds(CODE_SECONDS),
            },
        );
        code
    }

    pub fn exchange_code(
        &self,
        client_id: &str,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
    ) -> Result<TokenSet, OAuthError> {
        let mut inner = self.inner();
        let grant = inner.codes.remove(code).ok_or("invalid_grant")?;
        if grant.client_id != client_id
            || grant.redirect_uri != redirect_uri
            || grant.expires_at < Utc::now()
        {
            return Err("invalid_grant");
        }
        if let Some(challenge) = &grant.challenge {
            let verifier = verifier.ok_or("invalid_grant")?;
            if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != *challenge {
                return Err("invalid_grant");
            }
        }
        let family = random_base64(12);
        Ok(issue(&mut inner, &family, client_id, &grant.scope))
    }

    /// Refresh-token rotation: each token works once; reusing an old one revokes the whole
    /// family (RFC 9700 §4.14.2).
    pub fn refresh(&self, client_id: &str, refresh_token: &str) -> Result<TokenSet, OAuthError> {
        let mut inner = self.inner();
        let family_id = inner
            .refresh
            .get(refresh_token)
            .cloned()
            .ok_or("invalid_grant")?;
        if inner.revoked.contains(&family_id) {
            return Err("invalid_grant");
        }
        let family = inner.families.get(&family_id).ok_or("invalid_grant")?;
        if family.client_id != client_id {
            return Err("invalid_grant");
        }
        if family.live_refresh != refresh_token {
            inner.revoked.insert(family_id);
            return Err("invalid_grant");
        }
        let scope = family.scope.clone();
        Ok(issue(&mut inner, &family_id, client_id, &scope))
    }

    /// RFC 7009: revoking any token of a grant ends the grant.
    pub fn revoke(&self, token: &str) {
        let mut inner = self.inner();
        let family = inner
            .refresh
            .get(token)
            .cloned()
            .or_else(|| inner.access.get(token).map(|(f, _)| f.clone()));
        if let Some(family) = family {
            inner.revoked.insert(family);
        }
    }

    /// The grant behind a live access token.
    pub fn check_access(&self, token: &str) -> Option<String> {
        let inner = self.inner();
        let (family, expires_at) = inner.access.get(token)?;
        (*expires_at > Utc::now() && !inner.revoked.contains(family)).then(|| family.clone())
    }
}

fn issue(inner: &mut Inner, family_id: &str, client_id: &str, scope: &str) -> TokenSet {
    let access = format!("demo_at_{}", random_base64(24));
    let refresh = format!("demo_rt_{}", random_base64(24));
    inner.access.insert(
        access.clone(),
        (
            family_id.to_owned(),
            Utc::now() + Duration::seconds(ACCESS_TOKEN_SECONDS),
        ),
    );
    inner.refresh.insert(refresh.clone(), family_id.to_owned());
    inner.families.insert(
        family_id.to_owned(),
        Family {
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            live_refresh: refresh.clone(),
        },
    );
    TokenSet {
        access_token: access,
        refresh_token: refresh,
        expires_in: ACCESS_TOKEN_SECONDS,
        scope: scope.to_owned(),
    }
}

/// The catalog entry pointing at this server's `/demo-provider/`.
pub fn catalog_entry(base: &str) -> serde_json::Value {
    serde_json::json!({
        "service_id": "demo",
        "name": "Demo Provider",
        "unified_api": "crm",
        "auth_type": "oauth2",
        "oauth": {
            "authorize_url": format!("{base}/demo-provider/authorize"),
            "token_url": format!("{base}/demo-provider/token"),
            "revoke_url": format!("{base}/demo-provider/revoke"),
            "default_scopes": ["profile", "contacts:read"],
            "pkce": true
        },
        "base_url": format!("{base}/demo-provider/api"),
        "injection": { "type": "bearer" },
        "test_path": "/me",
        "website": base,
        "tag_line": "A sandbox OAuth2 provider built into Keyway, to try the whole flow offline."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_single_use_and_pkce_bound_and_rotation_detects_reuse() {
        let demo = DemoProvider::default();
        let verifier = "v".repeat(50);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let code = demo.issue_code("c", "https://r/cb", "profile", Some(&challenge));
        assert_eq!(
            demo.exchange_code("c", &code, "https://r/cb", Some("wrong"))
                .err(),
            Some("invalid_grant")
        );
        let code = demo.issue_code("c", "https://r/cb", "profile", Some(&challenge));
        let first = demo
            .exchange_code("c", &code, "https://r/cb", Some(&verifier))
            .unwrap();
        assert!(
            demo.exchange_code("c", &code, "https://r/cb", Some(&verifier))
                .is_err(),
            "single use"
        );
        assert!(demo.check_access(&first.access_token).is_some());
        let second = demo.refresh("c", &first.refresh_token).unwrap();
        // Reusing the rotated token kills the family, the new tokens included.
        assert!(demo.refresh("c", &first.refresh_token).is_err());
        assert!(demo.refresh("c", &second.refresh_token).is_err());
        assert!(demo.check_access(&second.access_token).is_none());
    }
}
