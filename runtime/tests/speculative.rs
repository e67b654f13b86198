//! Speculative decoding by prompt lookup: greedy output identical to plain
//! decoding, drafts recorded, the cache left as plain decoding leaves it.

use candle_core::{DType, Device};
use std::path::Path;
use std::process::Command;
use warden::model::{
    generate_ids, generate_ids_drafted, generate_ids_with, LoadedModel, SamplingParams, Speculative,
};

fn synth(dir: &Path) {
    synth_seed(dir, "5");
}

fn synth_seed(dir: &Path, seed: &str) {
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["synth", "--shape", "tiny", "--gguf", "q8_0", "--seed", seed])
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A prompt that quotes itself: what a model asked to repeat a tool result
/// sees.
fn prompt(m: &LoadedModel) -> Vec<u32> {
    let text = "fn main() { let total = items.iter().map(|x| x.price).sum(); } \
                fn main() { let total = items.iter().map(|x| x.price).sum(); } \
                fn main() { let total";
    m.tokenizer
        .as_ref()
        .unwrap()
        .encode(text, false)
        .unwrap()
        .get_ids()
        .to_vec()
}

#[test]
fn lookup_gives_plain_decodings_greedy_tokens_and_leaves_the_same_cache() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    let mut drafted = 0;
    let mut accepted = 0;
    for model in [dir.path().to_path_buf(), dir.path().join("model-q8_0.gguf")] {
        let mut m = LoadedModel::load(
            model.to_str().unwrap(),
            &Device::Cpu,
            Some(DType::F32),
            false,
        )
        .unwrap();
        let ids = prompt(&m);
        for params in [
            SamplingParams::default(),
            // Penalties depend on the tokens kept so far: verification must
            // see exactly those.
            SamplingParams {
                repetition_penalty: 1.3,
                presence_penalty: 0.5,
                ..SamplingParams::default()
            },
        ] {
            for max_tokens in [1, 7, 48] {
                m.model.clear_cache();
                let (plain, plain_finish, t) =
                    generate_ids(&mut m.model, &ids, max_tokens, &params, |_| true).unwrap();
                assert_eq!(t.drafted_tokens, 0);
                let plain_cache = m.model.cached_tokens().to_vec();
                m.model.clear_cache();
                let lookup = SamplingParams {
                    speculative: Speculative::Lookup,
                    ..params.clone()
                };
                let (fast, fast_finish, t) =
                    generate_ids(&mut m.model, &ids, max_tokens, &lookup, |_| true).unwrap();
                assert_eq!(
                    fast,
                    plain,
                    "{} {params:?} max {max_tokens}",
                    model.display()
                );
                assert_eq!(fast_finish, plain_finish);
                assert_eq!(m.model.cached_tokens(), &plain_cache[..]);
                assert!(t.accepted_tokens <= t.drafted_tokens);
                assert!(t.drafted_tokens <= 8 * fast.len());
                drafted += t.drafted_tokens;
                accepted += t.accepted_tokens;
                // Adversarial drafts: plain decoding's own continuation with
                // one token in four wrong, of varying lengths, so that runs
                // of accepted drafts end in rejections everywhere.
                let mut seed = 0x9e37_79b9u64 ^ max_tokens as u64;
                let mut rnd = move || {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 33) as usize
                };
                let truth = plain.clone();
                let n_prompt = ids.len();
                let mut drafter = |ctx: &[u32], most: usize| -> anyhow::Result<Vec<u32>> {
                    let done = ctx.len() - n_prompt;
                    let len = (rnd() % 9).min(most);
                    Ok((0..len)
                        .map(|k| match truth.get(done + k) {
                            Some(&t) if rnd() % 4 != 0 => t,
                            _ => (rnd() % 150_000) as u32,
                        })
                        .collect())
                };
                m.model.clear_cache();
                let (adv, adv_finish, ta) = generate_ids_drafted(
                    &mut m.model,
                    &ids,
                    max_tokens,
                    &params,
                    &mut drafter,
                    |_| true,
                )
                .unwrap();
                assert_eq!(
                    adv, plain,
                    "adversarial drafts, {params:?} max {max_tokens}"
                );
                assert_eq!(adv_finish, plain_finish);
                assert_eq!(m.model.cached_tokens(), &plain_cache[..]);
                if max_tokens > 8 {
                    assert!(
                        ta.accepted_tokens > 0 && ta.accepted_tokens < ta.drafted_tokens,
                        "{ta:?}"
                    );
                }
                // Reusing that cache for a longer prompt gives the same
                // tokens as a cold start.
                let mut longer = ids.clone();
                longer.extend_from_slice(&fast);
                let (warm, _, tw) =
                    generate_ids(&mut m.model, &longer, 5, &lookup, |_| true).unwrap();
                assert!(tw.reused_tokens > 0);
                m.model.clear_cache();
                let (cold, _, _) =
                    generate_ids(&mut m.model, &longer, 5, &params, |_| true).unwrap();
                assert_eq!(warm, cold);
            }
        }
        // A stop by the callback in the middle of a run of drafts.
        m.model.clear_cache();
        let lookup = SamplingParams {
            speculative: Speculative::Lookup,
            ..SamplingParams::default()
        };
        let mut n = 0;
        let (out, _, _) = generate_ids(&mut m.model, &ids, 48, &lookup, |_| {
            n += 1;
            n < 10
        })
        .unwrap();
        assert_eq!(out.len(), 10);
        assert_eq!(m.model.cached_tokens().len(), ids.len() + 9);
    }
    // The prompt quotes itself, so drafts were made and some were right.
    assert!(
        drafted > 0 && accepted > 0,
        "{drafted} drafted, {accepted} accepted"
    );
}

