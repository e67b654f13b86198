//! Names for training questions: those found in a workspace (classes,
//! functions, files, directories) and invented ones made of whole-word
//! tokens of the model's vocabulary.

use anyhow::Context as _;
use rand::Rng;
use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Names found in a workspace, by template kind (`class`, `function` for
/// Python functions, `jsfunction` for JavaScript ones (camelCase), `uses`,
/// `file`, `dir`, `ext` for file extensions), each list without repeats.
pub(super) type Found = BTreeMap<&'static str, Vec<String>>;

/// Scans `workspace` for the names templates ask about.
pub(super) fn scan(workspace: &Path) -> anyhow::Result<Found> {
    let class = Regex::new(r"^\s*class\s+([A-Za-z_]\w*)").expect("static regex");
    let func = Regex::new(r"^\s*(?:async\s+)?def\s+([A-Za-z]\w*)").expect("static regex");
    // JavaScript: `function f(`, `const f = (…) =>`/`function`/a router,
    // and methods (`  name(…) {`).
    let js_class = Regex::new(r"^\s*(?:export\s+)?class\s+([A-Za-z_]\w*)").expect("static regex");
    let js_func = Regex::new(
        r"^(?:export\s+)?(?:(?:async\s+)?function\s+([A-Za-z_]\w*)|(?:const|let)\s+([a-z]\w*)\s*=\s*(?:async\s*)?(?:\(|function\b|express\.Router))|^  ([a-z]\w*)\([^)]*\)\s*\{",
    )
    .expect("static regex");
    let mut out = Found::new();
    let mut stack = vec![workspace.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || name == "__pycache__" {
                continue;
            }
            let path = e.path();
            let rel = path
                .strip_prefix(workspace)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            let ft = e.file_type()?;
            if ft.is_dir() {
                out.entry("dir").or_default().push(rel);
                stack.push(path);
            } else if ft.is_file() {
                if let Some((_, ext)) = name.rsplit_once('.').filter(|(s, _)| !s.is_empty()) {
                    out.entry("ext").or_default().push(ext.to_string());
                }
                out.entry("file").or_default().push(rel);
                let js = name.ends_with(".js") || name.ends_with(".ts");
                if js && e.metadata()?.len() < 1 << 20 {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    for l in text.lines() {
                        if let Some(c) = js_class.captures(l) {
                            out.entry("class").or_default().push(c[1].to_string());
                        }
                        if let Some(c) = js_func.captures(l) {
                            let f = c
                                .get(1)
                                .or(c.get(2))
                                .or(c.get(3))
                                .map_or("", |m| m.as_str());
                            if !["constructor", "if", "for", "while", "switch"].contains(&f) {
                                out.entry("jsfunction").or_default().push(f.to_string());
                            }
                        }
                    }
                }
                if name.ends_with(".py") && e.metadata()?.len() < 1 << 20 {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    for l in text.lines() {
                        if let Some(c) = class.captures(l) {
                            out.entry("class").or_default().push(c[1].to_string());
                        }
                        if let Some(c) = func.captures(l) {
                            out.entry("function").or_default().push(c[1].to_string());
                        }
                    }
                }
            }
        }
    }
    // `uses` searches for function names.
    let mut words = out.get("function").cloned().unwrap_or_default();
    words.extend(out.get("jsfunction").cloned().unwrap_or_default());
    out.insert("uses", words);
    for v in out.values_mut() {
        let mut seen = BTreeSet::new();
        v.retain(|f| seen.insert(f.clone()));
    }
    Ok(out)
}

/// Whether `text` mentions `name` as a whole word (or path).
pub(super) fn mentions(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !word(before) && !word(after)
    })
}

/// Words that would read as Python, not as names.
const KEYWORDS: &[&str] = &[
    "class", "return", "import", "from", "self", "pass", "with", "async", "await", "lambda",
    "yield", "global", "while", "assert", "raise", "except", "finally", "continue", "break",
    "true", "false", "none", "elif", "else", "print", "def",
];

/// Whole-word tokens of the model's vocabulary (a space and 4–9 lower-case
/// letters, among its first 40,000 tokens: common words), in token order.
pub(super) fn vocabulary_words(tokenizer_json: &[u8]) -> anyhow::Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Model {
        vocab: BTreeMap<String, u32>,
    }
    #[derive(Deserialize)]
    struct Tokenizer {
        model: Model,
    }
    let t: Tokenizer =
        serde_json::from_slice(tokenizer_json).context("the shipped Qwen3 tokenizer.json")?;
    let mut words: Vec<(u32, String)> = t
        .model
        .vocab
        .into_iter()
        .filter(|(_, id)| (300..40_000).contains(id))
        .filter_map(|(tok, id)| {
            let w = tok.strip_prefix('Ġ')?;
            ((4..=9).contains(&w.len())
                && w.bytes().all(|b| b.is_ascii_lowercase())
                && !KEYWORDS.contains(&w))
            .then(|| (id, w.to_string()))
        })
        .collect();
    words.sort();
    Ok(words.into_iter().map(|(_, w)| w).collect())
}

