//! `warden tools new`: scaffold a plugin crate that builds and fits as is.

use anyhow::{bail, Context as _};
use std::path::PathBuf;

/// The contract, copied into every scaffolded crate so it stands alone.
const TOOL_WIT: &str = include_str!("../../../wit/tool.wit");

/// Writes a new plugin crate for tool `name` into `dir` (default `./name`).
pub fn scaffold(name: &str, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        bail!("{name:?} is not a usable tool name: start with a lowercase letter, then lowercase letters, digits, '-' or '_'");
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists()
        && dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} already exists and is not empty; pick another --dir",
            dir.display()
        );
    }
    let tool_name = name.replace('-', "_");
    let files = [
        ("Cargo.toml", cargo_toml(name)),
        ("src/lib.rs", lib_rs(&tool_name)),
        ("wit/tool.wit", TOOL_WIT.to_string()),
        (".gitignore", "/target\n".to_string()),
    ];
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let wasm = format!("target/wasm32-wasip2/release/{tool_name}.wasm");
    // The commands below run after the `cd`, so paths in them are relative
    // to the crate; the policy's path is absolute (a policy may live anywhere).
    let abs = dir.canonicalize().unwrap_or_else(|_| dir.clone());
    outln!("created tool crate {name} in {}", dir.display());
    outln!("next:");
    outln!(
        "  cd {} && cargo build --release --target wasm32-wasip2",
        dir.display()
    );
    outln!("  warden tools inspect {wasm}");
    outln!("then add to a policy:");
    outln!(
        "  [tools.{tool_name}]\n  plugin = {:?}",
        abs.join(&wasm).display().to_string()
    );
    Ok(())
}

fn cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
wit-bindgen = "0.63"
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
strip = true

# A tool crate is its own workspace, wherever it is created.
[workspace]
"#
    )
}

fn lib_rs(tool_name: &str) -> String {
    format!(
        r####"//! {tool_name}: a warden tool.
//!
//! Build: cargo build --release --target wasm32-wasip2
//! Check: warden tools inspect target/wasm32-wasip2/release/{tool_name}.wasm
//!
//! warden calls `describe` once at load and `call` once per tool call, each
//! in a fresh sandbox. The tool sees only the directories, hosts and
//! environment variables its policy grants.

// Generates `Guest` (the trait to implement), `Spec`, `Error` and `export!`.
wit_bindgen::generate!({{ world: "tool", path: "wit" }});

struct Component;

impl Guest for Component {{
    fn describe() -> Spec {{
        Spec {{
            name: "{tool_name}".into(),
            description: "Greets someone by name. Replace with what your tool does, for the model to read.".into(),
            parameters: r#"{{
                "type": "object",
                "properties": {{"name": {{"type": "string", "description": "Who to greet"}}}},
                "required": ["name"],
                "additionalProperties": false
            }}"#
            .into(),
        }}
    }}

    fn call(arguments: String) -> Result<String, Error> {{
        let args: serde_json::Value = serde_json::from_str(&arguments)
            .map_err(|e| Error::InvalidArguments(format!("arguments are not JSON: {{e}}")))?;
        let name = args
            .get("name")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::InvalidArguments("`name` (a string) is required".into()))?;
        Ok(format!("Hello, {{name}}!"))
    }}
}}

export!(Component);
"####
    )
}
