//! Redirect URIs an application allows. They are matched later by exact string equality, so
//! parsing here only decides what may be registered.

use url::{Host, Url};

use crate::error::{Error, Result};

const MAX_LEN: usize = 2048;
pub const MAX_PER_APPLICATION: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri(String);

impl RedirectUri {
    /// Absolute `https`, or `http` on a loopback host (local development); no fragment and no
    /// user-info. The stored form is exactly what the caller sent, so matching stays exact.
    pub fn parse(raw: &str) -> Result<Self> {
        let bad = |why: &str| Error::bad_input(format!("redirect URI rejected: {why}"));
        if raw.len() > MAX_LEN {
            return Err(bad("too long"));
        }
        if raw.trim() != raw || raw.chars().any(|c| c.is_control() || c == '\\') {
            return Err(bad(
                "contains whitespace, control characters or backslashes",
            ));
        }
        let url = Url::parse(raw).map_err(|_| bad("not an absolute URL"))?;
        if url.fragment().is_some() {
            return Err(bad("must not contain a fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not contain user information"));
        }
        let loopback = match url.host() {
            Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            Some(Host::Ipv6(ip)) => ip.is_loopback(),
            None => return Err(bad("must have a host")),
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => return Err(bad("http is only allowed on localhost")),
            _ => return Err(bad("scheme must be https")),
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::RedirectUri;

    #[test]
    fn accepts_https_and_loopback_http() {
        for ok in [
            "https://app.example.com/oauth/done",
            "https://app.example.com:8443/cb?x=1",
            "http://localhost:3000/cb",
            "http://127.0.0.1/cb",
            "http://[::1]:8080/cb",
        ] {
            assert!(RedirectUri::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_the_rest() {
        for bad in [
            "//evil.com",
            "/relative",
            "javascript:alert(1)",
            "http://app.example.com/cb",
            "ftp://app.example.com/",
            "https://user:pw@app.example.com/",
            "https://app.example.com/#frag",
            " https://app.example.com/",
            "https://app.example.com\\@evil.com",
            "data:text/html,hi",
        ] {
            assert!(RedirectUri::parse(bad).is_err(), "{bad}");
        }
    }
}