#[test]
fn generate_json_records_drafted_and_accepted_tokens() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    let run = |spec: &str| -> serde_json::Value {
        let o = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["generate", "--model"])
            .arg(dir.path())
            .args([
                "--prompt",
                "a b c d e f g a b c d e f g a b c",
                "--max-tokens",
                "24",
                "--json",
                "--speculative",
                spec,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let plain = run("off");
    let fast = run("lookup");
    assert_eq!(plain["tokens"], fast["tokens"]);
    assert!(plain["timings"].get("drafted_tokens").is_none());
    assert!(fast["timings"]["drafted_tokens"].as_u64().unwrap() > 0);
    assert!(fast["timings"]["accepted_tokens"].as_u64().is_some());
    // Unknown modes are refused with what to use instead.
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["generate", "--model"])
        .arg(dir.path())
        .args(["--prompt", "a", "--speculative", "fast"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("use lookup, draft or off"));
}

#[test]
fn a_draft_model_changes_nothing_but_the_speed() {
    let dir = tempfile::tempdir().unwrap();
    let (target, same, other) = (
        dir.path().join("t"),
        dir.path().join("t"),
        dir.path().join("o"),
    );
    synth_seed(&target, "5");
    synth_seed(&other, "6");
    let load = |p: &Path| {
        LoadedModel::load(p.to_str().unwrap(), &Device::Cpu, Some(DType::F32), false).unwrap()
    };
    let mut m = load(&target);
    let ids = prompt(&m);
    let params = SamplingParams::default();
    let (plain, _, _) = generate_ids(&mut m.model, &ids, 40, &params, |_| true).unwrap();
    let plain_cache = m.model.cached_tokens().to_vec();
    let draft = SamplingParams {
        speculative: Speculative::Draft,
        ..params.clone()
    };
    // Without a draft model: refused, saying what to add.
    let e = generate_ids_with(&mut m.model, None, &ids, 40, &draft, |_| true).unwrap_err();
    assert!(e.to_string().contains("--draft-model"), "{e}");
    for (d, all_right) in [(&same, true), (&other, false)] {
        m.attach_draft(d.to_str().unwrap(), false).unwrap();
        m.model.clear_cache();
        let (mut dm, _) = m.draft.take().unwrap();
        let (out, _, t) =
            generate_ids_with(&mut m.model, Some(&mut dm), &ids, 40, &draft, |_| true).unwrap();
        assert_eq!(out, plain, "draft {}", d.display());
        assert_eq!(m.model.cached_tokens(), &plain_cache[..]);
        assert!(t.drafted_tokens > 0, "{t:?}");
        if all_right {
            // The target drafting for itself: the drafts are right (one
            // token at a time and nine at once may round a near tie apart).
            assert!(t.accepted_tokens * 10 >= t.drafted_tokens * 9, "{t:?}");
        }
    }
    // Through the CLI: --draft-model alone means draft, and the timings say
    // what was drafted.
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["generate", "--model"])
        .arg(&target)
        .arg("--draft-model")
        .arg(&other)
        .args([
            "--prompt",
            "a b c d a b c d",
            "--max-tokens",
            "16",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["timings"]["drafted_tokens"].as_u64().unwrap() > 0, "{v}");
    // eval: every model variant drafts with it; the variants' logs say so.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(repo)
        .args([
            "eval",
            "--suite",
            "examples/evals/code-search.toml",
            "--limit",
            "2",
        ])
        .args(["--max-tokens", "24", "--variant"])
        .arg(format!("t={}", target.display()))
        .arg("--draft-model")
        .arg(&other)
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .arg("--json")
        .arg(dir.path().join("eval.json"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("eval.json")).unwrap()).unwrap();
    let log = std::fs::read_to_string(v["variants"][0]["log"].as_str().unwrap()).unwrap();
    assert!(
        log.contains("\"draft_model\""),
        "no draft model in the eval log"
    );
    assert!(
        log.contains("\"drafted_tokens\""),
        "no drafts in the eval log"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["generate", "--model"])
        .arg(&target)
        .args(["--prompt", "a", "--speculative", "draft"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("add --draft-model PATH"));
}

#[test]
fn a_draft_model_with_another_tokenizer_or_mode_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (target, odd) = (dir.path().join("t"), dir.path().join("odd"));
    synth_seed(&target, "5");
    synth_seed(&odd, "6");
    // The same vocabulary size, but "main" is now one added token: the
    // draft would tokenize the context differently.
    let path = odd.join("tokenizer.json");
    let mut tok: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let added = tok["added_tokens"].as_array_mut().unwrap();
    let mut extra = added[added.len() - 1].clone();
    extra["content"] = "main".into();
    extra["special"] = false.into();
    added.pop();
    added.push(extra);
    std::fs::write(&path, serde_json::to_vec(&tok).unwrap()).unwrap();
    let mut m = LoadedModel::load(
        target.to_str().unwrap(),
        &Device::Cpu,
        Some(DType::F32),
        false,
    )
    .unwrap();
    let e = m.attach_draft(odd.to_str().unwrap(), false).unwrap_err();
    assert!(e.to_string().contains("tokenizes differently"), "{e}");
    assert!(m.draft.is_none());
    // A draft model with lookup is a contradiction, said as such.
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["generate", "--model"])
        .arg(&target)
        .arg("--draft-model")
        .arg(&target)
        .args(["--prompt", "a", "--speculative", "lookup"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--draft-model is for --speculative draft"));
}
