//! The training workspace: a copy of the suite's workspace plus generated
//! Django-style packages whose names are invented, so that searches, reads
//! and listings of many more names return real results from real files.
//! The suite's own workspace is never written to.

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

/// Writes the training workspace at `to`: `workspace` copied, then
/// `cfg.apps` packages named from `words`. `taken` says whether a name may
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
    if words.is_empty() || cfg.modules.is_empty() {
        return Ok(0);
    }
    let mut made = 0;
    let mut used = BTreeSet::new();
    let mut fresh = |name: String| -> Option<String> {
        (!taken(&name) && used.insert(name.clone())).then_some(name)
    };
    for _ in 0..cfg.apps {
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
    Ok(made)
}
