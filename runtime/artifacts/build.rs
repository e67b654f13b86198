//! Builds the plugin workspace (`plugins/`) for `wasm32-wasip2` and writes
//! `plugins.rs` into OUT_DIR, embedding each component, so that `cargo
//! build`, `cargo run` and `cargo test` need no separate plugin step.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Plugin crates that ship inside warden, by policy name.
const BUILTIN: &[&str] = &[
    "read-file",
    "list-dir",
    "search-code",
    "write-file",
    "http-get",
    "run-command",
];
/// Plugin crates used only by warden's own tests and benchmarks.
const TEST_ONLY: &[&str] = &["test-tool", "test-slow-describe"];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.join("../..").canonicalize().unwrap();
    let plugins = root.join("plugins");
    for p in ["plugins/Cargo.toml", "plugins/Cargo.lock", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    for krate in BUILTIN.iter().chain(TEST_ONLY).chain(&["support"]) {
        println!(
            "cargo:rerun-if-changed={}",
            plugins.join(krate).join("src").display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            plugins.join(krate).join("Cargo.toml").display()
        );
    }

    let target_dir = plugin_target_dir();
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&plugins)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    // Flags meant for the host build must not leak into the wasm build.
    for (k, _) in env::vars() {
        if k.starts_with("CARGO_") && k != "CARGO_HOME" && k != "CARGO_MAKEFLAGS"
            || k == "RUSTFLAGS"
            || k == "RUSTC_WORKSPACE_WRAPPER"
        {
            cmd.env_remove(&k);
        }
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo for the plugins: {e}"));
    if !status.success() {
        panic!(
            "building the plugins in {} for wasm32-wasip2 failed (see above).\n\
             If the target is missing: rustup target add wasm32-wasip2",
            plugins.display()
        );
    }

    let out = target_dir.join("wasm32-wasip2/release");
    let mut code = String::from("/// Built-in plugins: (policy name, component bytes).\n");
    code.push_str("pub const BUILTIN: &[(&str, &[u8])] = &[\n");
    for name in BUILTIN {
        writeln!(
            code,
            "    ({name:?}, include_bytes!({:?})),",
            wasm(&out, name)
        )
        .unwrap();
    }
    code.push_str("];\n");
    for name in TEST_ONLY {
        let konst = name.to_uppercase().replace('-', "_");
        writeln!(
            code,
            "/// Path of the `{name}` component (tests and benchmarks only)."
        )
        .unwrap();
        writeln!(code, "pub const {konst}: &str = {:?};", wasm(&out, name)).unwrap();
    }
    let dest = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("plugins.rs");
    std::fs::write(dest, code).unwrap();
}

fn wasm(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "plugin build produced no {}", path.display());
    path.display().to_string()
}

/// `<target>/wasm-plugins`, beside the host build, shared by all profiles.
fn plugin_target_dir() -> PathBuf {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("wasm-plugins");
    }
    // OUT_DIR is <target>/<profile>/build/<crate>-<hash>/out (or one level
    // deeper with --target).
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    out.ancestors()
        .find(|a| a.join("CACHEDIR.TAG").exists())
        .map(|t| t.join("wasm-plugins"))
        .unwrap_or_else(|| out.join("wasm-plugins"))
}
