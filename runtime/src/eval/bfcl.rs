//! The Berkeley Function Calling Leaderboard's files and its AST scoring.
//!
//! Question files are JSON Lines of `{"id", "question": [[{role, content}…]],
//! "function": [{"name", "description", "parameters": {"type": "dict", …}}]}`;
//! answer files of `{"id", "ground_truth": [{"fn": {"param": [acceptable…]}}]}`
//! where `""` among the values means the parameter may be left out. The
//! category comes from the id. Scoring follows BFCL's AST checker: exact call
//! count, function name, required parameters present, no parameter outside
//! the schema and the answer, types (an int is a float, a bool is never an
//! int), strings compared after BFCL's normalisation, list order kept,
//! parallel categories matched in any order, irrelevance passing when no
//! call is made.

use super::Observed;
use anyhow::{bail, Context as _};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What a case's id says it tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// One function, one call.
    Simple,
    /// Several functions, one call to the right one.
    Multiple,
    /// One function, several calls.
    Parallel,
    /// Several functions, several calls.
    ParallelMultiple,
    /// No function fits: no call.
    Irrelevance,
    /// Some function fits: at least one call.
    Relevance,
}

impl Category {
    /// From an id such as `simple_python_3`, `parallel_multiple_7` or
    /// `live_simple_0-0-0`.
    pub fn of(id: &str) -> anyhow::Result<Category> {
        let bare = id.strip_prefix("live_").unwrap_or(id);
        Ok(if bare.starts_with("parallel_multiple") {
            Category::ParallelMultiple
        } else if bare.starts_with("parallel") {
            Category::Parallel
        } else if bare.starts_with("multiple") {
            Category::Multiple
        } else if bare.starts_with("simple") {
            Category::Simple
        } else if bare.starts_with("irrelevance") {
            Category::Irrelevance
        } else if bare.starts_with("relevance") {
            Category::Relevance
        } else {
            bail!("BFCL id {id:?} names no category warden scores (simple, multiple, parallel, parallel_multiple, irrelevance, relevance, and their live_ forms)")
        })
    }

    /// Whether calls are matched in any order and counted exactly.
    fn parallel(self) -> bool {
        matches!(self, Category::Parallel | Category::ParallelMultiple)
    }
}

/// One BFCL case.
#[derive(Debug, Clone)]
pub struct BfclCase {
    /// Its id.
    pub id: String,
    /// From the id.
    pub category: Category,
    /// The conversation (every turn's messages, in order).
    pub messages: Vec<(String, String)>,
    /// The functions, as BFCL writes them.
    pub functions: Vec<Value>,
    /// `[{fn: {param: [acceptable…]}}]`; `None` for irrelevance/relevance.
    pub ground_truth: Option<Vec<Value>>,
}

impl BfclCase {
    /// The functions as tools for a chat template (`"type": "dict"` and
    /// BFCL's type names turned into JSON Schema's).
    pub fn tools(&self) -> Vec<Value> {
        self.functions
            .iter()
            .map(|f| {
                crate::chat::tool_json(
                    f["name"].as_str().unwrap_or_default(),
                    f["description"].as_str().unwrap_or_default(),
                    &json_schema(&f["parameters"]),
                )
            })
            .collect()
    }
}

/// A BFCL parameter schema in JSON Schema's words.
pub fn json_schema(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    let x = match (k.as_str(), x) {
                        ("type", Value::String(t)) => Value::String(
                            match t.as_str() {
                                "dict" => "object",
                                "float" => "number",
                                "tuple" => "array",
                                "any" => "string",
                                other => other,
                            }
                            .into(),
                        ),
                        // Property names are data, not schema keywords.
                        ("properties", Value::Object(p)) => Value::Object(
                            p.iter().map(|(n, s)| (n.clone(), json_schema(s))).collect(),
                        ),
                        _ => json_schema(x),
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(json_schema).collect()),
        other => other.clone(),
    }
}

