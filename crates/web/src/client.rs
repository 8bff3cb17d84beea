//! Who is on the other end of a request: the client's address and the site's public origin
//! as the client saw it, believing forwarded headers only from trusted proxies.
//!
//! [`TrustedProxies`] is `CONVEYOR_TRUSTED_PROXIES` (CIDR ranges, loopback by default).
//! [`crate::metrics::observe`] resolves every request once into a [`ClientAddr`] in the
//! request's extensions; the rate limiter, mining's throttle, MiniTwit's cross-site check,
//! the session cookie's `Secure` flag and the request log read it from there.
//!
//! The client address walks `X-Forwarded-For` from the right: each hop that is a trusted
//! proxy is passed, and the first one that is not is the client. A client can write any
//! `X-Forwarded-For` it likes, but only the entries appended by our own proxies (the
//! rightmost ones) are believed, so a forged header moves nothing. A peer outside the
//! trusted ranges is the client, whatever it sends.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Extensions, HeaderMap};
use ipnet::IpNet;

/// The default trusted proxies: this machine only.
pub const DEFAULT_TRUSTED_PROXIES: &str = "127.0.0.1/32,::1/128";

/// Most `X-Forwarded-For` hops walked (a longer chain is cut: its client is the hop reached).
const HOPS_MAX: usize = 16;

/// The address ranges whose forwarded headers are believed.
#[derive(Debug, Clone)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl Default for TrustedProxies {
    fn default() -> Self {
        Self::parse(DEFAULT_TRUSTED_PROXIES).expect("the default list parses")
    }
}

impl TrustedProxies {
    /// No proxy is trusted: the peer is always the client.
    pub fn none() -> Self {
        Self(Arc::from(Vec::new()))
    }

    /// Parses a comma-separated list of CIDR ranges or single addresses
    /// (`10.0.0.0/8, 192.168.1.7, ::1/128`); an empty list trusts nobody.
    ///
    /// # Errors
    /// Naming the entry that is neither.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("{item:?} is not an address range like 10.0.0.0/8 or an address")
                })?;
            nets.push(net);
        }
        Ok(Self(Arc::from(nets)))
    }

    /// Whether `ip` is one of ours.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn resolve(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> ClientAddr {
        let Some(peer) = peer.map(|p| p.to_canonical()) else {
            return ClientAddr {
                ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                proxied: false,
            };
        };
        if !self.trusts(peer) {
            return ClientAddr {
                ip: peer,
                proxied: false,
            };
        }
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>();
        for hop in hops.iter().rev().take(HOPS_MAX) {
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        ClientAddr {
            ip: client,
            proxied: true,
        }
    }
}

/// One `X-Forwarded-For` entry: an address, perhaps with a port (`[::1]:80`, `1.2.3.4:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// The peer address of a request, from the server's connection info (or a test's mock).
pub fn peer(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .or_else(|| {
            extensions
                .get::<MockConnectInfo<SocketAddr>>()
                .map(|m| m.0.ip())
        })
}

/// Who sent a request, as resolved once by the middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client's address (unspecified when the server had no peer address, as in
    /// in-process tests).
    pub ip: IpAddr,
    /// The peer is a trusted proxy, so its `X-Forwarded-*` headers are believed.
    pub proxied: bool,
}

impl ClientAddr {
    /// The client of `extensions`' request (unspecified if no middleware resolved one).
    pub fn of(extensions: &Extensions) -> Self {
        extensions
            .get::<ClientAddr>()
            .copied()
            .unwrap_or(ClientAddr {
                ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                proxied: false,
            })
    }

    /// Whether the client reached us over TLS (a trusted proxy said `X-Forwarded-Proto:
    /// https`; this server itself speaks only HTTP).
    pub fn https(&self, headers: &HeaderMap) -> bool {
        self.proxied && forwarded(headers, "x-forwarded-proto").is_some_and(|p| p == "https")
    }

    /// The site's origin as the client saw it, `scheme://host[:port]` in lower case with the
    /// scheme's default port left out: from a trusted proxy's `X-Forwarded-Proto`,
    /// `X-Forwarded-Host` and `X-Forwarded-Port` (when the host names no port) where it sent
    /// them, else `Host` over HTTP.
    pub fn public_origin(&self, headers: &HeaderMap) -> Option<String> {
        let (mut scheme, mut host) = ("http".to_owned(), header(headers, "host")?.to_owned());
        let mut port = None;
        if self.proxied {
            if let Some(proto) = forwarded(headers, "x-forwarded-proto") {
                scheme = proto.to_ascii_lowercase();
            }
            if let Some(forwarded_host) = forwarded(headers, "x-forwarded-host") {
                host = forwarded_host.to_owned();
            }
            port = forwarded(headers, "x-forwarded-port").map(str::to_owned);
        }
        // A port in the host is what the browser typed, so it wins over X-Forwarded-Port
        // (the proxy's own listening port, which a port mapping in front may hide).
        let (name, host_port) = split_port(&host);
        let port = host_port.map(str::to_owned).or(port);
        Some(origin(&scheme, name, port.as_deref()))
    }
}

