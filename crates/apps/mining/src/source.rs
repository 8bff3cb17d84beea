//! Which repository addresses mining may clone: the [`SourcePolicy`], checked when a
//! repository is added (API, indexers, CLI) and again before each clone.
//!
//! `git clone <url>` runs on our workers with our network and files, so a URL is a request
//! to reach somewhere from inside. By default only `https`, `http`, `git` and `ssh` URLs
//! (and scp-like `user@host:path`) are taken, to hosts that are not on loopback,
//! link-local (`169.254.169.254`, the cloud metadata service) or private ranges. Refused
//! whatever the settings: option-looking values (`--upload-pack=...`, a host `-oProxy...`),
//! which git or ssh would read as flags, and git's `<transport>::<address>` remote helpers
//! (`ext::sh -c ...` runs a command, `fd::` uses our descriptors). Local paths and
//! `file://` only with `allow_local` (the CLI's `mining run`, `MINING_ALLOW_LOCAL`), private
//! hosts only with `allow_private` (`MINING_ALLOW_PRIVATE`).
//!
//! Names are resolved when a repository is added through the API or the CLI, and again
//! before each clone; an indexer's batch gets the checks that need no lookup (a host's
//! thousands of names would otherwise be resolved one by one). git resolves the name once
//! more when it connects, so a name that changes its answer in between (DNS rebinding) is
//! not stopped by this; network policy is the guard for that.

use std::net::IpAddr;
use std::time::Duration;

/// Where mining may clone from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourcePolicy {
    /// Local paths and `file://` URLs are allowed.
    pub allow_local: bool,
    /// Hosts on loopback, link-local and private addresses are allowed.
    pub allow_private: bool,
}

/// How long a name lookup may take before the URL is refused.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The schemes taken from the network.
const SCHEMES: [&str; 4] = ["https", "http", "git", "ssh"];

/// Where a checked URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A path on this machine.
    Local,
    /// A host (name or address) and port.
    Host(String, u16),
}

impl SourcePolicy {
    /// Everything the CLI may clone: local paths too, and private hosts.
    pub const TRUSTING: SourcePolicy = SourcePolicy {
        allow_local: true,
        allow_private: true,
    };