/// Reads a question file and its answers: `answers`, or the file of the
/// same name in `possible_answer/` beside the questions when there is one.
pub fn load(questions: &Path, answers: Option<&Path>) -> anyhow::Result<Vec<BfclCase>> {
    let default = questions
        .parent()
        .zip(questions.file_name())
        .map(|(d, f)| d.join("possible_answer").join(f))
        .filter(|p| p.exists());
    let answers: Option<PathBuf> = answers.map(Path::to_path_buf).or(default);
    let mut truth: HashMap<String, Vec<Value>> = HashMap::new();
    if let Some(a) = &answers {
        for (n, v) in json_lines(a)? {
            let id = v["id"]
                .as_str()
                .with_context(|| format!("{}:{n}: no id", a.display()))?;
            let gt = v["ground_truth"]
                .as_array()
                .with_context(|| format!("{}:{n}: no ground_truth list", a.display()))?;
            truth.insert(id.to_string(), gt.clone());
        }
    }
    let mut out = Vec::new();
    for (n, v) in json_lines(questions)? {
        let at = || format!("{}:{n}", questions.display());
        let id = v["id"]
            .as_str()
            .with_context(|| format!("{}: no id", at()))?
            .to_string();
        let category = Category::of(&id).with_context(at)?;
        let mut messages = Vec::new();
        for turn in v["question"]
            .as_array()
            .with_context(|| format!("{}: question must be a list of turns", at()))?
        {
            for m in turn
                .as_array()
                .with_context(|| format!("{}: a turn must be a list of messages", at()))?
            {
                let role = m["role"]
                    .as_str()
                    .with_context(|| format!("{}: a message has no role", at()))?;
                let content = m["content"].as_str().unwrap_or_default();
                messages.push((role.to_string(), content.to_string()));
            }
        }
        let functions = v["function"]
            .as_array()
            .with_context(|| format!("{}: function must be a list", at()))?
            .clone();
        let ground_truth = match category {
            Category::Irrelevance | Category::Relevance => None,
            _ => Some(truth.remove(&id).with_context(|| match &answers {
                Some(a) => format!("{}: {id} has no ground truth in {}", at(), a.display()),
                None => format!(
                        "{}: no answer file; pass --answers (BFCL's possible_answer/{})",
                        at(),
                        questions
                            .file_name()
                            .map(|f| f.to_string_lossy())
                            .unwrap_or_default()
                    ),
            })?),
        };
        out.push(BfclCase {
            id,
            category,
            messages,
            functions,
            ground_truth,
        });
    }
    Ok(out)
}

fn json_lines(path: &Path) -> anyhow::Result<Vec<(usize, Value)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map(|v| (i + 1, v))
                .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))
        })
        .collect()
}

/// Why a BFCL case failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A call could not be decoded.
    Malformed,
    /// Not the number of calls the answer has.
    WrongCount,
    /// A function the answer does not call.
    WrongName,
    /// A required parameter is missing.
    MissingRequired,
    /// A parameter outside the schema or the answer.
    UnexpectedParameter,
    /// A value of the wrong type.
    WrongType,
    /// A value outside the acceptable ones.
    WrongValue,
    /// A parameter left out that the answer needs.
    MissingOptional,
    /// A call where none is relevant.
    IrrelevantCall,
    /// No call where one is relevant.
    NoCall,
}

/// A case's result.
#[derive(Debug, Clone, PartialEq)]
pub struct BfclScore {
    /// Passed.
    pub passed: bool,
    /// The right functions were called (names and count), when calls were due.
    pub tool_ok: bool,
    /// Why not.
    pub reason: Option<Reason>,
    /// Details, for people.
    pub detail: String,
}

/// Scores the calls a model made for `case`.
pub fn score(case: &BfclCase, calls: &[Observed]) -> BfclScore {
    let fail = |reason, detail: String, tool_ok| BfclScore {
        passed: false,
        tool_ok,
        reason: Some(reason),
        detail,
    };
    let pass = BfclScore {
        passed: true,
        tool_ok: true,
        reason: None,
        detail: String::new(),
    };
    if let Some(bad) = calls.iter().find(|c| !c.parsed) {
        return fail(
            Reason::Malformed,
            format!("a call could not be decoded: {}", bad.raw),
            false,
        );
    }
    match case.category {
        Category::Irrelevance => {
            return if calls.is_empty() {
                pass
            } else {
                fail(
                    Reason::IrrelevantCall,
                    format!("{} call(s) where no function is relevant", calls.len()),
                    false,
                )
            };
        }
        Category::Relevance => {
            return if calls.is_empty() {
                fail(
                    Reason::NoCall,
                    "no call where a function is relevant".into(),
                    false,
                )
            } else {
                pass
            };
        }
        _ => {}
    }
    let truth = case.ground_truth.as_deref().unwrap_or_default();
    if calls.len() != truth.len() {
        return fail(
            Reason::WrongCount,
            format!("{} call(s); the answer has {}", calls.len(), truth.len()),
            false,
        );
    }
    let expected: Vec<(&str, &Map<String, Value>)> = truth
        .iter()
        .filter_map(|gt| gt.as_object()?.iter().next())
        .filter_map(|(name, params)| Some((name.as_str(), params.as_object()?)))
        .collect();
    let names_ok = {
        let mut want: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
        let mut got: Vec<&str> = calls.iter().filter_map(|c| c.tool.as_deref()).collect();
        want.sort_unstable();
        got.sort_unstable();
        want == got
    };
    if !case.category.parallel() {
        return match check_call(case, expected[0].0, expected[0].1, &calls[0])
            .into_iter()
            .next()
        {
            None => pass,
            Some((r, d)) => fail(r, d, names_ok),
        };
    }
    if !names_ok {
        let got: Vec<&str> = calls.iter().filter_map(|c| c.tool.as_deref()).collect();
        let want: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
        return fail(
            Reason::WrongName,
            format!("called {got:?}, the answer calls {want:?}"),
            false,
        );
    }
    // Order-free: a maximum matching of answer calls to model calls that
    // pass them; when it is not complete, the nearest unmatched pair (fewest
    // problems) says why.
    let errors: Vec<Vec<Vec<(Reason, String)>>> = expected
        .iter()
        .map(|(name, params)| {
            calls
                .iter()
                .map(|c| check_call(case, name, params, c))
                .collect()
        })
        .collect();
    let ok: Vec<Vec<bool>> = errors
        .iter()
        .map(|row| row.iter().map(Vec::is_empty).collect())
        .collect();
    let mut owner: Vec<Option<usize>> = vec![None; calls.len()];
    for e in 0..expected.len() {
        augment(e, &ok, &mut vec![false; calls.len()], &mut owner);
    }
    let matched_e: Vec<bool> = (0..expected.len())
        .map(|e| owner.contains(&Some(e)))
        .collect();
    let nearest = (0..expected.len())
        .filter(|&e| !matched_e[e])
        .flat_map(|e| {
            (0..calls.len())
                .filter(|&c| owner[c].is_none())
                .map(move |c| (e, c))
        })
        .min_by_key(|&(e, c)| errors[e][c].len());
    match nearest {
        None => pass,
        Some((e, c)) => {
            let (r, d) = errors[e][c][0].clone();
            fail(r, format!("for {}: {d}", expected[e].0), names_ok)
        }
    }
}

