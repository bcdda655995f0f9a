//! Which `iss` an authorization response may carry (RFC 9207, the mix-up defence).
//!
//! A provider whose catalog entry names its `issuer` must send exactly that. Otherwise the
//! flow records the authorize endpoint (its URL without query or fragment), and the response's
//! issuer must sit on the same origin at a path the endpoint is under: an authorization
//! server's endpoints live below its issuer (RFC 8414 §2), as Keycloak's realms
//! (`/realms/acme`), Okta's authorization servers (`/oauth2/default`) and any server mounted
//! under a path do. A sibling on the same host (`/realms/other`) or any other host is refused.

use url::Url;

/// What the flow records: the configured issuer, or the authorize endpoint.
pub fn expected(configured: Option<&str>, authorize_url: &str) -> String {
    match configured {
        Some(issuer) => issuer.to_owned(),
        None => Url::parse(authorize_url)
            .map(|mut url| {
                url.set_query(None);
                url.set_fragment(None);
                url.to_string()
            })
            .unwrap_or_default(),
    }
}

/// Whether a response's `iss` fits what the flow recorded. `configured`: the recorded value
/// is the provider's own issuer, matched exactly (a trailing slash aside).
pub fn matches(iss: &str, recorded: &str, configured: bool) -> bool {
    if iss.trim_end_matches('/') == recorded.trim_end_matches('/') {
        return true;
    }
    if configured {
        return false;
    }
    let (Ok(iss), Ok(endpoint)) = (Url::parse(iss), Url::parse(recorded)) else {
        return false;
    };
    // An issuer is a plain https URL: no credentials, no query, no fragment (RFC 8414 §2).
    let plain = iss.username().is_empty()
        && iss.password().is_none()
        && iss.query().is_none()
        && iss.fragment().is_none();
    plain && iss.origin() == endpoint.origin() && path_is_under(iss.path(), endpoint.path())
}

/// `prefix`'s segments begin `path`'s: `/realms/acme` is under itself and
/// `/realms/acme/protocol/auth`, not under `/realms/acme2`.
fn path_is_under(prefix: &str, path: &str) -> bool {
    let segments = |p: &str| {
        p.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let (prefix, path) = (segments(prefix), segments(path));
    prefix.len() <= path.len() && prefix.iter().zip(&path).all(|(a, b)| a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYCLOAK: &str = "https://kc.example/realms/acme/protocol/openid-connect/auth";

    #[test]
    fn the_flow_records_the_endpoint_without_its_query() {
        assert_eq!(
            expected(None, "https://kc.example/realms/acme/auth?x=1#f"),
            "https://kc.example/realms/acme/auth"
        );
        assert_eq!(
            expected(Some("https://login.example/t/v2.0"), KEYCLOAK),
            "https://login.example/t/v2.0"
        );
    }

    #[test]
    fn an_issuer_the_endpoint_sits_under_is_accepted() {
        let recorded = expected(None, KEYCLOAK);
        for iss in [
            "https://kc.example",
            "https://kc.example/",
            "https://kc.example/realms/acme",
            "https://kc.example/realms/acme/",
            "https://kc.example:443/realms/acme",
        ] {
            assert!(matches(iss, &recorded, false), "{iss} refused");
        }
    }

    #[test]
    fn other_servers_and_siblings_are_refused() {
        let recorded = expected(None, KEYCLOAK);
        for iss in [
            "https://kc.example/realms/acm",
            "https://kc.example/realms/acme2",
            "https://kc.example/realms/other",
            "https://kc.example/realms/acme/protocol/openid-connect/auth/more",
            "http://kc.example/realms/acme",
            "https://kc.example:444/realms/acme",
            "https://evil.example/realms/acme",
            "https://kc.example.evil.example/realms/acme",
            "https://user@kc.example/realms/acme",
            "https://kc.example/realms/acme?x=1",
            "https://kc.example/realms/acme#x",
            "kc.example/realms/acme",
            "",
        ] {
            assert!(!matches(iss, &recorded, false), "{iss} accepted");
        }
    }

    #[test]
    fn a_configured_issuer_is_matched_exactly() {
        let recorded = expected(Some("https://kc.example/realms/acme"), KEYCLOAK);
        assert!(matches("https://kc.example/realms/acme", &recorded, true));
        assert!(matches("https://kc.example/realms/acme/", &recorded, true));
        assert!(!matches("https://kc.example", &recorded, true));
        assert!(!matches("https://kc.example/realms", &recorded, true));
    }
}
