//! The rules every provider definition must follow — catalog entries at start, custom
//! providers when an integration is saved.

use std::collections::BTreeSet;

use super::model::{AuthType, Provider};
use super::template;

/// Checks a definition; `allow_insecure` may accept plain-http URLs (see `template`).
pub fn provider(p: &Provider, allow_insecure: &dyn Fn(&url::Url) -> bool) -> Result<(), String> {
    let ctx = |why: String| format!("provider {}: {why}", p.service_id);
    if !is_slug(&p.service_id) {
        return Err(ctx("service_id must be a lower-case slug".into()));
    }
    if p.name.trim().is_empty() || p.unified_api.trim().is_empty() {
        return Err(ctx("name and unified_api are required".into()));
    }
    let mut ids = BTreeSet::new();
    for field in p.settings.iter().chain(&p.credential_fields) {
        if !is_identifier(&field.id) || !ids.insert(field.id.as_str()) {
            return Err(ctx(format!(
                "field id {:?} is invalid or repeated",
                field.id
            )));
        }
        if let Some(pattern) = &field.pattern {
            regex_lite::Regex::new(pattern)
                .map_err(|e| ctx(format!("field {} has a bad pattern: {e}", field.id)))?;
        }
    }
    let settings: BTreeSet<&str> = p.settings.iter().map(|f| f.id.as_str()).collect();
    let mut urls = vec![("base_url", p.base_url.as_str())];
    match (&p.oauth, p.auth_type) {
        (Some(oauth), AuthType::Oauth2) => {
            urls.push(("authorize_url", &oauth.authorize_url));
            urls.push(("token_url", &oauth.token_url));
            if let Some(revoke) = &oauth.revoke_url {
                urls.push(("revoke_url", revoke));
            }
            if let Some(issuer) = &oauth.issuer {
                urls.push(("issuer", issuer));
            }
            if let Some(sandbox) = &oauth.sandbox {
                for (name, url) in [
                    ("sandbox.authorize_url", &sandbox.authorize_url),
                    ("sandbox.token_url", &sandbox.token_url),
                    ("sandbox.revoke_url", &sandbox.revoke_url),
                    ("sandbox.issuer", &sandbox.issuer),
                    ("sandbox.base_url", &sandbox.base_url),
                ] {
                    if let Some(url) = url {
                        urls.push((name, url));
                    }
                }
            }
            if oauth.scope_separator.is_empty() {
                return Err(ctx("scope_separator must not be empty".into()));
            }
        }
        (None, AuthType::Oauth2) => return Err(ctx("oauth2 providers need an oauth block".into())),
        (Some(_), _) => return Err(ctx("only oauth2 providers have an oauth block".into())),
        (None, _) if p.credential_fields.is_empty() => {
            return Err(ctx(
                "api_key and basic providers need credential_fields".into()
            ));
        }
        (None, _) => {}
    }
    for (name, url) in urls {
        if name.ends_with("issuer") && url.contains(['?', '#']) {
            return Err(ctx(format!("{name} may have no query or fragment")));
        }
        for placeholder in template::placeholders(url) {
            if !settings.contains(placeholder) {
                return Err(ctx(format!(
                    "{name} uses {{{placeholder}}}, which is no setting"
                )));
            }
        }
        template::check_https(url, allow_insecure).map_err(|e| ctx(format!("{name}: {e}")))?;
    }
    let credential_ids: BTreeSet<&str> =
        p.credential_fields.iter().map(|f| f.id.as_str()).collect();
    for field in p.injection.fields() {
        if !credential_ids.contains(field) {
            return Err(ctx(format!(
                "injection reads unknown credential field {field}"
            )));
        }
    }
    if p.auth_type != AuthType::Oauth2 && p.injection.fields().is_empty() {
        return Err(ctx("the injection must name a credential field".into()));
    }
    for name in p.headers.keys() {
        let lower = name.to_ascii_lowercase();
        if lower == "authorization" || lower == "host" || lower == "cookie" {
            return Err(ctx(format!("header {name} may not be fixed")));
        }
    }
    Ok(())
}

pub fn is_slug(text: &str) -> bool {
    (2..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

fn is_identifier(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
