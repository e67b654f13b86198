//! Host patterns of a policy's `hosts` list.

use std::net::IpAddr;

/// An allowed host: exact (`api.github.com`) or a subdomain wildcard
/// (`*.python.org`, which matches `docs.python.org` but not `python.org`).
/// Ports are not part of the pattern. IP addresses are never allowed, in
/// any spelling a resolver or URL parser accepts (`127.1`, `0x7f000001`,
/// `2130706433`, `0177.0.0.1`): names only, and the addresses they resolve
/// to are checked again when a request is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this host name (lowercase).
    Exact(String),
    /// Any strict subdomain of this domain (lowercase, no leading dot).
    Subdomains(String),
}

impl HostPattern {
    /// Parses one entry of a `hosts` list.
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let lower = s.trim().to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, lower.clone()),
        };
        if is_ip_literal(&name) || ends_in_number(&name) {
            return Err(format!(
                "{s:?} is an IP address (or would be read as one); policies allow host names only"
            ));
        }
        let ok = !name.is_empty()
            && name.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(format!(
                "{s:?} is not a host name; write e.g. \"api.github.com\" or \"*.python.org\" (no scheme, port or path)"
            ));
        }
        Ok(if wild {
            HostPattern::Subdomains(name)
        } else {
            HostPattern::Exact(name)
        })
    }

    /// Whether `host` (a name from a request, without port) matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self {
            HostPattern::Exact(h) => host == *h,
            HostPattern::Subdomains(d) => {
                host.len() > d.len() + 1
                    && host.ends_with(d.as_str())
                    && host.as_bytes()[host.len() - d.len() - 1] == b'.'
            }
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Subdomains(d) => write!(f, "*.{d}"),
        }
    }
}

/// Whether `host` is an IPv4 or IPv6 literal (bracketed or not).
pub fn is_ip_literal(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.parse::<IpAddr>().is_ok()
}

/// Whether `host` ends in a number, the WHATWG URL rule under which it is
/// an IPv4 address, and what `inet_aton` takes as one: the last label
/// (ignoring one trailing dot) is all decimal digits, or `0x` followed by
/// hex digits. `127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`.
pub fn ends_in_number(host: &str) -> bool {
    let h = host.strip_suffix('.').unwrap_or(host);
    let last = h.rsplit('.').next().unwrap_or("");
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    matches!(last.get(..2), Some("0x" | "0X")) && last[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a request to `host` is allowed by `patterns` (by name; the
/// addresses it resolves to are checked separately).
pub fn allowed(patterns: &[HostPattern], host: &str) -> bool {
    !is_ip_literal(host) && !ends_in_number(host) && patterns.iter().any(|p| p.matches(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard() {
        let ps = vec![
            HostPattern::parse("api.github.com").unwrap(),
            HostPattern::parse("*.python.org").unwrap(),
        ];
        assert!(allowed(&ps, "api.github.com"));
        assert!(allowed(&ps, "API.GitHub.com"));
        assert!(allowed(&ps, "docs.python.org"));
        assert!(!allowed(&ps, "python.org"));
        assert!(!allowed(&ps, "evilpython.org"));
        assert!(!allowed(&ps, "github.com"));
        assert!(!allowed(&ps, "127.0.0.1"));
        assert!(!allowed(&ps, "[::1]"));
    }

    #[test]
    fn bad_patterns() {
        for bad in ["10.0.0.1", "::1", "https://x.com", "x.com:80", "", "*."] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_spelling_of_an_address_is_refused() {
        for bad in [
            "127.1",
            "2130706433",
            "0x7f000001",
            "0X7F000001",
            "0177.0.0.1",
            "127.0.0.01",
            "*.0.1",
            "127.0.0.1.",
            "0x",
            "1.2.3.0x4",
        ] {
            let err = HostPattern::parse(bad).unwrap_err();
            assert!(err.contains("IP address"), "{bad}: {err}");
        }
        for good in [
            "1password.com",
            "123.example.com",
            "x0x1.org",
            "*.0x.example",
        ] {
            assert!(HostPattern::parse(good).is_ok(), "{good}");
        }
        let ps = vec![HostPattern::parse("*.example.org").unwrap()];
        assert!(!allowed(&ps, "127.1"));
        assert!(allowed(&ps, "a.example.org"));
    }
}
