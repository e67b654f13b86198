//! Attacks on the network gate: addresses spelled as names, names that
//! resolve to internal addresses, redirects to them, and request floods.
//! Names resolve through a resolver given to the host (the names here have
//! no DNS), so what is tested is the host's check of the addresses and its
//! connecting to exactly those, against a real server on loopback.

mod common;

use common::*;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use warden::policy::Policy;
use warden::sandbox::{ErrorKind, Lookup, Resolve, ToolHost};

/// Names to addresses, counting lookups.
struct Table {
    names: HashMap<&'static str, Vec<IpAddr>>,
    lookups: AtomicUsize,
}

impl Resolve for Table {
    fn resolve(&self, host: &str, port: u16) -> Lookup {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let found: Vec<SocketAddr> = self
            .names
            .get(host)
            .map(|ips| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
            .unwrap_or_default();
        Box::pin(async move { Ok(found) })
    }
}

fn table() -> Arc<Table> {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    Arc::new(Table {
        names: HashMap::from([
            ("inside.example.org", vec![ip("127.0.0.1")]),
            ("metadata.example.org", vec![ip("169.254.169.254")]),
            ("lan.example.org", vec![ip("10.0.0.1")]),
            ("router.example.org", vec![ip("192.168.1.1")]),
            ("cgnat.example.org", vec![ip("100.64.0.1")]),
            ("v6.example.org", vec![ip("::1")]),
            ("mapped.example.org", vec![ip("::ffff:127.0.0.1")]),
            ("ula.example.org", vec![ip("fd00::1")]),
            (
                "mixed.example.org",
                vec![ip("93.184.216.34"), ip("127.0.0.1")],
            ),
            // `localhost` is never looked up: it means loopback.
            ("localhost", vec![ip("93.184.216.34")]),
        ]),
        lookups: AtomicUsize::new(0),
    })
}

/// `/ok`, and `/to-inside`: a redirect to inside.example.org on the same
/// port.
fn routes(path: &str, port: u16) -> String {
    match path {
        "/ok" => http_response("200 OK", "", "ok"),
        "/to-inside" => http_response(
            "302 Found",
            &format!("Location: http://inside.example.org:{port}/ok\r\n"),
            "",
        ),
        _ => http_response("404 Not Found", "", ""),
    }
}

fn host_with(f: &Fixture, resolver: Arc<Table>) -> ToolHost {
    ToolHost::load_with_resolver(&f.policy, resolver).unwrap_or_else(|e| panic!("{e}"))
}

fn get(
    host: &ToolHost,
    url: String,
) -> Result<warden::sandbox::CallOutput, warden::sandbox::CallError> {
    call(
        host,
        "http_get",
        &serde_json::json!({"url": url}).to_string(),
    )
}

#[test]
fn every_spelling_of_an_address_is_refused_as_a_host() {
    let dir = tempfile::tempdir().unwrap();
    for spelled in [
        "127.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.0.0.01",
        "*.0.1",
        "[::1]",
        "::ffff:127.0.0.1",
    ] {
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            format!("[tools.http_get]\nplugin = \"http-get\"\nhosts = [{spelled:?}]\n"),
        )
        .unwrap();
        let err = format!("{:#}", Policy::load(&path, dir.path()).unwrap_err());
        assert!(err.contains("p.toml:3:"), "{spelled}: {err}");
        assert!(
            err.contains("IP address") || err.contains("not a host name"),
            "{spelled}: {err}"
        );
    }
}

