//! Proving a principal from an `Authorization: Bearer …` header.

use sea_orm::DatabaseConnection;

use super::Principal;
use super::cache::PrincipalCache;
use crate::crypto::tokens::{ADMIN_TOKEN_PREFIX, SECRET_KEY_PREFIX};
use crate::error::{Error, Result};
use crate::service::last_used::{Credential, LastUsedRecorder};
use crate::service::{admin_tokens, api_keys};

/// Longer than any token we issue; anything longer is refused before hashing.
const MAX_TOKEN_LEN: usize = 256;

pub fn bearer_token(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Every failure is the same `InvalidToken`: a caller learns nothing about why.
pub async fn authenticate(
    db: &DatabaseConnection,
    last_used: &LastUsedRecorder,
    cache: &PrincipalCache,
    token: &str,
) -> Result<Principal> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Error::InvalidToken);
    }
    let hash = crate::crypto::tokens::hash_secret(token);
    if let Some(principal) = cache.get(&hash) {
        match &principal {
            Principal::SecretKey { key_id, .. } => last_used.touch(Credential::ApiKey, *key_id),
            Principal::Operator { token_id } => last_used.touch(Credential::AdminToken, *token_id),
        }
        return Ok(principal);
    }
    if cache.refused(&hash) {
        return Err(Error::InvalidToken);
    }
    let epoch = cache.epoch();
    // Boxed: the database lookup's future is large, and inline it would make every cached
    // call's future as large (actix moves each request's future into a box).
    match Box::pin(lookup(db, last_used, token)).await {
        Ok(principal) => {
            cache.insert(hash, principal.clone(), epoch);
            Ok(principal)
        }
        // Matched nothing active (not a database failure, which is tried again next call).
        Err(Error::InvalidToken) => {
            cache.refuse(hash);
            Err(Error::InvalidToken)
        }
        Err(err) => Err(err),
    }
}

async fn lookup(
    db: &DatabaseConnection,
    last_used: &LastUsedRecorder,
    token: &str,
) -> Result<Principal> {
    if token.starts_with(SECRET_KEY_PREFIX) {
        let key = api_keys::find_active_by_secret(db, token)
            .await?
            .ok_or(Error::InvalidToken)?;
        last_used.touch(Credential::ApiKey, key.id);
        return Ok(Principal::SecretKey {
            key_id: key.id,
            application_id: key.application_id,
            integration_id: key.integration_id,
        });
    }
    if token.starts_with(ADMIN_TOKEN_PREFIX) {
        let admin = admin_tokens::find_active_by_secret(db, token)
            .await?
            .ok_or(Error::InvalidToken)?;
        last_used.touch(Credential::AdminToken, admin.id);
        return Ok(Principal::Operator { token_id: admin.id });
    }
    Err(Error::InvalidToken)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn parses_the_bearer_scheme_only() {
        assert_eq!(bearer_token(Some("Bearer kw_sk_x")), Some("kw_sk_x"));
        assert_eq!(bearer_token(Some("bearer  kw_sk_x ")), Some("kw_sk_x"));
        assert_eq!(bearer_token(Some("Basic abc")), None);
        assert_eq!(bearer_token(Some("kw_sk_x")), None);
        assert_eq!(bearer_token(None), None);
    }
}
