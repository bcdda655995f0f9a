//! The upstream URL of a proxied call: the provider's base URL (its template filled with the
//! connection's settings) with the caller's path below it. No input can move the call to
//! another scheme, host or port, or above the base path: dot segments, backslashes,
//! network-path (`//host`) and absolute forms are refused, in any percent-encoding.

use std::borrow::Cow;
use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;
use url::Url;

use crate::catalog::template;
use crate::error::{Error, Result};

const PATH_MAX: usize = 8 * 1024;
const QUERY_MAX: usize = 16 * 1024;

/// Fills the base URL template. A placeholder that stands for a whole origin
/// (`{instance_url}`) must be an http(s) URL with nothing after its host; any other placeholder
/// may only be one host label or path segment.
pub fn base_url(template_text: &str, settings: &BTreeMap<String, String>) -> Result<Url> {
    let refuse = |name: &str| {
        Error::Conflict(format!(
            "setting {name} cannot be used in the provider's URL"
        ))
    };
    // The values as filled in: a whole origin loses its trailing slash, so that
    // `{instance_url}/services` never becomes `https://host//services`.
    let mut values = settings.clone();
    for name in template::placeholders(template_text) {
        let Some(value) = settings.get(name).filter(|v| !v.is_empty()) else {
            return Err(Error::Conflict(format!(
                "the connection is not configured: setting {name} is not set"
            )));
        };
        if template_text.starts_with(&format!("{{{name}}}")) {
            let origin = Url::parse(value).map_err(|_| refuse(name))?;
            let bare = origin.path().trim_end_matches('/').is_empty()
                && origin.query().is_none()
                && origin.fragment().is_none()
                && origin.username().is_empty()
                && origin.password().is_none();
            if !matches!(origin.scheme(), "https" | "http") || !bare {
                return Err(refuse(name));
            }
            values.insert(name.to_owned(), value.trim_end_matches('/').to_owned());
        } else if value == "."
            || value == ".."
            || !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
        {
            return Err(refuse(name));
        }
    }
    let filled = template::render(template_text, &values).map_err(Error::Conflict)?;
    let mut url = Url::parse(&filled)
        .map_err(|_| Error::Conflict("the provider's base URL is not valid".into()))?;
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// The base URL with `path` below it and `query` (already encoded) attached.
pub fn join(base: &Url, path: &str, query: Option<&str>) -> Result<Url> {
    let refuse = |why: &str| Error::bad_input(format!("path refused: {why}"));
    if path.len() > PATH_MAX {
        return Err(refuse("too long"));
    }
    if path
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '\\' | '#' | '?'))
    {
        return Err(refuse(
            "it may not hold spaces, control characters, backslashes, '?' or '#'",
        ));
    }
    let relative = path.strip_prefix('/').unwrap_or(path);
    if relative.starts_with('/') {
        return Err(refuse("it must be relative to the provider's API"));
    }
    if looks_absolute(relative) {
        return Err(refuse("absolute URLs are not allowed"));
    }
    // Undo up to three layers of percent-encoding and look at the segments each time:
    // `%2e%2e`, `%252e%252e`, `..%2f` and `..%5c` are all the parent directory somewhere.
    let mut decoded = Cow::Borrowed(relative);
    for _ in 0..3 {
        if decoded
            .split(['/', '\\'])
            .any(|segment| segment == "." || segment == "..")
            || decoded.contains('\\')
            || looks_absolute(&decoded)
            || decoded.starts_with('/')
        {
            return Err(refuse("it may not leave the provider's API"));
        }
        // Without a '%' there is no further layer (and no copy to make, on every call).
        if !decoded.contains('%') {
            break;
        }
        let next = percent_decode_str(&decoded)
            .decode_utf8_lossy()
            .into_owned();
        if next == decoded {
            break;
        }
        decoded = Cow::Owned(next);
    }
    if query.is_some_and(|q| q.len() > QUERY_MAX || q.contains('#')) {
        return Err(Error::bad_input(
            "the query string is too long or malformed",
        ));
    }

    let mut url = base.clone();
    let base_path = base.path().trim_end_matches('/');
    url.set_path(&[base_path, "/", relative].concat());
    url.set_query(query.filter(|q| !q.is_empty()));
    // Belt and braces: whatever the parser made of it, it is still below the base.
    let below = url
        .path()
        .strip_prefix(base_path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if url.scheme() != base.scheme()
        || url.host() != base.host()
        || url.port_or_known_default() != base.port_or_known_default()
        || !url.username().is_empty()
        || !below
    {
        return Err(refuse("it may not leave the provider's API"));
    }
    Ok(url)
}