/// `scheme://host[:port]`, lower case, the default port left out.
pub fn origin(scheme: &str, host: &str, port: Option<&str>) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "https" => "443",
        _ => "80",
    };
    match port {
        Some(port) if port != default => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    }
}

/// An `Origin` header's value in the form of [`origin`], or `None` if it is not one.
pub fn normalize_origin(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once("://")?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return None;
    }
    let (host, port) = split_port(rest);
    Some(origin(scheme, host, port))
}

/// `host:port` → (`host`, `port`), minding IPv6 brackets.
fn split_port(host: &str) -> (&str, Option<&str>) {
    if let Some(end) = host.rfind(']') {
        return match host[end..].strip_prefix("]:") {
            Some(port) => (&host[..=end], Some(port)),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (name, Some(port))
        }
        _ => (host, None),
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A forwarded header's value as the nearest proxy wrote it: the last of a comma list.
fn forwarded<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    header(headers, name)
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let proxies = TrustedProxies::default();
        let forged = headers(&[("x-forwarded-for", "1.1.1.1")]);
        let client = proxies.resolve(Some(ip("203.0.113.9")), &forged);
        assert_eq!(client.ip, ip("203.0.113.9"));
        assert!(!client.proxied);
    }

    #[test]
    fn the_walk_stops_at_the_first_untrusted_hop_from_the_right() {
        let proxies = TrustedProxies::parse("127.0.0.1/32, 10.0.0.0/8").unwrap();
        // The client forged 6.6.6.6; nginx (10.0.0.2) appended the real client's address.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.0.0.2")]);
        let client = proxies.resolve(Some(ip("127.0.0.1")), &h);
        assert_eq!(client.ip, ip("198.51.100.4"));
        assert!(client.proxied);
        // Two headers count as one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.5"),
        ]);
        assert_eq!(
            proxies.resolve(Some(ip("127.0.0.1")), &h).ip,
            ip("198.51.100.5")
        );
        // No header: the proxy itself is the client.
        assert_eq!(
            proxies.resolve(Some(ip("10.1.2.3")), &HeaderMap::new()).ip,
            ip("10.1.2.3")
        );
        // Garbage stops the walk at the last good hop.
        let h = headers(&[("x-forwarded-for", "198.51.100.4, nonsense")]);
        assert_eq!(
            proxies.resolve(Some(ip("127.0.0.1")), &h).ip,
            ip("127.0.0.1")
        );
    }

    #[test]
    fn mapped_addresses_and_ports_are_understood() {
        let proxies = TrustedProxies::default();
        assert!(proxies.trusts(ip("::ffff:127.0.0.1")));
        let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
        assert_eq!(proxies.resolve(Some(ip("::1")), &h).ip, ip("2001:db8::1"));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("").unwrap().0.is_empty());
    }

    #[test]
    fn the_public_origin_follows_trusted_forwarded_headers_only() {
        let h = headers(&[
            ("host", "backend:5000"),
            ("x-forwarded-host", "example.org"),
            ("x-forwarded-proto", "https"),
        ]);
        let proxied = ClientAddr {
            ip: ip("1.2.3.4"),
            proxied: true,
        };
        let direct = ClientAddr {
            proxied: false,
            ..proxied
        };
        assert_eq!(
            proxied.public_origin(&h).as_deref(),
            Some("https://example.org")
        );
        assert!(proxied.https(&h));
        assert_eq!(
            direct.public_origin(&h).as_deref(),
            Some("http://backend:5000")
        );
        assert!(!direct.https(&h));
        let h = headers(&[("host", "localhost:8080"), ("x-forwarded-port", "8080")]);
        assert_eq!(
            proxied.public_origin(&h).as_deref(),
            Some("http://localhost:8080")
        );
        assert_eq!(
            normalize_origin("HTTP://LocalHost:80").as_deref(),
            Some("http://localhost")
        );
        assert_eq!(
            normalize_origin("http://[::1]:5000").as_deref(),
            Some("http://[::1]:5000")
        );
        assert_eq!(normalize_origin("null"), None);
    }
}
