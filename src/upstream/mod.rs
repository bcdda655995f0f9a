//! Calls to providers leave through here: the clients are built in this module only (reqwest
//! for token, revocation and webhook calls; `proxy_client` for the proxy's hot path), follow
//! no redirects, time out, and check addresses for URLs a tenant can influence.

pub mod address;
pub mod proxy_client;
pub mod proxy_pool;
pub mod resolver;
pub mod roots;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::error::{Error, Result};

/// How Keyway names itself to providers (unless a proxied caller sent its own).
pub const USER_AGENT: &str = concat!("keyway/", env!("CARGO_PKG_VERSION"));

/// The client for token, revocation and webhook calls.
pub fn client(config: &Config) -> Result<reqwest::Client> {
    let extra_roots = roots::extra(config)
        .map_err(Error::internal)?
        .iter()
        .map(|der| reqwest::Certificate::from_der(der))
        .collect::<reqwest::Result<Vec<_>>>()
        .map_err(Error::internal)?;
    reqwest::Client::builder()
        .tls_certs_merge(extra_roots)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(resolver::PublicOnlyResolver::new(allowed_names(
            config,
        ))))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(config.upstream_timeout_secs))
        .connect_timeout(Duration::from_secs(5))
        .user_agent(USER_AGENT)
        .build()
        .map_err(Error::internal)
}

/// A provider URL may be used: https to a public host, or a host an operator allowed.
/// (Names are resolved again when called; this check refuses the obvious cases early.)
pub fn check_url(config: &Config, url: &url::Url) -> Result<()> {
    let refuse = |why: &str| Error::bad_input(format!("provider URL refused: {why}"));
    let host = url.host_str().ok_or_else(|| refuse("no host"))?;
    let allowed = config.allows_private_host(host.trim_matches(['[', ']']), url.port());
    if allowed {
        return Ok(());
    }
    if url.scheme() != "https" {
        return Err(refuse("not https"));
    }
    let inside = match url.host() {
        Some(url::Host::Ipv4(ip)) => !address::is_public(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => !address::is_public(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost")
        }
        None => true,
    };
    if inside {
        return Err(refuse(
            "not a public address (private, loopback, metadata or reserved)",
        ));
    }
    Ok(())
}

/// The host names of `allowed_private_hosts` (ports dropped), and this server's own when
/// the demo provider runs.
pub(crate) fn allowed_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = config
        .allowed_private_hosts
        .iter()
        .map(|entry| match entry.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() && !host.ends_with(':') => {
                host.trim_matches(['[', ']']).to_owned()
            }
            _ => entry.trim_matches(['[', ']']).to_owned(),
        })
        .collect();
    if config.demo_provider_enabled()
        && let Ok(own) = url::Url::parse(&config.public_base_url())
        && let Some(host) = own.host_str()
    {
        names.push(host.trim_matches(['[', ']']).to_owned());
    }
    names
}

/// Whether a failed call was refused by the resolver (a name pointing inside the network).
pub fn refused_address(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(current) = cause {
        if current.is::<resolver::PrivateAddress>() {
            return true;
        }
        cause = current.source();
    }
    false
}

/// `oauth2`'s HTTP hook on our client: the crate builds the request, we send it. Takes the
/// client by value (a cheap handle) so the future borrows nothing.
pub async fn send_oauth(
    client: reqwest::Client,
    request: oauth2::HttpRequest,
) -> std::result::Result<oauth2::HttpResponse, reqwest::Error> {
    let request = reqwest::Request::try_from(request)?;
    let response = client.execute(request).await?;
    let mut builder = oauth2::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let body = response.bytes().await?.to_vec();
    // Status and headers came from a valid response, so building cannot fail.
    Ok(builder.body(body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_private_hosts_unless_allowed() {
        let mut config = Config::default();
        for bad in [
            "http://api.example.com/",
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://169.254.169.254/latest",
            "https://[::1]/",
            "https://localhost/",
            "https://100.64.0.1/",
            "https://[::ffff:127.0.0.1]/",
        ] {
            assert!(check_url(&config, &bad.parse().unwrap()).is_err(), "{bad}");
        }
        assert!(check_url(&config, &"https://api.example.com/x".parse().unwrap()).is_ok());
        config.allowed_private_hosts = vec!["127.0.0.1:9000".into()];
        assert!(check_url(&config, &"http://127.0.0.1:9000/token".parse().unwrap()).is_ok());
        assert!(check_url(&config, &"http://127.0.0.1:9001/token".parse().unwrap()).is_err());
    }
}
