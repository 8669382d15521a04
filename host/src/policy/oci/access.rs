//! Which registries and addresses an `oci://` pull may reach. The operator's configuration
//! decides, never the tenant who wrote the reference: hosts must be allowed by name
//! (`--policy-allow-registry`), and addresses that are not public (loopback, link-local with
//! the cloud metadata service, private, CGNAT, unspecified, multicast) only with
//! `--policy-allow-private-addresses`. Pure decisions: no I/O here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::Url;

/// The flag that allows a registry host.
pub const ALLOW_REGISTRY_FLAG: &str = "--policy-allow-registry";
/// The flag that allows addresses that are not public.
pub const ALLOW_PRIVATE_FLAG: &str = "--policy-allow-private-addresses";
/// The flag that makes a registry speak plain HTTP.
pub const INSECURE_FLAG: &str = "--policy-insecure-registry";

/// A registry's `host[:port]`; the host lower-case, an IPv6 address without brackets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    host: String,
    port: Option<u16>,
}

impl HostPort {
    /// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
    pub fn parse(text: &str) -> Result<HostPort, String> {
        let bad = || format!("{text:?} is not HOST[:PORT]");
        let text = text.trim();
        if text.is_empty() || text.contains(['/', '@', '?', '#', ' ']) {
            return Err(bad());
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
            }
        } else if text.matches(':').count() > 1 {
            (text, None)
        } else {
            match text.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        let port = port
            .map(|p| p.parse::<u16>().map_err(|_| bad()))
            .transpose()?;
        if host.is_empty() || (host.contains(':') && host.parse::<Ipv6Addr>().is_err()) {
            return Err(bad());
        }
        // Address literals in the form URLs print them (`::1`, not `0:0::1`).
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => host.to_ascii_lowercase(),
        };
        Ok(HostPort { host, port })
    }

    /// Whether this entry names `url`'s host and port (an entry without a port: the scheme's
    /// default port).
    fn matches(&self, host: &str, port: u16, default_port: u16) -> bool {
        self.host == host && self.port.unwrap_or(default_port) == port
    }
}

/// Why the operator will not talk to a registry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// The operator's rules for registry access.
#[derive(Clone, Debug, Default)]
pub struct RegistryRules {
    allowed: Vec<HostPort>,
    insecure: Vec<HostPort>,
    allow_private_addresses: bool,
}

impl RegistryRules {
    pub fn new(
        allowed: &[String],
        insecure: &[String],
        allow_private_addresses: bool,
    ) -> Result<RegistryRules, String> {
        let parse = |list: &[String], flag: &str| -> Result<Vec<HostPort>, String> {
            list.iter()
                .filter(|t| !t.trim().is_empty())
                .map(|t| HostPort::parse(t).map_err(|e| format!("{flag}: {e}")))
                .collect()
        };
        Ok(RegistryRules {
            allowed: parse(allowed, ALLOW_REGISTRY_FLAG)?,
            insecure: parse(insecure, INSECURE_FLAG)?,
            allow_private_addresses,
        })
    }

    /// Whether any registry is allowed at all (without one, OCI references are refused).
    pub fn any_allowed(&self) -> bool {
        !self.allowed.is_empty()
    }

    /// `http` for a registry listed as insecure, else `https`.
    pub fn scheme_for(&self, registry: &str) -> &'static str {
        let Ok(entry) = HostPort::parse(registry) else {
            return "https";
        };
        let insecure = self
            .insecure
            .iter()
            .any(|i| i.host == entry.host && i.port == entry.port);
        if insecure { "http" } else { "https" }
    }

    /// Whether a request to `url` is allowed: an allowed host and port, plain HTTP only to an
    /// insecure registry, and an address literal only when public (or private ones allowed).
    /// Names are checked again once resolved ([`Self::address`]).
    pub fn url(&self, url: &Url) -> Result<(), Refusal> {
        let Some(host) = url.host_str() else {
            return Err(Refusal(format!("{} has no host", bounded(url.as_str()))));
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let literal = host.parse::<IpAddr>().ok();
        let default_port = match url.scheme() {
            "https" => 443,
            "http" => 80,
            other => return Err(Refusal(format!("the scheme {other:?} is not HTTP(S)"))),
        };
        let port = url.port().unwrap_or(default_port);
        let shown = match url.port() {
            Some(p) if host.contains(':') => format!("[{host}]:{p}"),
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        if !self
            .allowed
            .iter()
            .any(|a| a.matches(&host, port, default_port))
        {
            return Err(Refusal(if self.allowed.is_empty() {
                format!(
                    "OCI policies are off: the operator allows no registry (an admin allows {shown} with {ALLOW_REGISTRY_FLAG} {shown}; chart: operator.oci.allowedRegistries)"
                )
            } else {
                format!(
                    "the registry {shown} is not allowed by the operator (an admin allows it with {ALLOW_REGISTRY_FLAG} {shown}; chart: operator.oci.allowedRegistries)"
                )
            }));
        }
        if url.scheme() == "http"
            && !self
                .insecure
                .iter()
                .any(|i| i.matches(&host, port, default_port))
        {
            return Err(Refusal(format!(
                "{shown} over plain HTTP: only a registry listed with {INSECURE_FLAG} is spoken to without TLS"
            )));
        }
        match literal {
            Some(ip) => self
                .address(ip)
                .map_err(|r| Refusal(format!("{shown}: {r}"))),
            None => Ok(()),
        }
    }

    /// Whether a connection to `ip` is allowed.
    pub fn address(&self, ip: IpAddr) -> Result<(), Refusal> {
        match non_public(ip) {
            Some(kind) if !self.allow_private_addresses => Err(Refusal(format!(
                "{ip} is a {kind} address; the operator reaches such addresses only with {ALLOW_PRIVATE_FLAG}"
            ))),
            _ => Ok(()),
        }
    }
}

/// What kind of address `ip` is, when it is not a public unicast one.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match () {
        () if a == 0 => "unspecified (0.0.0.0/8)",
        () if ip.is_loopback() => "loopback",
        () if ip.is_link_local() => "link-local (169.254.0.0/16, cloud metadata)",
        () if ip.is_private() => "private (RFC 1918)",
        () if a == 100 && (64..128).contains(&b) => "carrier-grade NAT (100.64.0.0/10)",
        () if ip.is_multicast() || ip.is_broadcast() || a >= 240 => "multicast or reserved",
        () => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(match () {
        () if ip.is_unspecified() => "unspecified",
        () if ip.is_loopback() => "loopback",
        () if first & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        () if first & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        () if first & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        () if ip.is_multicast() => "multicast",
        // NAT64 (64:ff9b::/96) carries an IPv4 address: judge that one.
        () if ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] => {
            let [.., a, b, c, d] = ip.octets();
            return non_public_v4(Ipv4Addr::new(a, b, c, d));
        }
        () => return None,
    })
}

