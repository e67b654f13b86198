//! The training workspace: a copy of the suite's workspace plus generated
//! Django-style packages and Node.js modules whose names are invented, so
//! that searches, reads and listings of many more names, in both naming
//! styles (`snake_case` and `camelCase`), return real results from real
//! files. The suite's own workspace is never written to.

use super::names::capitalised;
use anyhow::Context as _;
use rand::seq::IndexedRandom;
use rand::Rng;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;

/// The `[tree]` table of the templates.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct TreeConfig {
    /// Generated packages.
    pub apps: usize,
    /// Module file names a package takes some of.
    pub modules: Vec<String>,
    /// Generated Node.js packages (under `src/`).
    #[serde(default)]
    pub js_apps: usize,
    /// Module file names a Node.js package takes some of.
    #[serde(default)]
    pub js_modules: Vec<String>,
}

/// One generated Python module: a docstring, one or two classes with a
/// field and a method, and one to three functions.
fn module(
    app: &str,
    stem: &str,
    words: &[String],
    tails: &[String],
    rng: &mut impl Rng,
    fresh: &mut dyn FnMut(String) -> Option<String>,
) -> String {
    let word = |rng: &mut dyn rand::RngCore| words[rng.next_u32() as usize % words.len()].clone();
    let mut out = format!(
        "\"\"\"{} {stem}.\"\"\"\nfrom django.db import models\n",
        capitalised(app)
    );
    for _ in 0..rng.random_range(1..=2) {
        let tail = tails
            .choose(rng)
            .cloned()
            .unwrap_or_else(|| capitalised(&word(rng)));
        let Some(class) = fresh(format!("{}{tail}", capitalised(&word(rng)))) else {
            continue;
        };
        let field = word(rng);
        let method = fresh(format!("{}_{}", word(rng), word(rng)));
        out.push_str(&format!(
            "\n\nclass {class}(models.Model):\n    {field} = models.CharField(max_length={})\n",
            rng.random_range(2..=40) * 10
        ));
        if let Some(m) = method {
            out.push_str(&format!(
                "\n    def {m}(self):\n        return self.{field}\n"
            ));
        }
    }
    for _ in 0..rng.random_range(1..=3) {
        let Some(f) = fresh(format!("{}_{}", word(rng), word(rng))) else {
            continue;
        };
        let arg = if stem == "views" {
            "request".to_string()
        } else {
            word(rng)
        };
        let body = match rng.random_range(0..3) {
            0 => format!("return {arg}"),
            1 => format!("return [x for x in {arg} if x]"),
            _ => format!("# TODO: {} the {}\n    return None", word(rng), word(rng)),
        };
        out.push_str(&format!("\n\ndef {f}({arg}):\n    {body}\n"));
    }
    out
}

/// `w1` then `w2` capitalised: a camelCase name.
fn camel(w1: &str, w2: &str) -> String {
    format!("{w1}{}", capitalised(w2))
}

/// One generated Node.js module: a class with a field and a method, one to
/// three camelCase functions (a router in route modules), and the exports.
fn js_module(
    stem: &str,
    words: &[String],
    tails: &[String],
    rng: &mut impl Rng,
    fresh: &mut dyn FnMut(String) -> Option<String>,
) -> String {
    let word = |rng: &mut dyn rand::RngCore| words[rng.next_u32() as usize % words.len()].clone();
    let mut out = String::new();
    let mut exports = Vec::new();
    if stem == "routes" || rng.random_bool(0.3) {
        out.push_str("const express = require(\"express\");\n");
    }
    out.push_str(&format!("const db = require(\"../{}\");\n", word(rng)));
    if rng.random_bool(0.6) {
        let tail = tails
            .choose(rng)
            .cloned()
            .unwrap_or_else(|| capitalised(&word(rng)));
        if let Some(class) = fresh(format!("{}{tail}", capitalised(&word(rng)))) {
            let field = word(rng);
            out.push_str(&format!(
                "\nclass {class} {{\n  constructor({field}) {{\n    this.{field} = {field};\n  }}\n"
            ));
            if let Some(m) = fresh(camel(&word(rng), &word(rng))) {
                out.push_str(&format!("\n  {m}() {{\n    return this.{field};\n  }}\n"));
            }
            out.push_str("}\n");
            exports.push(class);
        }
    }
    if stem == "routes" {
        if let Some(router) = fresh(format!("{}Router", word(rng))) {
            out.push_str(&format!(
                "\nconst {router} = express.Router();\n\n{router}.get(\"/{}\", (req, res) => {{\n  res.json(db.all());\n}});\n",
                word(rng)
            ));
            exports.push(router);
        }
    }
    for _ in 0..rng.random_range(1..=3) {
        let Some(f) = fresh(camel(&word(rng), &word(rng))) else {
            continue;
        };
        let arg = camel(&word(rng), "id");
        let body = match rng.random_range(0..3) {
            0 => format!("return db.get({arg});"),
            1 => format!("return [{arg}].filter(Boolean);"),
            _ => format!("// TODO: {} the {}\n  return null;", word(rng), word(rng)),
        };
        let head = if rng.random_bool(0.3) {
            "async function"
        } else {
            "function"
        };
        out.push_str(&format!("\n{head} {f}({arg}) {{\n  {body}\n}}\n"));
        exports.push(f);
    }
    out.push_str(&format!(
        "\nmodule.exports = {{ {} }};\n",
        exports.join(", ")
    ));
    out
}

