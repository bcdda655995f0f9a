//! Name resolution for calls to providers: addresses that are not public unicast ones
//! (`address::is_public`: private, loopback, link-local, metadata, NAT64 to those…) are dropped, so a provider or proxy URL whose name points inside the
//! network (or is re-pointed there later: DNS rebinding) cannot be reached — unless an
//! operator allowed that host. Checked at connect time, for every call.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name as HyperName;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::address::is_public;

/// The error a refused name ends in (found again by `refused_address`).
#[derive(Debug)]
pub struct PrivateAddress;

impl std::fmt::Display for PrivateAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the host resolves only to private addresses")
    }
}

impl std::error::Error for PrivateAddress {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One resolver for both clients: reqwest's (`Resolve`) and the proxy's hyper client
/// (a `tower` service of names).
#[derive(Clone)]
pub struct PublicOnlyResolver {
    /// Host names (no ports) an operator allowed.
    allowed: Arc<Vec<String>>,
}

impl PublicOnlyResolver {
    pub fn new(allowed: Vec<String>) -> Self {
        Self {
            allowed: Arc::new(allowed),
        }
    }

    fn lookup(
        &self,
        host: String,
    ) -> impl Future<Output = Result<Vec<SocketAddr>, BoxError>> + Send + 'static {
        let allowed = self.allowed.iter().any(|a| a.eq_ignore_ascii_case(&host));
        async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| allowed || is_public(addr.ip()))
                .collect();
            if found.is_empty() {
                return Err(Box::new(PrivateAddress) as BoxError);
            }
            Ok(found)
        }
    }
}

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let lookup = self.lookup(name.as_str().to_owned());
        Box::pin(async move { Ok(Box::new(lookup.await?.into_iter()) as Addrs) })
    }
}

impl tower_service::Service<HyperName> for PublicOnlyResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: HyperName) -> Self::Future {
        let lookup = self.lookup(name.as_str().to_owned());
        Box::pin(async move { Ok(lookup.await?.into_iter()) })
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
