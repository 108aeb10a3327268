//! Which client a request is accounted to. The TCP peer, unless the peer is
//! a configured trusted proxy: then the forwarding header it appended is
//! read from the right, skipping further trusted proxies, and the first
//! address not trusted is the client. Entries left of it were written by
//! whoever sent the request and are never believed, so a client cannot pick
//! its own bucket.
//!
//! Resolved once per request, in the server's pipeline ([`ClientConfig`] is
//! part of the server's settings), so the limiter's bucket, the last-seen
//! entry and the access log name the same client, limiter on or off.

use crate::config::{self, ConfigError, Source};
use http::header::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr};

/// Which peers are believed about the client they forward
/// (`RATE_LIMIT_TRUSTED_PROXIES`, `RATE_LIMIT_FORWARDED_HEADER`: the names
/// are the limiter's, which read them first).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientConfig {
    pub trusted_proxies: Vec<IpNet>,
    pub forwarded_header: ForwardedHeader,
}

impl ClientConfig {
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let trusted_proxies = match src.get("RATE_LIMIT_TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(raw) => {
                parse_cidrs(&raw).map_err(|reason| ConfigError::new("RATE_LIMIT_TRUSTED_PROXIES", raw, reason))?
            }
        };
        Ok(Self {
            trusted_proxies,
            forwarded_header: config::var(src, "RATE_LIMIT_FORWARDED_HEADER", ForwardedHeader::XForwardedFor)?,
        })
    }

    /// The client of a request from `peer` with `headers`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        resolve(peer, headers, &self.trusted_proxies, self.forwarded_header)
    }
}

/// `127.0.0.1/32, 10.0.0.0/8, ::1`: networks, a bare address being its own.
fn parse_cidrs(raw: &str) -> Result<Vec<IpNet>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| format!("{item:?} is not an address or CIDR network"))
        })
        .collect()
}

/// Which header trusted proxies append the client to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx's
    /// `$proxy_add_x_forwarded_for`; also what daprd appends).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;by=…, for=proxy1`.
    Forwarded,
}

impl std::str::FromStr for ForwardedHeader {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            _ => Err("expected x-forwarded-for or forwarded".into()),
        }
    }
}

/// The client address of a request from `peer`.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet], header: ForwardedHeader) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = canonical(peer);
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = match header {
        ForwardedHeader::XForwardedFor => list(headers, "x-forwarded-for").map(|e| parse_node(&e)).collect::<Vec<_>>(),
        ForwardedHeader::Forwarded => list(headers, "forwarded").map(|e| forwarded_for(&e)).collect(),
    };
    // Right to left: each trusted hop vouches for the one before it.
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop {
            // Garbage or an obfuscated node ("unknown", "_hidden"): the last
            // trusted hop is the best we know.
            None => return client,
            Some(ip) => {
                client = canonical(*ip);
                if !is_trusted(&client) {
                    return client;
                }
            }
        }
    }
    client
}