/// Writes the training workspace at `to`: `workspace` copied, then
/// `cfg.apps` packages and `cfg.js_apps` Node.js packages (under `src/`)
/// named from `words`. `taken` says whether a name may
/// not be used (held out, or already in the workspace). Returns how many
/// packages were made.
pub(super) fn build(
    workspace: &Path,
    to: &Path,
    cfg: &TreeConfig,
    words: &[String],
    tails: &[String],
    rng: &mut impl Rng,
    taken: &dyn Fn(&str) -> bool,
) -> anyhow::Result<usize> {
    crate::outputs::copy_tree(workspace, to, false)?;
    if words.is_empty() {
        return Ok(0);
    }
    let mut made = 0;
    let mut used = BTreeSet::new();
    let mut fresh = |name: String| -> Option<String> {
        (!taken(&name) && used.insert(name.clone())).then_some(name)
    };
    for _ in 0..cfg.apps {
        if cfg.modules.is_empty() {
            break;
        }
        let app = words[rng.random_range(0..words.len())].clone();
        if to.join(&app).exists() || fresh(app.clone()).is_none() {
            continue;
        }
        let dir = to.join(&app);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(dir.join("__init__.py"), "")?;
        made += 1;
        let n = rng.random_range(2..=4).min(cfg.modules.len());
        for m in cfg.modules.choose_multiple(rng, n) {
            let stem = m.trim_end_matches(".py");
            let text = module(&app, stem, words, tails, rng, &mut fresh);
            std::fs::write(dir.join(m), text)?;
        }
        if rng.random_bool(0.4) {
            let t = dir.join("templates").join(&app);
            std::fs::create_dir_all(&t)?;
            let page = words[rng.random_range(0..words.len())].clone();
            std::fs::write(
                t.join(format!("{page}.html")),
                format!(
                    "{{% extends \"base.html\" %}}\n{{% block content %}}\n<h1>{}</h1>\n{{% endblock %}}\n",
                    capitalised(&page)
                ),
            )?;
        }
    }
    for _ in 0..cfg.js_apps {
        if cfg.js_modules.is_empty() {
            break;
        }
        let app = words[rng.random_range(0..words.len())].clone();
        let dir = to.join("src").join(&app);
        if dir.exists() || fresh(app.clone()).is_none() {
            continue;
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        made += 1;
        let n = rng.random_range(2..=4).min(cfg.js_modules.len());
        for m in cfg.js_modules.choose_multiple(rng, n) {
            let stem = m.trim_end_matches(".js");
            let text = js_module(stem, words, tails, rng, &mut fresh);
            std::fs::write(dir.join(m), text)?;
        }
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn node_packages_have_camel_case_functions_that_scan_finds() {
        let ws = tempfile::tempdir().unwrap();
        std::fs::write(ws.path().join("README.md"), "x\n").unwrap();
        let to = tempfile::tempdir().unwrap();
        let to = to.path().join("tree");
        let cfg = TreeConfig {
            apps: 0,
            modules: vec![],
            js_apps: 3,
            js_modules: vec!["routes.js".into(), "service.js".into()],
        };
        let words: Vec<String> = ["lantern", "harbor", "pickle", "meadow", "copper", "signal"]
            .map(String::from)
            .to_vec();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let made = build(
            ws.path(),
            &to,
            &cfg,
            &words,
            &["Store".into()],
            &mut rng,
            &|_| false,
        )
        .unwrap();
        assert!(made >= 1, "{made}");
        let found = super::super::names::scan(&to).unwrap();
        let js = &found["jsfunction"];
        assert!(!js.is_empty());
        let camel = regex::Regex::new(r"^[a-z]+[A-Z][a-z]+$").unwrap();
        assert!(js.iter().all(|f| camel.is_match(f)), "{js:?}");
        assert!(js.iter().any(|f| f.ends_with("Router")), "{js:?}");
        assert!(found["file"]
            .iter()
            .any(|f| f.starts_with("src/") && f.ends_with(".js")));
        // Classes of JavaScript modules are classes too.
        assert!(found
            .get("class")
            .is_some_and(|c| c.iter().all(|c| c.starts_with(char::is_uppercase))));
    }
}