/// How invented names are made (the `[invented]` table of the templates).
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Invented {
    /// Class-name endings ("Serializer", "Manager", …).
    pub class_tails: Vec<String>,
    /// File extensions for invented files.
    pub exts: Vec<String>,
    /// Vocabulary words never used (crude or violent ones).
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// `w` with its first letter in upper case.
pub(super) fn capitalised(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn pick<'a, T>(v: &'a [T], rng: &mut (impl Rng + ?Sized)) -> Option<&'a T> {
    (!v.is_empty()).then(|| &v[rng.random_range(0..v.len())])
}

impl Invented {
    /// A made-up name for a template of `kind` from `words`; files and
    /// directories go under one of `dirs` half the time.
    pub fn name(
        &self,
        kind: &str,
        words: &[String],
        dirs: &[String],
        rng: &mut (impl Rng + ?Sized),
    ) -> Option<String> {
        let w1 = pick(words, rng)?.clone();
        let w2 = pick(words, rng)?.clone();
        let dir = if rng.random_bool(0.5) {
            pick(dirs, rng).cloned()
        } else {
            None
        };
        let under = |leaf: String| match &dir {
            Some(d) => format!("{d}/{leaf}"),
            None => leaf,
        };
        Some(match kind {
            "class" => match pick(&self.class_tails, rng).filter(|_| rng.random_bool(0.5)) {
                Some(tail) => format!("{}{tail}", capitalised(&w1)),
                None => format!("{}{}", capitalised(&w1), capitalised(&w2)),
            },
            "function" => format!("{w1}_{w2}"),
            "jsfunction" => format!("{w1}{}", capitalised(&w2)),
            "uses" if rng.random_bool(0.7) => w1,
            "uses" if rng.random_bool(0.5) => format!("{w1}_{w2}"),
            "uses" => format!("{w1}{}", capitalised(&w2)),
            "file" => {
                let ext = pick(&self.exts, rng).map_or("py", |e| e.as_str());
                let stem = if rng.random_bool(0.5) {
                    w1
                } else {
                    format!("{w1}_{w2}")
                };
                under(format!("{stem}.{ext}"))
            }
            "dir" => under(w1),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn vocabulary_gives_thousands_of_plain_words() {
        let words =
            vocabulary_words(crate::model::checkpoint::tokenizer_files::TOKENIZER_JSON).unwrap();
        assert!(words.len() > 5_000, "{}", words.len());
        assert!(words
            .iter()
            .all(|w| w.bytes().all(|b| b.is_ascii_lowercase())));
        assert!(!words.iter().any(|w| w == "class" || w == "return"));
    }

    #[test]
    fn invented_names_have_the_shape_of_their_kind() {
        let inv = Invented {
            class_tails: vec!["Manager".into()],
            exts: vec!["py".into()],
            exclude: vec![],
        };
        let words: Vec<String> = ["lantern", "harbor", "pickle"].map(String::from).to_vec();
        let dirs = vec!["shop".to_string()];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let class = Regex::new(r"^[A-Z][a-z]+[A-Z][a-z]+$").unwrap();
        let function = Regex::new(r"^[a-z]+_[a-z]+$").unwrap();
        let file = Regex::new(r"^(shop/)?[a-z_]+\.py$").unwrap();
        for _ in 0..50 {
            let c = inv.name("class", &words, &dirs, &mut rng).unwrap();
            assert!(class.is_match(&c), "{c}");
            let f = inv.name("function", &words, &dirs, &mut rng).unwrap();
            assert!(function.is_match(&f), "{f}");
            let j = inv.name("jsfunction", &words, &dirs, &mut rng).unwrap();
            assert!(
                Regex::new(r"^[a-z]+[A-Z][a-z]+$").unwrap().is_match(&j),
                "{j}"
            );
            let p = inv.name("file", &words, &dirs, &mut rng).unwrap();
            assert!(file.is_match(&p), "{p}");
        }
        assert_eq!(inv.name("nothing", &words, &dirs, &mut rng), None);
    }
}
