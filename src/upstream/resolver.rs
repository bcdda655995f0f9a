//! Name resolution for calls to providers: addresses that are private, loopback, link-local
//! or otherwise internal are dropped, so a provider or proxy URL whose name points inside the
//! network (or is re-pointed there later: DNS rebinding) cannot be reached — unless an
//! operator allowed that host. Checked at connect time, for every call.

use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::is_private;

/// The error a refused name ends in (found again by `refused_address`).
#[derive(Debug)]
pub struct PrivateAddress;

impl std::fmt::Display for PrivateAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the host resolves only to private addresses")
    }
}

impl std::error::Error for PrivateAddress {}

pub struct PublicOnlyResolver {
    /// Host names (no ports) an operator allowed.
    allowed: Vec<String>,
}

impl PublicOnlyResolver {
    pub fn new(allowed: Vec<String>) -> Self {
        Self { allowed }
    }

    fn allows(&self, host: &str) -> bool {
        self.allowed.iter().any(|a| a.eq_ignore_ascii_case(host))
    }
}

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let allowed = self.allows(&host);
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| allowed || !is_private(addr.ip()))
                .collect();
            if found.is_empty() {
                return Err(Box::new(PrivateAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drops_private_addresses_unless_allowed() {
        let strict = PublicOnlyResolver::new(Vec::new());
        let refused = strict.resolve("localhost".parse().unwrap()).await;
        assert!(refused.is_err_and(|e| e.is::<PrivateAddress>()));
        let allowing = PublicOnlyResolver::new(vec!["localhost".into()]);
        let found: Vec<_> = allowing
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(found.iter().all(|a| a.ip().is_loopback()) && !found.is_empty());
    }
}