/// The bucket key of a client: IPv4 as it is; IPv6 by its network of
/// `v6_prefix` bits (a /64 is one subscriber: a host picks any address in
/// it, so per-address buckets would be free to multiply).
pub fn bucket_key(ip: IpAddr, v6_prefix: u8) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) if v6_prefix >= 128 => v6.to_string(),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = if v6_prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(v6_prefix)) };
            format!("{}/{v6_prefix}", Ipv6Addr::from(bits & mask))
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`, what a dual-stack socket reports)
/// is the IPv4 client it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The comma-separated elements of every `name` header line, in order.
fn list<'a>(headers: &'a HeaderMap, name: &'static str) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
}

/// The `for=` node of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then(|| parse_node(v))?
    })
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`, quoted or not.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("cidr")).collect()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[("x-forwarded-for", "10.0.0.1"), ("forwarded", "for=10.0.0.2")]);
        assert_eq!(resolve(ip("203.0.113.5"), &h, &nets(&["127.0.0.1/32"]), XFF), ip("203.0.113.5"));
        assert_eq!(resolve(ip("203.0.113.5"), &h, &[], XFF), ip("203.0.113.5"));
    }

    #[test]
    fn a_trusted_proxy_is_believed_from_the_right() {
        let trusted = nets(&["127.0.0.0/8", "10.0.0.0/8"]);
        // The client wrote "6.6.6.6" itself; nginx appended the real peer,
        // then an inner trusted hop.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7"), ("x-forwarded-for", "10.1.1.1")]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &trusted, XFF), ip("198.51.100.7"));
        // No header: the proxy itself is the client.
        assert_eq!(resolve(ip("127.0.0.1"), &HeaderMap::new(), &trusted, XFF), ip("127.0.0.1"));
        // Everything trusted: the leftmost.
        let h = headers(&[("x-forwarded-for", "10.0.0.9, 10.0.0.8")]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &trusted, XFF), ip("10.0.0.9"));
    }

    #[test]
    fn garbage_stops_at_the_last_trusted_hop() {
        let trusted = nets(&["127.0.0.1/32"]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4, not-an-ip")]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &trusted, XFF), ip("127.0.0.1"));
    }

    #[test]
    fn forwarded_header_with_ports_quotes_and_ipv6() {
        let trusted = nets(&["127.0.0.1/32"]);
        let fwd = ForwardedHeader::Forwarded;
        let h = headers(&[("forwarded", r#"for=6.6.6.6, for="[2001:db8::7]:4711";by=127.0.0.1;host=x"#)]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &trusted, fwd), ip("2001:db8::7"));
        let h = headers(&[("forwarded", "for=192.0.2.60:8080;proto=http")]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &trusted, fwd), ip("192.0.2.60"));
        // The other header is not read when this one is configured.
        let h = headers(&[("x-forwarded-for", "192.0.2.1")]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &trusted, fwd), ip("127.0.0.1"));
    }

    #[test]
    fn settings_parse_and_bad_ones_name_the_variable() {
        use std::collections::HashMap;
        let c = ClientConfig::from_source(&HashMap::<&str, &str>::new()).expect("defaults");
        assert_eq!(c, ClientConfig { trusted_proxies: Vec::new(), forwarded_header: XFF });
        let src = HashMap::from([("RATE_LIMIT_TRUSTED_PROXIES", "127.0.0.1, 10.1.2.3/8, ::1")]);
        let c = ClientConfig::from_source(&src).expect("config");
        let nets: Vec<String> = c.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(c.resolve(ip("127.0.0.1"), &h), ip("203.0.113.7"));
        for (name, value) in [
            ("RATE_LIMIT_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("RATE_LIMIT_TRUSTED_PROXIES", "nginx"),
            ("RATE_LIMIT_FORWARDED_HEADER", "x-real-ip"),
        ] {
            let err = ClientConfig::from_source(&HashMap::from([(name, value)])).expect_err(value);
            assert_eq!(err.name, name, "{value}");
        }
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_prefix() {
        assert_eq!(bucket_key(ip("2001:db8:1:2:aaaa::1"), 64), "2001:db8:1:2::/64");
        assert_eq!(bucket_key(ip("2001:db8:1:2:bbbb::9"), 64), "2001:db8:1:2::/64");
        assert_eq!(bucket_key(ip("2001:db8:1:2:bbbb::9"), 128), "2001:db8:1:2:bbbb::9");
        assert_eq!(bucket_key(ip("2001:db8:1:2:bbbb::9"), 48), "2001:db8:1::/48");
        assert_eq!(bucket_key(ip("192.0.2.1"), 64), "192.0.2.1");
        // A mapped IPv4 peer is that IPv4 client, not a /64.
        assert_eq!(resolve(ip("::ffff:192.0.2.1"), &HeaderMap::new(), &[], XFF), ip("192.0.2.1"));
    }
}
