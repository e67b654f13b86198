//! `warden finetune` end to end on the tiny synthetic Qwen3 with the real
//! tokenizer and template: the loss falls, a seed reproduces a run bit for
//! bit, `--resume` ends where an uninterrupted run ends, the adapter loads in
//! `generate` and changes what it writes, `--full` writes a model every
//! command reads, and bad lines are named.

mod common;

use common::{ok, warden};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The tiny model and `n` training conversations over the example workspace.
fn setup(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let model = dir.join("tiny");
    let data = dir.join("train.jsonl");
    let state = dir.join("state");
    ok(&warden(
        &["synth", "--shape", "tiny", "--out", model.to_str().unwrap()],
        &state,
    ));
    ok(&warden(
        &[
            "synth-data",
            "--suite",
            "examples/evals/code-search.toml",
            "--out",
            data.to_str().unwrap(),
            "--n",
            &n.to_string(),
            "--seed",
            "5",
        ],
        &state,
    ));
    (model, data)
}

fn finetune(
    dir: &Path,
    model: &Path,
    data: &Path,
    out: &str,
    extra: &[&str],
) -> std::process::Output {
    let out = dir.join(out);
    let mut args = vec![
        "finetune",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    warden(&args, &dir.join("state"))
}

fn report(dir: &Path, out: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(out).join("training.json")).unwrap()).unwrap()
}

fn losses(r: &Value) -> Vec<f64> {
    r["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn bytes(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const LORA: &[&str] = &[
    "--lora-rank",
    "8",
    "--lr",
    "2e-2",
    "--epochs",
    "6",
    "--batch-tokens",
    "100000",
];

const FULL: &[&str] = &[
    "--full",
    "--lr",
    "1e-2",
    "--epochs",
    "4",
    "--batch-tokens",
    "100000",
];

#[test]
fn lora_learns_reproduces_resumes_and_changes_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (model, data) = setup(dir, 3);
    ok(&finetune(dir, &model, &data, "a", LORA));
    let a = report(dir, "a");
    let la = losses(&a);
    assert_eq!(la.len(), 6, "one step per epoch: {a}");
    assert!(a["finished"].as_bool().unwrap());
    assert!(
        la[5] < la[0] - 0.5,
        "the loss must fall on the assistant tokens: {la:?}"
    );
    // The same finished command again into its own --out is accepted,
    // though its epochs' checkpoints are still there.
    assert!(dir.join("a/checkpoint").exists());
    ok(&finetune(dir, &model, &data, "a", LORA));
    // The same seed gives the same run, bit for bit; another seed another.
    ok(&finetune(dir, &model, &data, "b", LORA));
    assert_eq!(la, losses(&report(dir, "b")));
    let weights = |o: &str| bytes(dir.join(o).join("adapter_model.safetensors"));
    assert_eq!(weights("a"), weights("b"));
    let mut seeded = LORA.to_vec();
    seeded.extend(["--seed", "1"]);
    ok(&finetune(dir, &model, &data, "c", &seeded));
    assert_ne!(la, losses(&report(dir, "c")));
    // Stopped after two steps and resumed: the uninterrupted run's adapter.
    let mut stop = LORA.to_vec();
    stop.extend(["--max-steps", "2"]);
    let o = ok(&finetune(dir, &model, &data, "d", &stop));
    assert!(o.contains("--resume"), "{o}");
    // --max-steps writes the model of the step it stopped at.
    assert!(o.contains("wrote the model of step 2"), "{o}");
    assert!(dir.join("d/adapter_model.safetensors").exists());
    // The same command again would throw the checkpoint away: refused.
    let o = finetune(dir, &model, &data, "d", &stop);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains("unfinished run") && err.contains("--overwrite"),
        "{err}"
    );
    let mut resume = LORA.to_vec();
    resume.push("--resume");
    ok(&finetune(dir, &model, &data, "d", &resume));
    assert_eq!(weights("a"), weights("d"));
    assert_eq!(la, losses(&report(dir, "d")));
    // --write-partial also writes the adapter of the step it stopped at;
    // resuming then finishes the uninterrupted run's adapter.
    let mut partial = stop.clone();
    partial.push("--write-partial");
    let o = ok(&finetune(dir, &model, &data, "p", &partial));
    assert!(o.contains("wrote the model of step 2"), "{o}");
    assert!(!report(dir, "p")["finished"].as_bool().unwrap());
    assert_eq!(losses(&report(dir, "p")), la[..2].to_vec());
    assert_ne!(weights("p"), weights("a"));
    ok(&finetune(dir, &model, &data, "p", &resume));
    assert_eq!(weights("a"), weights("p"));
    // Resuming with other settings is refused, naming what differs.
    ok(&finetune(dir, &model, &data, "e", &stop));
    let mut other = resume.clone();
    other[3] = "1e-2";
    let o = finetune(dir, &model, &data, "e", &other);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("other settings") && err.contains("optimizer"),
        "{err}"
    );
    // The adapter loads where adapters load, and changes the output.
    let gen = |adapter: Option<&str>| {
        let mut args = vec![
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "<|im_start|>user\nWhere is make_post defined?<|im_end|>\n<|im_start|>assistant\n",
            "--max-tokens",
            "12",
        ];
        let p = adapter.map(|a| dir.join(a));
        if let Some(p) = &p {
            args.extend(["--adapter", p.to_str().unwrap()]);
        }
        ok(&warden(&args, &dir.join("state")))
    };
    assert_ne!(gen(None), gen(Some("a")));
    let cfg: Value = serde_json::from_slice(&bytes(dir.join("a/adapter_config.json"))).unwrap();
    assert_eq!(cfg["r"], 8);
    assert_eq!(cfg["lora_alpha"], 16.0);
    assert_eq!(cfg["peft_type"], "LORA");
}

