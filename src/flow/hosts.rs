//! The allowlist of hosts `http` steps may call (`--allow-hosts`): names
//! and IP literals with an optional port, and CIDR ranges. A name is also
//! checked against the addresses it resolves to when a step calls it (the
//! orchestrator's resolver asks [`AllowList::allows_address`]): a name that
//! resolves to loopback, link-local, private, shared (CGNAT) or unspecified
//! addresses is refused unless an IP or CIDR entry covers that address, so
//! an allowed public name cannot be pointed at the metadata service or the
//! database next door. The entry `localhost` allows loopback by name.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A host name (lowercase) or an IP literal, with an optional port.
    Host { host: String, port: Option<u16> },
    /// `addr/prefix`: every IP literal and resolved address in the range.
    Net { addr: IpAddr, prefix: u8 },
}

/// The parsed `--allow-hosts` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

/// An entry that is not a host, `host:port` or CIDR range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEntry {
    pub entry: String,
    pub reason: String,
}

impl fmt::Display for BadEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` in --allow-hosts: {}", self.entry, self.reason)
    }
}

impl std::error::Error for BadEntry {}

impl FromStr for Entry {
    type Err = BadEntry;

    fn from_str(raw: &str) -> Result<Entry, BadEntry> {
        let bad = |reason: &str| BadEntry {
            entry: raw.to_owned(),
            reason: reason.to_owned(),
        };
        let s = raw.trim();
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if let Some((addr, prefix)) = s.split_once('/') {
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| bad("a range is `address/prefix`"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix: u8 = prefix
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad("the prefix length is out of range"))?;
            return Ok(Entry::Net { addr, prefix });
        }
        if let Ok(ip) = s.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
            return Ok(Entry::Host {
                host: ip.to_string(),
                port: None,
            });
        }
        // `host:port` or `[v6]:port`.
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !h.contains(':') || h.ends_with(']') => {
                let port: u16 = p
                    .parse()
                    .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
                (h.trim_matches(|c| c == '[' || c == ']'), Some(port))
            }
            _ => (s, None),
        };
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => {
                let ok = host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                if !ok {
                    return Err(bad("a host is a name, an IP address or a CIDR range"));
                }
                host.to_ascii_lowercase()
            }
        };
        Ok(Entry::Host { host, port })
    }
}

impl AllowList {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, BadEntry> {
        Ok(AllowList {
            entries: entries
                .iter()
                .map(|e| e.as_ref().parse())
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether a URL's host and port may be called at all. IP literals
    /// are checked against the ranges here, names only by name.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host
            .trim_matches(|c| c == '[' || c == ']')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|e| match e {
            Entry::Host { host: h, port: p } => *h == host && p.is_none_or(|p| p == port),
            Entry::Net { addr, prefix } => ip.is_some_and(|ip| in_range(ip, *addr, *prefix)),
        })
    }

    /// Whether `host` (allowed by [`AllowList::allows`]) may connect to
    /// `ip`, one of the addresses it resolved to. Public addresses may; an
    /// address in a special range only where an IP or CIDR entry covers it,
    /// or loopback for the entry `localhost`.
    pub fn allows_address(&self, host: &str, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        let Some(range) = special_range(ip) else {
            return true;
        };
        self.entries.iter().any(|e| match e {
            Entry::Host { host: h, .. } => {
                h.parse::<IpAddr>().is_ok_and(|a| canonical(a) == ip)
                    || (range == "loopback"
                        && h == "localhost"
                        && host.eq_ignore_ascii_case("localhost"))
            }
            Entry::Net { addr, prefix } => in_range(ip, *addr, *prefix),
        })
    }

    /// The entries as given, for hints.
    pub fn describe(&self) -> String {
        if self.entries.is_empty() {
            return "none".to_owned();
        }
        self.entries
            .iter()
            .map(|e| match e {
                Entry::Host {
                    host,
                    port: Some(p),
                } => format!("{host}:{p}"),
                Entry::Host { host, port: None } => host.clone(),
                Entry::Net { addr, prefix } => format!("{addr}/{prefix}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The name of the special range `ip` is in, if any.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_private() {
                Some("private")
            } else if o[0] == 100 && (64..128).contains(&o[1]) {
                Some("shared (CGNAT)")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("unspecified")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private")
            } else {
                None
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) as the IPv4 they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_range(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (canonical(ip), net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(entries).unwrap()
    }

    #[test]
    fn entries_take_ports_and_ranges() {
        let l = list(&[
            "api.example.com:8443",
            "Other.example.com",
            "10.1.0.0/16",
            "[::1]:80",
        ]);
        assert!(l.allows("api.example.com", 8443));
        assert!(!l.allows("api.example.com", 443));
        assert!(l.allows("other.example.com", 1));
        assert!(l.allows("10.1.2.3", 80));
        assert!(!l.allows("10.2.0.1", 80));
        assert!(l.allows("[::1]", 80));
        for bad in ["", "a b", "10.0.0.0/33", "host:99999", "x/8"] {
            assert!(AllowList::parse(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_may_not_resolve_into_special_ranges_unless_allowed_explicitly() {
        let l = list(&["api.example.com", "localhost"]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(l.allows_address("api.example.com", ip("93.184.216.34")));
        for special in [
            "127.0.0.1",
            "169.254.169.254",
            "10.0.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(
                !l.allows_address("api.example.com", ip(special)),
                "{special}"
            );
        }
        assert!(l.allows_address("localhost", ip("127.0.0.1")));
        assert!(l.allows_address("localhost", ip("::1")));
        let explicit = list(&["api.example.com", "10.0.0.0/8", "127.0.0.1"]);
        assert!(explicit.allows_address("api.example.com", ip("10.9.9.9")));
        assert!(explicit.allows_address("api.example.com", ip("127.0.0.1")));
        assert!(!explicit.allows_address("api.example.com", ip("127.0.0.2")));
    }
}
