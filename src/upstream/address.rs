//! Which IP addresses a call out may reach: only public unicast ones (unless an operator
//! allowed the host). The blocks refused are those of IANA's special-purpose address
//! registries that are not globally reachable, plus multicast, so that a name or literal a
//! tenant controls cannot point a call at a metadata service, the loopback, the cluster's own
//! network, or a gateway that leads there. Addresses that carry an IPv4 address inside them
//! (mapped, NAT64, 6to4) are judged by that address: that is where the packets end up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 blocks refused, as (network, prefix length).
const V4_REFUSED: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),      // "this network" (0.0.0.0 reaches the host itself on Linux)
    ([10, 0, 0, 0], 8),     // private
    ([100, 64, 0, 0], 10),  // shared address space (CGNAT; some clouds' metadata)
    ([127, 0, 0, 0], 8),    // loopback
    ([169, 254, 0, 0], 16), // link local (cloud metadata at 169.254.169.254)
    ([172, 16, 0, 0], 12),  // private
    ([192, 0, 0, 0], 24),   // IETF protocol assignments
    ([192, 0, 2, 0], 24),   // documentation
    ([192, 88, 99, 0], 24), // 6to4 relay anycast (deprecated)
    ([192, 168, 0, 0], 16), // private
    ([198, 18, 0, 0], 15),  // benchmarking
    ([198, 51, 100, 0], 24), // documentation
    ([203, 0, 113, 0], 24), // documentation
    ([224, 0, 0, 0], 4),    // multicast
    ([240, 0, 0, 0], 4),    // reserved, and the limited broadcast address
];

/// IPv6 blocks refused outright, as (network, prefix length). The blocks that embed an IPv4
/// address are handled in `is_public`, before these.
const V6_REFUSED: &[(u128, u32)] = &[
    (0, 96),                      // unspecified, loopback, IPv4-compatible
    (0x0064_ff9b_0001 << 80, 48), // NAT64 for local use (RFC 8215)
    (0x0100 << 112, 64),          // discard only
    (0x2001 << 112, 23),          // IETF protocol assignments (Teredo…)
    (0x2001_0db8 << 96, 32),      // documentation
    (0x3fff << 112, 20),          // documentation (RFC 9637)
    (0x5f00 << 112, 16),          // SRv6 segment identifiers
    (0xfc00 << 112, 7),           // unique local
    (0xfe80 << 112, 10),          // link local
    (0xfec0 << 112, 10),          // site local (deprecated, still routed by some)
    (0xff00 << 112, 8),           // multicast
];

/// Whether `ip` is a public unicast address, one a call out may reach.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    !V4_REFUSED.iter().any(|&(network, prefix)| {
        within(bits.into(), u32::from_be_bytes(network).into(), prefix, 32)
    })
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    // IPv4-mapped (::ffff:0:0/96) and NAT64's well-known prefix (64:ff9b::/96): the last 32
    // bits are the IPv4 destination.
    if within(bits, 0xffff << 32, 96, 128) || within(bits, 0x0064_ff9b << 96, 96, 128) {
        return is_public_v4(Ipv4Addr::from(bits as u32));
    }
    // 6to4 (2002::/16): bits 16–48 are the IPv4 address of the relay it ends at.
    if within(bits, 0x2002 << 112, 16, 128) {
        return is_public_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    !V6_REFUSED
        .iter()
        .any(|&(network, prefix)| within(bits, network, prefix, 128))
}

/// Whether the top `prefix` of `width` bits of `bits` and `network` agree.
fn within(bits: u128, network: u128, prefix: u32, width: u32) -> bool {
    let shift = width - prefix;
    bits >> shift == network >> shift
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_unicast_addresses_may_be_reached() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "52.94.236.248",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "192.0.3.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            // Just past the IETF block 2001::/23.
            "2001:200::1",
            "2001:4860:4860::8888",
            "2a00:1450:4001:82b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn addresses_inside_or_special_are_refused() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.100.100.200",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::808:808",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
