//! Host patterns of a policy's `hosts` list.

use std::net::IpAddr;

/// An allowed host: exact (`api.github.com`) or a subdomain wildcard
/// (`*.python.org`, which matches `docs.python.org` but not `python.org`).
/// Ports are not part of the pattern. IP literals are never allowed.
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
        if is_ip_literal(&name) {
            return Err(format!(
                "{s:?} is an IP address; policies allow host names only"
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

/// Whether a request to `host` is allowed by `patterns`.
pub fn allowed(patterns: &[HostPattern], host: &str) -> bool {
    !is_ip_literal(host) && patterns.iter().any(|p| p.matches(host))
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
}
