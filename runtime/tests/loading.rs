//! Loading plugins: the world is checked, pins are enforced, and bad
//! components are refused at load with a message saying why.

mod common;

use common::*;
use warden::policy::Policy;
use warden::sandbox::{inspect, ErrorKind, ToolHost};

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn load_err(dir: &std::path::Path, plugin: &std::path::Path) -> String {
    let path = dir.join("p.toml");
    std::fs::write(&path, format!("[tools.x]\nplugin = {:?}\n", plugin)).unwrap();
    let policy = Policy::load(&path, dir).unwrap();
    match ToolHost::load(&policy) {
        Ok(_) => panic!("{} loaded", plugin.display()),
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::Policy);
            e.message
        }
    }
}

#[test]
fn component_of_the_wrong_world_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let other_world = wat::parse_str(
        r#"(component
             (core module $m (func (export "run")))
             (core instance $i (instantiate $m))
             (func (export "run") (canon lift (core func $i "run"))))"#,
    )
    .unwrap();
    let p = write(dir.path(), "other.wasm", &other_world);
    let msg = load_err(dir.path(), &p);
    assert!(
        msg.contains("does not fit the warden:tool/tool world"),
        "{msg}"
    );
    assert!(msg.contains("no export `call`"), "{msg}");
    let msg = format!("{:#}", inspect(&p).unwrap_err());
    assert!(
        msg.contains("does not fit the warden:tool/tool world"),
        "{msg}"
    );

    let empty = wat::parse_str("(component)").unwrap();
    let msg = load_err(dir.path(), &write(dir.path(), "empty.wasm", &empty));
    assert!(msg.contains("does not fit"), "{msg}");
}

#[test]
fn core_modules_and_garbage_are_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let core = wat::parse_str("(module)").unwrap();
    let msg = load_err(dir.path(), &write(dir.path(), "core.wasm", &core));
    assert!(
        msg.contains("core WebAssembly module, not a component") && msg.contains("wasm32-wasip2"),
        "{msg}"
    );
    let msg = load_err(
        dir.path(),
        &write(dir.path(), "junk.wasm", b"definitely not wasm"),
    );
    assert!(msg.contains("not a WebAssembly file"), "{msg}");
    // Truncated component.
    let bytes = std::fs::read(warden_artifacts::TEST_TOOL).unwrap();
    let msg = load_err(
        dir.path(),
        &write(dir.path(), "cut.wasm", &bytes[..bytes.len() / 2]),
    );
    assert!(msg.contains("tool x"), "{msg}");
}

#[test]
fn sha256_pin_is_enforced() {
    let bytes = std::fs::read(warden_artifacts::TEST_TOOL).unwrap();
    let good = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let f = Fixture::new(&format!(
        "[tools.t]\nplugin = {}\nsha256 = \"{good}\"\n",
        test_tool()
    ));
    assert_eq!(f.host().tools().next().unwrap().sha256, good);

    let bad = "0".repeat(64);
    let f = Fixture::new(&format!(
        "[tools.t]\nplugin = {}\nsha256 = \"{bad}\"\n",
        test_tool()
    ));
    let msg = ToolHost::load(&f.policy)
        .err()
        .expect("pin mismatch must fail")
        .message;
    assert!(
        msg.contains(&good) && msg.contains(&bad) && msg.contains("update `sha256`"),
        "{msg}"
    );
}

#[test]
fn inspect_reports_spec_hash_and_imports() {
    let i = inspect(std::path::Path::new(warden_artifacts::TEST_TOOL)).unwrap();
    assert_eq!(i.spec.plugin_name, "test_tool");
    assert_eq!(i.sha256.len(), 64);
    assert!(
        i.imports.iter().any(|n| n.starts_with("wasi:filesystem/")),
        "{:?}",
        i.imports
    );
    assert!(
        i.imports.iter().any(|n| n.starts_with("wasi:sockets/")),
        "{:?}",
        i.imports
    );
}

#[test]
fn every_builtin_plugin_loads_and_describes_itself() {
    for (name, _) in warden::sandbox::BUILTIN_PLUGINS {
        let f = Fixture::new(&format!("[tools.x]\nplugin = \"{name}\"\n"));
        let host = f.host();
        let t = host.tools().next().unwrap();
        assert_eq!(t.spec.plugin_name, name.replace('-', "_"));
        assert!(
            t.spec.description.len() > 40,
            "{name}: description too thin"
        );
        assert_eq!(t.spec.parameters["type"], "object");
    }
}
