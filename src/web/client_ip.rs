//! The caller's address, as request logs store it.
//!
//! Behind a load balancer every peer is the balancer, so the caller's address has to come from
//! the header the balancer adds. That header is only believed from peers the operator lists
//! (`trusted_proxies`): anyone else could write any address into it. The list is walked from
//! the nearest hop back, skipping trusted proxies, and the first address that is not one is
//! the caller (as nginx's `real_ip_recursive on` does), so a value the caller sent ahead of
//! the balancer's own never wins.

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use actix_web::HttpRequest;
use actix_web::http::header::{FORWARDED, HeaderName};
use ipnet::IpNet;

pub use crate::config::ForwardedHeader;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// How to find the caller's address (built once from the configuration).
#[derive(Clone, Debug, Default)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
}

impl ClientIp {
    /// `trusted`: the proxies whose header is believed (`Config::trusted_proxy_nets`).
    pub fn new(trusted: Vec<IpNet>, header: ForwardedHeader) -> Self {
        Self { trusted, header }
    }

    /// The caller's address as text, or none when the connection has no peer address.
    pub fn of(&self, req: &HttpRequest) -> Option<String> {
        let peer = req.peer_addr()?.ip();
        Some(text(self.resolve(peer, || self.hops(req))))
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The caller, given the peer and (only asked for when the peer is trusted) the hops the
    /// header lists, nearest last. An entry that is not an address ends the walk at the
    /// trusted hop that passed it on: nothing before it can be believed.
    fn resolve<I>(&self, peer: IpAddr, hops: impl FnOnce() -> I) -> IpAddr
    where
        I: DoubleEndedIterator<Item = Option<IpAddr>>,
    {
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut caller = peer;
        for hop in hops().rev() {
            match hop {
                Some(ip) => {
                    caller = ip;
                    if !self.is_trusted(ip) {
                        break;
                    }
                }
                None => break,
            }
        }
        caller
    }

    /// Every entry of every line of the header, in order (a proxy may add a line of its own
    /// rather than append to the last one).
    fn hops(&self, req: &HttpRequest) -> std::vec::IntoIter<Option<IpAddr>> {
        let (name, parse): (&HeaderName, fn(&str) -> Option<IpAddr>) = match self.header {
            ForwardedHeader::XForwardedFor => (&X_FORWARDED_FOR, parse_node),
            ForwardedHeader::Forwarded => (&FORWARDED, parse_forwarded_element),
        };
        req.headers()
            .get_all(name)
            .flat_map(|line| match line.to_str() {
                Ok(line) => line.split(',').map(|e| parse(e.trim())).collect(),
                Err(_) => vec![None],
            })
            .collect::<Vec<_>>()
            .into_iter()
    }
}

/// An address as proxies write one: `192.0.2.1`, `192.0.2.1:443`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:443`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let ip = if let Some(rest) = text.strip_prefix('[') {
        IpAddr::from_str(&rest[..rest.find(']')?]).ok()?
    } else if let Ok(ip) = IpAddr::from_str(text) {
        ip
    } else {
        let (host, port) = text.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        IpAddr::V4(Ipv4Addr::from_str(host).ok()?)
    };
    Some(ip.to_canonical())
}

/// The `for=` node of one RFC 7239 element (`for=192.0.2.60;proto=http;by=203.0.113.43`).
/// `unknown` and obfuscated identifiers (`_hidden`) are not addresses.
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    })?;
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    parse_node(value)
}

