//! Keeping secrets out of logs: the values of environment variables passed
//! to tools, wherever they appear in text the log keeps, and argument
//! values whose keys look like secrets.

use serde_json::Value;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Key fragments that mark an argument as a secret.
const SECRET_KEYS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "authorization",
];

/// Shortest environment value redacted (shorter ones would blank out
/// ordinary words).
const MIN_SECRET_LEN: usize = 4;

/// Redacts a session's secrets.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    values: Vec<String>,
}

impl Redactor {
    /// Redacts `values` (environment values passed to tools) in text.
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut values: Vec<String> = values
            .into_iter()
            .filter(|v| v.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a value that contains another goes whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Redactor { values }
    }

    /// `text` with every secret value replaced.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), REDACTED);
            }
        }
        out
    }

    /// The string values held under secret-looking keys in `value` (to
    /// redact them also where the same value appears as raw text).
    pub fn secret_values(value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        collect(value, false, &mut out);
        out
    }

    /// `text` with every secret value, and each of `extra`, replaced.
    pub fn text_with(&self, text: &str, extra: &[String]) -> String {
        let mut out = self.text(text);
        for v in extra.iter().filter(|v| v.len() >= MIN_SECRET_LEN) {
            out = out.replace(v.as_str(), REDACTED);
        }
        out
    }

    /// A JSON value with secret-looking keys' values and secret values in
    /// strings replaced.
    pub fn json(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(a) => Value::Array(a.iter().map(|v| self.json(v)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        let v = if is_secret_key(k) {
                            Value::String(REDACTED.into())
                        } else {
                            self.json(v)
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

fn is_secret_key(k: &str) -> bool {
    let lower = k.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| lower.contains(s))
}

fn collect(v: &Value, secret: bool, out: &mut Vec<String>) {
    match v {
        Value::String(s) if secret => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect(x, secret, out)),
        Value::Object(m) => m
            .iter()
            .for_each(|(k, x)| collect(x, secret || is_secret_key(k), out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_and_secret_keys() {
        let r = Redactor::new(["ghp_abcdef123".to_string(), "en".to_string()]);
        assert_eq!(
            r.text("token ghp_abcdef123 in en"),
            "token [redacted] in en"
        );
        assert_eq!(
            r.json(&json!({"url": "x?k=ghp_abcdef123", "API_Key": "k", "headers": {"Authorization": "Bearer z"}, "n": 1})),
            json!({"url": "x?k=[redacted]", "API_Key": "[redacted]", "headers": {"Authorization": "[redacted]"}, "n": 1})
        );
    }
}