    /// The checks that need no name lookup.
    ///
    /// # Errors
    /// A sentence naming the rule `url` breaks.
    pub fn check(&self, url: &str) -> Result<(), String> {
        match target(url)? {
            Target::Local if !self.allow_local => Err(format!(
                "{url:?} is a local path or file:// URL; this server clones only {} URLs \
                 (MINING_ALLOW_LOCAL=true allows local ones)",
                SCHEMES.join(", ")
            )),
            Target::Host(host, _) if !self.allow_private => match host_ip(&host) {
                Some(ip) if is_private(ip) => Err(private(url, ip)),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// [`SourcePolicy::check`], then the host's addresses (unless private hosts are
    /// allowed): any loopback, link-local or private one refuses the URL. A name that does
    /// not resolve passes (the clone will fail and say so).
    ///
    /// # Errors
    /// A sentence naming the rule `url` breaks.
    pub async fn check_resolved(&self, url: &str) -> Result<(), String> {
        self.check(url)?;
        let Ok(Target::Host(host, port)) = target(url) else {
            return Ok(());
        };
        if self.allow_private || host_ip(&host).is_some() {
            return Ok(());
        }
        let lookup = tokio::net::lookup_host((host.as_str(), port));
        if let Ok(Ok(addresses)) = tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            for address in addresses {
                if is_private(address.ip()) {
                    return Err(private(url, address.ip()));
                }
            }
        }
        Ok(())
    }
}

fn private(url: &str, ip: IpAddr) -> String {
    format!(
        "{url:?} points at {ip}, a loopback, link-local or private address \
         (MINING_ALLOW_PRIVATE=true allows those)"
    )
}

/// An address written as the host itself (`10.0.0.1`, `[::1]`).
fn host_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
}

/// Addresses inside a network or this machine: loopback, private (RFC 1918, unique local
/// `fc00::/7`), link-local, carrier-grade NAT (`100.64.0.0/10`), unspecified, multicast,
/// broadcast, and IPv4 mapped into IPv6 likewise.
fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b))
                || a == 0
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// What `url` points at, or the syntax rule it breaks.
fn target(url: &str) -> Result<Target, String> {
    let url = url.trim();
    if url.starts_with('-') {
        return Err(format!(
            "{url:?} looks like a command-line option, not a repository"
        ));
    }
    let scheme_end = url.find("://");
    // git's remote helpers: `<transport>::<address>`, before any "://".
    if let Some(helper) = url.find("::")
        && scheme_end.is_none_or(|end| helper < end)
    {
        return Err(format!(
            "{url:?} names a git remote helper (<transport>::<address>, e.g. ext::); \
             use an {} URL",
            SCHEMES.join(", ")
        ));
    }
    if let Some(end) = scheme_end {
        let scheme = url[..end].to_ascii_lowercase();
        if scheme == "file" {
            return Ok(Target::Local);
        }
        if !SCHEMES.contains(&scheme.as_str()) {
            return Err(format!(
                "{url:?}: the scheme {scheme:?} is not taken; use {}",
                SCHEMES.join(", ")
            ));
        }
        let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{url:?} names no host"))?;
        if host.starts_with('-') || parsed.username().starts_with('-') {
            return Err(format!(
                "{url:?}: a host or user starting with '-' would be read as an option"
            ));
        }
        let port = parsed
            .port_or_known_default()
            .unwrap_or(match scheme.as_str() {
                "ssh" => 22,
                "git" => 9418,
                _ => 443,
            });
        return Ok(Target::Host(host.to_owned(), port));
    }
    // scp-like `[user@]host:path`: a colon before any slash (git's own rule).
    if let Some(colon) = url.find(':')
        && url.find('/').is_none_or(|slash| colon < slash)
    {
        let authority = &url[..colon];
        let host = authority.rsplit('@').next().unwrap_or(authority);
        if host.is_empty() || host.starts_with('-') || authority.starts_with('-') {
            return Err(format!(
                "{url:?}: a host or user starting with '-' or empty"
            ));
        }
        return Ok(Target::Host(host.to_owned(), 22));
    }
    Ok(Target::Local)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: SourcePolicy = SourcePolicy {
        allow_local: false,
        allow_private: false,
    };

    #[test]
    fn network_urls_of_the_four_schemes_pass_by_default() {
        for url in [
            "https://github.com/BurntSushi/ripgrep",
            "http://example.org/x.git",
            "git://example.org/x.git",
            "ssh://git@example.org/x.git",
            "git@github.com:tokio-rs/tokio.git",
        ] {
            assert_eq!(DEFAULT.check(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn options_helpers_and_other_schemes_are_refused_whatever_the_settings() {
        for url in [
            "--upload-pack=touch /tmp/x",
            "-oProxyCommand=x",
            "ext::sh -c touch% /tmp/pwned",
            "fd::17",
            "ftp://example.org/x",
            "ssh://-oProxyCommand=x/y",
            "-x@host:path",
            "https://",
        ] {
            let error = SourcePolicy::TRUSTING.check(url).unwrap_err();
            assert!(error.contains(url.trim()), "{error}");
        }
    }

    #[test]
    fn local_paths_need_allow_local() {
        for url in ["/some/local/dir", "./repo", "file:///srv/repo", "repo"] {
            assert!(
                DEFAULT
                    .check(url)
                    .unwrap_err()
                    .contains("MINING_ALLOW_LOCAL")
            );
            let local = SourcePolicy {
                allow_local: true,
                ..DEFAULT
            };
            assert_eq!(local.check(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn private_addresses_need_allow_private() {
        for url in [
            "http://127.0.0.1:9000/x.git",
            "http://169.254.169.254/latest/meta-data",
            "https://10.1.2.3/x",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "git@192.168.1.1:x.git",
            "https://[::ffff:127.0.0.1]/x",
            "http://100.64.0.1/x",
        ] {
            let error = DEFAULT.check(url).unwrap_err();
            assert!(error.contains("MINING_ALLOW_PRIVATE"), "{url}: {error}");
            let private = SourcePolicy {
                allow_private: true,
                ..DEFAULT
            };
            assert_eq!(private.check(url), Ok(()), "{url}");
        }
        assert_eq!(DEFAULT.check("https://8.8.8.8/x"), Ok(()));
    }

    #[tokio::test]
    async fn names_that_resolve_to_loopback_are_refused() {
        let error = DEFAULT
            .check_resolved("http://localhost:9/x.git")
            .await
            .unwrap_err();
        assert!(error.contains("MINING_ALLOW_PRIVATE"), "{error}");
        let trusting = SourcePolicy::TRUSTING;
        assert_eq!(
            trusting.check_resolved("http://localhost:9/x.git").await,
            Ok(())
        );
    }
}