/// IPv4 written by hand: `to_string` goes through the formatter, about 1,300 instructions on
/// every proxied call against about 100.
fn text(ip: IpAddr) -> String {
    let IpAddr::V4(ip) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn rule(trusted: &[&str], header: ForwardedHeader) -> ClientIp {
        let config = crate::config::Config {
            trusted_proxies: trusted.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        };
        ClientIp::new(config.trusted_proxy_nets().unwrap(), header)
    }

    fn resolve(rule: &ClientIp, peer: &str, lines: &[&str]) -> IpAddr {
        let parse = match rule.header {
            ForwardedHeader::XForwardedFor => parse_node,
            ForwardedHeader::Forwarded => parse_forwarded_element,
        };
        let hops: Vec<Option<IpAddr>> = lines
            .iter()
            .flat_map(|line| line.split(',').map(|e| parse(e.trim())))
            .collect();
        rule.resolve(ip(peer), || hops.into_iter())
    }

    #[test]
    fn the_header_is_believed_only_from_trusted_peers() {
        let xff = ForwardedHeader::XForwardedFor;
        let none = rule(&[], xff);
        assert_eq!(
            resolve(&none, "203.0.113.9", &["198.51.100.1"]),
            ip("203.0.113.9")
        );
        let lb = rule(&["10.0.0.0/8", "192.0.2.7"], xff);
        // An untrusted peer writing the header is the caller itself.
        assert_eq!(
            resolve(&lb, "203.0.113.9", &["198.51.100.1"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            resolve(&lb, "10.1.2.3", &["198.51.100.1"]),
            ip("198.51.100.1")
        );
        assert_eq!(
            resolve(&lb, "192.0.2.7", &["198.51.100.1"]),
            ip("198.51.100.1")
        );
        // A trusted peer that sent no header: the peer is all there is.
        assert_eq!(resolve(&lb, "10.1.2.3", &[]), ip("10.1.2.3"));
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_caller() {
        let lb = rule(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        // The caller wrote a first entry itself; the balancer appended the real one.
        assert_eq!(
            resolve(&lb, "10.0.0.1", &["6.6.6.6, 198.51.100.1, 10.0.0.2"]),
            ip("198.51.100.1")
        );
        // Lines of their own count in order.
        assert_eq!(
            resolve(&lb, "10.0.0.1", &["6.6.6.6", "198.51.100.1", "10.0.0.2"]),
            ip("198.51.100.1")
        );
        // Every hop trusted: the farthest one.
        assert_eq!(
            resolve(&lb, "10.0.0.1", &["10.9.9.9, 10.0.0.2"]),
            ip("10.9.9.9")
        );
        // Garbage ends the walk at the trusted hop that passed it on.
        assert_eq!(
            resolve(&lb, "10.0.0.1", &["198.51.100.1, not-an-ip, 10.0.0.2"]),
            ip("10.0.0.2")
        );
        assert_eq!(resolve(&lb, "10.0.0.1", &[""]), ip("10.0.0.1"));
    }

    #[test]
    fn addresses_are_read_in_the_forms_proxies_write() {
        let lb = rule(&["10.0.0.0/8", "fd00::/8"], ForwardedHeader::XForwardedFor);
        assert_eq!(
            resolve(&lb, "10.0.0.1", &["198.51.100.1:4711"]),
            ip("198.51.100.1")
        );
        assert_eq!(
            resolve(&lb, "10.0.0.1", &["2001:db8::1"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            resolve(&lb, "10.0.0.1", &["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            resolve(&lb, "fd00::5", &["198.51.100.1"]),
            ip("198.51.100.1")
        );
        // An IPv4 peer seen over an IPv6 socket is still the trusted IPv4 proxy.
        assert_eq!(
            resolve(&lb, "::ffff:10.0.0.1", &["198.51.100.1"]),
            ip("198.51.100.1")
        );
        assert_eq!(
            resolve(&lb, "10.0.0.1", &["::ffff:198.51.100.1"]),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn rfc_7239_elements_give_their_for_node() {
        let lb = rule(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        assert_eq!(
            resolve(
                &lb,
                "10.0.0.1",
                &["for=198.51.100.1;proto=https;by=10.0.0.1"]
            ),
            ip("198.51.100.1")
        );
        assert_eq!(
            resolve(
                &lb,
                "10.0.0.1",
                &[r#"For="[2001:db8:cafe::17]:4711", for=10.0.0.2"#]
            ),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            resolve(&lb, "10.0.0.1", &[r#"for="198.51.100.1:80""#]),
            ip("198.51.100.1")
        );
        // Obfuscated and unknown nodes are not addresses: the trusted hop stands.
        assert_eq!(resolve(&lb, "10.0.0.1", &["for=_hidden"]), ip("10.0.0.1"));
        assert_eq!(resolve(&lb, "10.0.0.1", &["for=unknown"]), ip("10.0.0.1"));
        assert_eq!(resolve(&lb, "10.0.0.1", &["proto=https"]), ip("10.0.0.1"));
    }

    #[test]
    fn ipv4_text_matches_the_formatter() {
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "192.168.1.10",
            "127.0.0.1",
            "9.99.100.199",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(super::text(ip), ip.to_string());
        }
    }
}