/// `scheme:` at the start (`https://…`, `javascript:…`, `mailto:…`).
fn looks_absolute(text: &str) -> bool {
    let Some((scheme, _)) = text.split_once(':') else {
        return false;
    };
    !scheme.is_empty()
        && !scheme.contains('/')
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && scheme.as_bytes()[0].is_ascii_alphabetic()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        "https://api.example.com/v2".parse().unwrap()
    }

    #[test]
    fn joins_below_the_base() {
        let url = join(&base(), "/contacts/42", Some("limit=5&x=%20y")).unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.example.com/v2/contacts/42?limit=5&x=%20y"
        );
        assert_eq!(
            join(&base(), "", None).unwrap().as_str(),
            "https://api.example.com/v2/"
        );
        // `@` and `:` inside a segment are data, not authority.
        let url = join(&base(), "/users/me@evil.com/x:y", None).unwrap();
        assert_eq!(url.host_str(), Some("api.example.com"));
        // An encoded slash inside one segment stays encoded (GitLab's `group%2Fproject`).
        let url = join(&base(), "/projects/group%2Fproject", None).unwrap();
        assert_eq!(url.path(), "/v2/projects/group%2Fproject");
    }

    #[test]
    fn refuses_every_escape() {
        for bad in [
            "../admin",
            "/v2/../../admin",
            "/a/./b",
            "//evil.com/x",
            "///evil.com",
            "https://evil.com/x",
            "http:evil.com",
            "javascript:alert(1)",
            "/%2e%2e/admin",
            "/%2E%2E%2Fadmin",
            "/..%2fadmin",
            "/..%5cadmin",
            "/%252e%252e/admin",
            "/a\\..\\b",
            "\\\\evil.com\\x",
            "/%5c%5cevil.com",
            "/x#frag",
            "/x?y=1",
            "/a b",
            "/a\r\nHost: evil.com",
            "%2f%2fevil.com",
        ] {
            assert!(join(&base(), bad, None).is_err(), "{bad} was accepted");
        }
        assert!(join(&base(), "/x", Some("a=1#b")).is_err());
    }

    #[test]
    fn fills_templates_with_safe_values_only() {
        let settings = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        let url = base_url(
            "https://{subdomain}.zendesk.com/api/v2",
            &settings("subdomain", "acme"),
        )
        .unwrap();
        assert_eq!(url.as_str(), "https://acme.zendesk.com/api/v2");
        for bad in [
            "evil.com/",
            "evil.com#",
            "a@evil.com",
            "evil.com:444",
            "..",
            "a/b",
        ] {
            assert!(
                base_url(
                    "https://{subdomain}.zendesk.com",
                    &settings("subdomain", bad)
                )
                .is_err(),
                "{bad}"
            );
        }
        let url = base_url(
            "{instance_url}/services/data",
            &settings("instance_url", "https://na1.salesforce.com/"),
        )
        .unwrap();
        assert_eq!(url.as_str(), "https://na1.salesforce.com/services/data");
        for bad in [
            "https://evil.com/x?",
            "https://u:p@evil.com",
            "ftp://x.com",
            "evil.com",
        ] {
            assert!(
                base_url("{instance_url}/x", &settings("instance_url", bad)).is_err(),
                "{bad}"
            );
        }
        assert!(base_url("https://{subdomain}.zendesk.com", &BTreeMap::new()).is_err());
    }
}