/// Kuhn's augmenting path: tries to give answer call `e` a model call.
fn augment(e: usize, ok: &[Vec<bool>], seen: &mut [bool], owner: &mut [Option<usize>]) -> bool {
    for c in 0..owner.len() {
        if ok[e][c] && !seen[c] {
            seen[c] = true;
            if owner[c].is_none_or(|other| augment(other, ok, seen, owner)) {
                owner[c] = Some(e);
                return true;
            }
        }
    }
    false
}

/// BFCL's simple-function check of one call against one answer entry:
/// every problem, in the order BFCL checks (name, required parameters,
/// each parameter's presence in schema and answer, type, value, then
/// parameters left out); empty when the call passes.
fn check_call(
    case: &BfclCase,
    name: &str,
    answer: &Map<String, Value>,
    call: &Observed,
) -> Vec<(Reason, String)> {
    let got_name = call.tool.as_deref().unwrap_or_default();
    if got_name != name {
        return vec![(
            Reason::WrongName,
            format!("called {got_name:?}, the answer calls {name:?}"),
        )];
    }
    let Some(func) = case.functions.iter().find(|f| f["name"] == name) else {
        return vec![(
            Reason::WrongName,
            format!("{name} is not among the case's functions"),
        )];
    };
    let mut errors = Vec::new();
    let props = func["parameters"]["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let args = &call.arguments;
    for req in func["parameters"]["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !args.contains_key(req) {
            errors.push((
                Reason::MissingRequired,
                format!("required parameter {req} is missing"),
            ));
        }
    }
    for (k, v) in args {
        let (Some(schema), Some(acceptable)) = (props.get(k), answer.get(k)) else {
            errors.push((
                Reason::UnexpectedParameter,
                format!("parameter {k} is not in the schema or the answer"),
            ));
            continue;
        };
        let ty = schema["type"].as_str().unwrap_or("any");
        let acceptable = acceptable.as_array().map(Vec::as_slice).unwrap_or_default();
        if !type_ok(ty, v, &schema["items"], acceptable) {
            errors.push((Reason::WrongType, format!("{k} = {v} is not of type {ty}")));
            continue;
        }
        if !value_ok(v, acceptable) {
            errors.push((
                Reason::WrongValue,
                format!(
                    "{k} = {v} is not one of {}",
                    Value::from(acceptable.to_vec())
                ),
            ));
        }
    }
    for (k, acceptable) in answer {
        let optional = acceptable
            .as_array()
            .is_some_and(|a| a.contains(&Value::String(String::new())));
        if !args.contains_key(k) && !optional {
            let required = func["parameters"]["required"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == k.as_str()));
            if !required {
                errors.push((
                    Reason::MissingOptional,
                    format!("parameter {k} is left out but the answer needs it"),
                ));
            }
        }
    }
    // The most basic problem first.
    errors.sort_by_key(|(r, _)| *r as u8);
    errors
}

