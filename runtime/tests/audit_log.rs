//! The audit log's chain: tampering is always caught; a crash is told apart
//! from tampering; only the keyed chain catches a log rewritten whole.

mod common;

use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use warden::audit::{self, AuditKey, AuditLog, ProblemKind};

/// A finished log of `n` middle records (plus start and end).
fn write_log(dir: &Path, name: &str, n: usize, key: Option<AuditKey>) -> PathBuf {
    let path = dir.join(name);
    let mut log = AuditLog::create(&path, "sess-1", key).unwrap();
    log.append("session_start", Map::new()).unwrap();
    for i in 0..n {
        let mut m = Map::new();
        m.insert("turn".into(), json!(i));
        m.insert(
            "output".into(),
            json!(format!("text {i} with \"quotes\" é")),
        );
        log.append("generation", m).unwrap();
    }
    log.append("session_end", Map::new()).unwrap();
    path
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn write_lines(p: &Path, lines: &[String]) {
    std::fs::write(
        p,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

fn problem(p: &Path, key: Option<&AuditKey>) -> Option<ProblemKind> {
    audit::verify(p, key).unwrap().problem.map(|p| p.kind)
}

#[test]
fn an_intact_log_verifies_and_records_are_chained() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_log(dir.path(), "a.jsonl", 3, None);
    let v = audit::verify(&p, None).unwrap();
    assert!(v.problem.is_none(), "{:?}", v.problem);
    assert_eq!(v.records, 5);
    let ls = lines(&p);
    let first: Value = serde_json::from_str(&ls[0]).unwrap();
    assert_eq!(first["seq"], 0);
    assert_eq!(first["prev"], audit::sha256_hex(b"sess-1"));
    for k in ["seq", "type", "session_id", "ts", "prev"] {
        assert!(first.get(k).is_some(), "{k}");
    }
    let second: Value = serde_json::from_str(&ls[1]).unwrap();
    assert_eq!(second["prev"], audit::sha256_hex(ls[0].as_bytes()));
    assert!(first["ts"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn every_kind_of_tampering_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_log(dir.path(), "a.jsonl", 4, None);
    let orig = lines(&p);
    let t = dir.path().join("t.jsonl");
    // Edit one byte, anywhere in any line (keeping it valid JSON where
    // possible: a digit or a letter in the text).
    for (i, line) in orig.iter().enumerate() {
        for (pos, _) in line
            .char_indices()
            .filter(|(_, c)| c.is_ascii_alphanumeric())
            .step_by(7)
        {
            let mut ls = orig.clone();
            let mut bytes = ls[i].clone().into_bytes();
            bytes[pos] = if bytes[pos] == b'1' { b'2' } else { b'1' };
            ls[i] = String::from_utf8(bytes).unwrap();
            write_lines(&t, &ls);
            assert!(
                problem(&t, None).is_some(),
                "edit line {} byte {pos} not detected",
                i + 1
            );
        }
    }
    // Delete any line.
    for i in 0..orig.len() {
        let mut ls = orig.clone();
        ls.remove(i);
        write_lines(&t, &ls);
        let k = problem(&t, None);
        assert!(k.is_some(), "deleting line {} not detected", i + 1);
    }
    // Swap two adjacent lines.
    for i in 0..orig.len() - 1 {
        let mut ls = orig.clone();
        ls.swap(i, i + 1);
        write_lines(&t, &ls);
        assert_eq!(
            problem(&t, None),
            Some(ProblemKind::Reordered),
            "swap {}",
            i + 1
        );
    }
    // Insert a copy of a line, and a forged one.
    for i in 1..orig.len() {
        let mut ls = orig.clone();
        ls.insert(i, orig[i - 1].clone());
        write_lines(&t, &ls);
        assert_eq!(
            problem(&t, None),
            Some(ProblemKind::Inserted),
            "insert at {i}"
        );
    }
    let mut ls = orig.clone();
    ls.insert(
        2,
        r#"{"seq":2,"type":"generation","session_id":"sess-1"}"#.into(),
    );
    write_lines(&t, &ls);
    assert!(problem(&t, None).is_some());
    // Deleting a middle line is named as such.
    let mut ls = orig.clone();
    ls.remove(2);
    write_lines(&t, &ls);
    assert_eq!(problem(&t, None), Some(ProblemKind::Deleted));
    // Truncation: whole records, or in the middle of one.
    let text = std::fs::read_to_string(&p).unwrap();
    for cut in [text.len() - 1, text.len() - 20, text.len() / 2, 10] {
        std::fs::write(&t, &text[..cut]).unwrap();
        assert_eq!(
            problem(&t, None),
            Some(ProblemKind::NotEnded),
            "cut at {cut}"
        );
    }
}

#[test]
fn only_the_keyed_chain_catches_a_log_rewritten_whole() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("k");
    std::fs::write(&key_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let key = AuditKey::from_file(&key_file).unwrap();
    let p = write_log(dir.path(), "keyed.jsonl", 2, Some(key.clone()));
    assert_eq!(problem(&p, Some(&key)), None);
    let v = audit::verify(&p, None).unwrap();
    assert!(v.keyed && !v.hmac_checked && v.problem.is_none());

    // An attacker without the key rewrites everything: a new plain log
    // with forged content and every hash recomputed.
    let forged = {
        let q = dir.path().join("forged.jsonl");
        let mut log = AuditLog::create(&q, "sess-1", None).unwrap();
        log.append("session_start", Map::new()).unwrap();
        let mut m = Map::new();
        m.insert("output".into(), json!("nothing happened"));
        log.append("generation", m).unwrap();
        log.append("session_end", Map::new()).unwrap();
        q
    };
    assert_eq!(problem(&forged, None), None, "the plain chain cannot tell");
    assert_eq!(problem(&forged, Some(&key)), Some(ProblemKind::BadHmac));
    // A different key also fails.
    std::fs::write(&key_file, "another key of enough length!!").unwrap();
    let other = AuditKey::from_file(&key_file).unwrap();
    assert_eq!(problem(&p, Some(&other)), Some(ProblemKind::BadHmac));
    // Short keys are refused.
    std::fs::write(&key_file, "short").unwrap();
    assert!(AuditKey::from_file(&key_file).is_err());
}

#[test]
fn a_log_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_log(dir.path(), "a.jsonl", 1, None);
    assert!(AuditLog::create(&p, "again", None).is_err());
}

/// Replaces the last `"},` cut of line `i` (from `tag`) with a run of
/// two-byte characters, shifted by `shift` ASCII bytes, so the verifier's
/// cut at a fixed length from the end falls inside a character.
fn multibyte_at_cut(p: &Path, i: usize, tag: &str, shift: usize) {
    let mut ls = lines(p);
    let at = ls[i].rfind(tag).unwrap();
    ls[i] = format!(
        "{},\"x\":\"{}{}\"}}",
        &ls[i][..at],
        "a".repeat(shift),
        "é".repeat(60)
    );
    write_lines(p, &ls);
}

#[test]
fn a_multibyte_character_at_the_digest_or_hmac_cut_is_an_edit_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("k");
    std::fs::write(&key_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let key = AuditKey::from_file(&key_file).unwrap();
    for shift in 0..2 {
        let p = write_log(dir.path(), &format!("d{shift}.jsonl"), 2, None);
        multibyte_at_cut(&p, 1, ",\"digest\":\"", shift);
        assert_eq!(
            problem(&p, None),
            Some(ProblemKind::Edited),
            "shift {shift}"
        );
        let p = write_log(dir.path(), &format!("h{shift}.jsonl"), 2, Some(key.clone()));
        multibyte_at_cut(&p, 1, ",\"hmac\":\"", shift);
        assert_eq!(
            problem(&p, None),
            Some(ProblemKind::Edited),
            "shift {shift}"
        );
        assert!(problem(&p, Some(&key)).is_some(), "shift {shift}");
    }
}

#[test]
fn invalid_utf8_in_place_of_a_stored_replacement_character_is_an_edit() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("k");
    std::fs::write(&key_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let key = AuditKey::from_file(&key_file).unwrap();
    for keyed in [None, Some(key.clone())] {
        let path = dir.path().join(format!("fffd-{}.jsonl", keyed.is_some()));
        let mut log = AuditLog::create(&path, "sess-1", keyed.clone()).unwrap();
        log.append("session_start", Map::new()).unwrap();
        let mut m = Map::new();
        m.insert("output".into(), json!("before \u{FFFD} after"));
        log.append("generation", m).unwrap();
        log.append("session_end", Map::new()).unwrap();
        drop(log);
        assert_eq!(problem(&path, keyed.as_ref()), None);
        let bytes = std::fs::read(&path).unwrap();
        let fffd = "\u{FFFD}".as_bytes();
        let at = bytes.windows(3).position(|w| w == fffd).unwrap();
        let mut swapped = bytes[..at].to_vec();
        swapped.push(0xFF);
        swapped.extend_from_slice(&bytes[at + 3..]);
        std::fs::write(&path, swapped).unwrap();
        assert_eq!(problem(&path, None), Some(ProblemKind::Edited));
        assert!(problem(&path, Some(&key)).is_some());
    }
}

/// `docs/audit-log.schema.json` is generated from the record types
/// (`WARDEN_WRITE_SCHEMA=1` rewrites it), and the demo's log validates.
#[test]
fn the_shipped_schema_is_the_record_types_and_the_demo_log_validates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let file = root.join("docs/audit-log.schema.json");
    let schema = serde_json::to_string_pretty(&warden::audit::record::log_schema()).unwrap() + "\n";
    if std::env::var_os("WARDEN_WRITE_SCHEMA").is_some() {
        std::fs::write(&file, &schema).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_default(),
        schema,
        "docs/audit-log.schema.json is stale: rerun with WARDEN_WRITE_SCHEMA=1"
    );
    common::assert_log_matches_schema(&root.join("examples/sessions/demo.jsonl"));
    // A log missing a required field does not validate.
    let v: Value = serde_json::from_str(
        std::fs::read_to_string(root.join("examples/sessions/demo.jsonl"))
            .unwrap()
            .lines()
            .nth(2)
            .unwrap(),
    )
    .unwrap();
    let schema: Value = serde_json::from_str(&schema).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(validator.is_valid(&v));
    let mut broken = v.clone();
    broken.as_object_mut().unwrap().remove("seq");
    assert!(!validator.is_valid(&broken));
}