/// The most characters of registry-provided text that reach status, Events or logs.
pub const MAX_TEXT_CHARS: usize = 300;

/// `text` cut to [`MAX_TEXT_CHARS`] characters (on a character boundary), with `…` when cut.
pub fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allowed: &[&str], insecure: &[&str], private: bool) -> RegistryRules {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        RegistryRules::new(&owned(allowed), &owned(insecure), private).unwrap()
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn no_registry_is_allowed_by_default_and_the_refusal_names_the_flag() {
        let none = RegistryRules::default();
        assert!(!none.any_allowed());
        let refusal = none.url(&url("https://ghcr.io/v2/")).unwrap_err();
        assert!(
            refusal.0.contains("--policy-allow-registry ghcr.io"),
            "{refusal}"
        );
        assert!(
            refusal.0.contains("operator.oci.allowedRegistries"),
            "{refusal}"
        );
    }

    #[test]
    fn a_host_is_allowed_on_its_listed_port_or_the_default_one() {
        let r = rules(&["GHCR.io", "registry.example:5000"], &[], false);
        assert!(r.url(&url("https://ghcr.io/v2/x")).is_ok());
        assert!(r.url(&url("https://ghcr.io:443/v2/x")).is_ok());
        assert!(r.url(&url("https://ghcr.io:8443/v2/x")).is_err());
        assert!(r.url(&url("https://registry.example:5000/v2/")).is_ok());
        assert!(r.url(&url("https://registry.example/v2/")).is_err());
        assert!(r.url(&url("https://evil.example/token")).is_err());
        assert!(r.url(&url("https://ghcr.io.evil.example/v2/")).is_err());
    }

    #[test]
    fn plain_http_only_to_an_insecure_registry_that_is_also_allowed() {
        let r = rules(&["a.example:5000", "b.example"], &["a.example:5000"], false);
        assert_eq!(r.scheme_for("a.example:5000"), "http");
        assert_eq!(r.scheme_for("b.example"), "https");
        assert!(r.url(&url("http://a.example:5000/v2/")).is_ok());
        assert!(r.url(&url("http://b.example/v2/")).is_err());
        let insecure_only = rules(&[], &["a.example:5000"], false);
        assert!(
            insecure_only
                .url(&url("http://a.example:5000/v2/"))
                .is_err()
        );
    }

    #[test]
    fn address_literals_that_are_not_public_are_refused_without_the_flag() {
        let r = rules(
            &[
                "127.0.0.1:5000",
                "169.254.169.254",
                "10.1.2.3",
                "[::1]:5000",
                "8.8.8.8",
            ],
            &[],
            false,
        );
        for refused in [
            "https://127.0.0.1:5000/v2/",
            "https://169.254.169.254/latest/meta-data",
            "https://10.1.2.3/v2/",
            "https://[::1]:5000/v2/",
        ] {
            let why = r.url(&url(refused)).unwrap_err();
            assert!(why.0.contains(ALLOW_PRIVATE_FLAG), "{refused}: {why}");
        }
        assert!(r.url(&url("https://8.8.8.8/v2/")).is_ok());
        let allowed = rules(&["127.0.0.1:5000"], &[], true);
        assert!(allowed.url(&url("https://127.0.0.1:5000/v2/")).is_ok());
    }

    #[test]
    fn every_kind_of_non_public_address_is_recognised() {
        for ip in [
            "0.0.0.0",
            "127.0.0.53",
            "169.254.169.254",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "ff02::1",
        ] {
            assert!(non_public(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2001:4860::8888",
            "64:ff9b::808:808",
        ] {
            assert_eq!(non_public(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn host_ports_parse_like_registry_names() {
        assert!(HostPort::parse("registry.example:5000").is_ok());
        assert!(HostPort::parse("[::1]:5000").is_ok());
        assert!(HostPort::parse("::1").is_ok());
        for bad in ["", "https://x", "x:port", "x/y", "[::1", "a:b:c"] {
            assert!(HostPort::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(1000);
        let cut = bounded(&long);
        assert_eq!(cut.chars().count(), MAX_TEXT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