#[test]
fn full_training_writes_a_model_that_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (model, data) = setup(dir, 2);
    let o = ok(&finetune(
        dir,
        &model,
        &data,
        "full",
        &[FULL, &["--json"]].concat(),
    ));
    let r: Value = serde_json::from_str(&o).unwrap();
    let l = losses(&r);
    assert!(l[3] < l[0] - 0.5, "{l:?}");
    assert_eq!(r["settings"]["mode"]["kind"], "full");
    let out = dir.join("full");
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // The trained model runs, and is not the base any more.
    let gen = |m: &Path| {
        ok(&warden(
            &[
                "generate",
                "--model",
                m.to_str().unwrap(),
                "--prompt",
                "Where is Post defined?",
                "--max-tokens",
                "8",
            ],
            &dir.join("state"),
        ))
    };
    assert_ne!(gen(&model), gen(&out));

    // --output-vocab data: the softmax over the data's tokens only. The
    // loss falls as fast, only those rows of the (tied) embedding move, and
    // --resume continues it.
    let args = [FULL, &["--output-vocab", "data", "--json"]].concat();
    let r: Value = serde_json::from_str(&ok(&finetune(dir, &model, &data, "sub", &args))).unwrap();
    let l = losses(&r);
    assert!(l[3] < l[0] - 0.5, "{l:?}");
    assert_eq!(r["settings"]["output_vocab"], "data");
    let n = r["output_tokens"].as_u64().unwrap() as usize;
    let embed = |m: &Path| {
        let t =
            candle_core::safetensors::load(m.join("model.safetensors"), &candle_core::Device::Cpu)
                .unwrap();
        t["model.embed_tokens.weight"]
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    };
    let (before, after) = (embed(&model), embed(&dir.join("sub")));
    let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(
        moved > 0 && moved <= n,
        "{moved} rows moved, {n} in the data"
    );
    assert!(n < before.len() / 10, "{n} of {} tokens", before.len());
    let mut stop = args.clone();
    stop.extend(["--max-steps", "2"]);
    ok(&finetune(dir, &model, &data, "sub2", &stop));
    let mut resume = args.clone();
    resume.push("--resume");
    let r2: Value =
        serde_json::from_str(&ok(&finetune(dir, &model, &data, "sub2", &resume))).unwrap();
    assert_eq!(losses(&r2), l, "a resumed run ends where a whole one does");
    assert_eq!(
        bytes(dir.join("sub/model.safetensors")),
        bytes(dir.join("sub2/model.safetensors"))
    );
}

#[test]
fn bad_lines_are_named_and_skipped_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (model, data) = setup(dir, 2);
    let good = std::fs::read_to_string(&data).unwrap();
    let bad = dir.join("bad.jsonl");
    std::fs::write(
        &bad,
        format!(
            "{}\n{{\"messages\": [{{\"role\": \"user\", \"content\": \"hi\"}}]}}\nnot json\n{}",
            good.lines().next().unwrap(),
            good.lines().nth(1).unwrap()
        ),
    )
    .unwrap();
    let args = ["--epochs", "1", "--max-steps", "1"];
    let o = finetune(dir, &model, &bad, "x", &args);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("2 unusable line(s)")
            && err.contains("line 2: ")
            && err.contains("line 3: not a conversation")
            && err.contains("--skip-bad"),
        "{err}"
    );
    let mut skip = args.to_vec();
    skip.push("--skip-bad");
    let o = finetune(dir, &model, &bad, "x", &skip);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    ok(&o);
    assert!(
        err.contains("skipped line 2") && err.contains("skipped line 3"),
        "{err}"
    );
    let r = report(dir, "x");
    assert_eq!(r["conversations"], 2);
    // The same finished run again into its own --out writes the same
    // output (same settings, no checkpoint left).
    assert!(r["finished"].as_bool().unwrap(), "{r}");
    ok(&finetune(dir, &model, &bad, "x", &skip));
    // An --out holding anything else is refused before anything is
    // written; a planted training.json link is never written through.
    let planted = dir.join("planted");
    std::fs::create_dir(&planted).unwrap();
    let precious = dir.join("precious.txt");
    std::fs::write(&precious, "keep").unwrap();
    std::os::unix::fs::symlink(&precious, planted.join("training.json")).unwrap();
    let o = finetune(dir, &model, &bad, "planted", &skip);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains("already holds files that this run did not write"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep");
    // Another run's finished output is refused too.
    let o = finetune(
        dir,
        &model,
        &bad,
        "x",
        &["--epochs", "2", "--max-steps", "1", "--skip-bad"],
    );
    assert!(!o.status.success());
    // --overwrite starts over there.
    ok(&finetune(
        dir,
        &model,
        &bad,
        "x",
        &[
            "--epochs",
            "2",
            "--max-steps",
            "1",
            "--skip-bad",
            "--overwrite",
        ],
    ));
    let lines: Vec<u64> = r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 3]);
}