#[test]
fn names_that_resolve_to_internal_addresses_are_refused() {
    let server = TestServer::start(routes);
    let port = server.port;
    let f = Fixture::new(
        "[tools.http_get]\nplugin = \"http-get\"\nhosts = [\"*.example.org\"]\ntimeout_ms = 5000\n",
    );
    let resolver = table();
    let host = host_with(&f, resolver.clone());
    for (name, addr) in [
        ("inside", "127.0.0.1"),
        ("metadata", "169.254.169.254"),
        ("lan", "10.0.0.1"),
        ("router", "192.168.1.1"),
        ("cgnat", "100.64.0.1"),
        ("v6", "::1"),
        ("mapped", "::ffff:127.0.0.1"),
        ("ula", "fd00::1"),
        ("mixed", "127.0.0.1"),
    ] {
        let msg = expect_err(
            get(&host, format!("http://{name}.example.org:{port}/ok")),
            ErrorKind::Denied,
        );
        assert!(
            msg.contains(&format!("{name}.example.org"))
                && msg.contains(addr)
                && msg.contains("allow_private_network"),
            "{name}: {msg}"
        );
    }
    assert_eq!(server.all_hits(), 0, "a request got through");
    // One lookup per request: the addresses checked are the ones used.
    assert_eq!(resolver.lookups.load(Ordering::SeqCst), 9);
}

#[test]
fn allow_private_network_opts_in_and_connects_to_the_checked_address() {
    let server = TestServer::start(routes);
    let f = Fixture::new(
        "[tools.http_get]\nplugin = \"http-get\"\nhosts = [\"*.example.org\"]\nallow_private_network = true\n",
    );
    let host = host_with(&f, table());
    // The system resolver knows no such name: the request reaches the
    // server only through the address the host resolved and checked.
    let out = expect_ok(get(
        &host,
        format!("http://inside.example.org:{}/ok", server.port),
    ));
    assert!(out.starts_with("HTTP 200") && out.ends_with("ok"), "{out}");
    assert_eq!(server.ok_hits(), 1);
}

#[test]
fn localhost_means_loopback_and_redirects_are_checked_after_resolution() {
    let server = TestServer::start(routes);
    let f = Fixture::new(
        "[tools.http_get]\nplugin = \"http-get\"\nhosts = [\"localhost\", \"*.example.org\"]\n",
    );
    let resolver = table();
    let host = host_with(&f, resolver.clone());
    // `localhost` reaches loopback without allow_private_network, and is
    // never resolved (the table would send it elsewhere).
    expect_ok(get(&host, format!("http://localhost:{}/ok", server.port)));
    assert_eq!(server.ok_hits(), 1);
    assert_eq!(resolver.lookups.load(Ordering::SeqCst), 0);
    // A redirect from there to a name that resolves to loopback is refused.
    let msg = expect_err(
        get(&host, format!("http://localhost:{}/to-inside", server.port)),
        ErrorKind::Denied,
    );
    assert!(
        msg.contains("inside.example.org") && msg.contains("127.0.0.1"),
        "{msg}"
    );
    assert_eq!(server.ok_hits(), 1);
}

#[test]
fn one_call_makes_at_most_max_http_requests() {
    let server = TestServer::start(routes);
    let url = format!("http://localhost:{}/ok", server.port);
    let flood = serde_json::json!({"action": "http", "url": url, "times": 300}).to_string();
    let f = Fixture::new(&format!(
        "[tools.t]\nplugin = {}\nhosts = [\"localhost\"]\ntimeout_ms = 20000\n",
        test_tool()
    ));
    let host = f.host();
    let msg = expect_err(call(&host, "t", &flood), ErrorKind::Denied);
    assert!(msg.contains("request 17 of 300"), "{msg}");
    assert!(msg.contains("max_http_requests"), "{msg}");
    assert_eq!(server.ok_hits(), 16);

    let f = Fixture::new(&format!(
        "[tools.t]\nplugin = {}\nhosts = [\"localhost\"]\nmax_http_requests = 3\n",
        test_tool()
    ));
    let before = server.ok_hits();
    let msg = expect_err(call(&f.host(), "t", &flood), ErrorKind::Denied);
    assert!(msg.contains("more than 3 HTTP requests"), "{msg}");
    assert_eq!(server.ok_hits() - before, 3);
}