/// The kind of a JSON value as Python's `type()` would tell it.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "none",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// BFCL's type check: the schema's type (an int passes for a float; a bool
/// never for an int), or, as BFCL allows for variables and for answers that
/// disagree with their schema, the type of the answer's own values. Lists
/// are checked element by element against `items`.
fn type_ok(ty: &str, v: &Value, items: &Value, acceptable: &[Value]) -> bool {
    let answer_kind = acceptable.iter().find(|a| *a != "").map(kind);
    let schema_ok = match ty {
        "integer" => kind(v) == "int",
        "float" | "number" => v.is_number(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "dict" | "object" => v.is_object(),
        "array" | "tuple" => match (v.as_array(), items["type"].as_str()) {
            (Some(elems), Some(t)) => {
                let lists: Vec<&[Value]> = acceptable
                    .iter()
                    .filter_map(|a| a.as_array().map(Vec::as_slice))
                    .collect();
                if lists.is_empty() {
                    elems.iter().all(|x| type_ok(t, x, &items["items"], &[]))
                } else {
                    lists
                        .iter()
                        .any(|a| elems.iter().all(|x| type_ok(t, x, &items["items"], a)))
                }
            }
            (Some(_), None) => true,
            (None, _) => false,
        },
        _ => true,
    };
    schema_ok || answer_kind == Some(kind(v))
}

/// BFCL's string normalisation: spaces and `, . / - _ * ^` removed,
/// lower case, `'` as `"`.
pub fn normalise(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, ' ' | ',' | '.' | '/' | '-' | '_' | '*' | '^'))
        .flat_map(char::to_lowercase)
        .map(|c| if c == '\'' { '"' } else { c })
        .collect()
}

/// Whether `v` equals one of the acceptable values: strings after
/// normalisation, numbers by value, lists in order, dicts key by key
/// against an answer dict whose values are themselves lists of acceptable
/// values.
fn value_ok(v: &Value, acceptable: &[Value]) -> bool {
    acceptable.iter().any(|a| equal(v, a))
}

fn equal(v: &Value, a: &Value) -> bool {
    match (v, a) {
        (Value::String(x), Value::String(y)) => normalise(x) == normalise(y),
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            // The answer's dict holds lists of acceptable values per key.
            let answer_style = y.values().all(Value::is_array);
            if answer_style {
                x.keys().all(|k| y.contains_key(k))
                    && y.iter().all(|(k, vals)| {
                        let vals = vals.as_array().map(Vec::as_slice).unwrap_or_default();
                        match x.get(k) {
                            Some(got) => value_ok(got, vals),
                            None => vals.contains(&Value::String(String::new())),
                        }
                    })
            } else {
                x.len() == y.len() && x.iter().all(|(k, p)| y.get(k).is_some_and(|q| equal(p, q)))
            }
        }
        _ => v == a,
    }
}

/// A model output that makes exactly the answer's calls (the first
/// acceptable value of each parameter; optional ones whose first value is
/// `""` left out), as Hermes
/// `<tool_call>` blocks: what a perfect model would write.
pub fn perfect_output(case: &BfclCase) -> String {
    let Some(truth) = &case.ground_truth else {
        return "None of the functions fits this request.".into();
    };
    truth
        .iter()
        .filter_map(|gt| gt.as_object()?.iter().next())
        .map(|(name, params)| {
            let func = case.functions.iter().find(|f| f["name"] == name.as_str());
            let required = |k: &str| {
                func.and_then(|f| f["parameters"]["required"].as_array())
                    .is_some_and(|r| r.iter().any(|x| x == k))
            };
            // BFCL's data has answers naming a parameter the schema lacks;
            // a call with it would fail BFCL's own check.
            let in_schema =
                |k: &str| func.is_some_and(|f| f["parameters"]["properties"].get(k).is_some());
            let args: Map<String, Value> = params
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| in_schema(k))
                .filter_map(|(k, vals)| {
                    // A required parameter whose answer also allows leaving
                    // it out (BFCL's data has some) gets its first value.
                    let v = if required(k) {
                        vals.as_array()?.iter().find(|v| *v != "").map(build)
                    } else {
                        first_value(vals)
                    };
                    Some((k.clone(), v?))
                })
                .collect();
            format!(
                "<tool_call>\n{}\n</tool_call>",
                serde_json::json!({"name": name, "arguments": args})
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first acceptable value of an answer list (`None`: leave it out).
fn first_value(vals: &Value) -> Option<Value> {
    let first = vals.as_array()?.first()?;
    match first {
        Value::String(s) if s.is_empty() => None,
        other => Some(build(other)),
    }
}

/// An answer-style value (dicts of lists of acceptable values) made concrete.
fn build(v: &Value) -> Value {
    match v {
        Value::Object(o) if o.values().all(Value::is_array) => Value::Object(
            o.iter()
                .filter_map(|(k, vals)| Some((k.clone(), first_value(vals)?)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(build).collect()),
        other => other.clone(),
    }
}
