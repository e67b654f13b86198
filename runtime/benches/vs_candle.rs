//! warden's Qwen3 against candle-transformers' `quantized_qwen3` on the same
//! GGUF file: prefill and decode tokens/s, same prompt, same thread pool.
//!
//! WARDEN_BENCH_GGUF=path/to/model.gguf cargo bench -p warden --bench vs_candle
//! (make one with `warden synth --shape qwen3-0.6b --gguf q8_0 --gguf-only --out DIR`).
//! Env: WARDEN_BENCH_PROMPT (128), WARDEN_BENCH_GEN (64), WARDEN_BENCH_REPEAT (3).

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_qwen3::ModelWeights;
use std::time::Instant;
use warden::model::LoadedModel;

fn env(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() {
    let Ok(path) = std::env::var("WARDEN_BENCH_GGUF") else {
        eprintln!("set WARDEN_BENCH_GGUF to a Qwen3 .gguf file (see the header of benches/vs_candle.rs); skipping");
        return;
    };
    let (n_prompt, n_gen) = (env("WARDEN_BENCH_PROMPT", 128), env("WARDEN_BENCH_GEN", 64));
    let prompt: Vec<u32> = (0..n_prompt as u32).map(|i| (i * 7919) % 150_000).collect();
    let dev = Device::Cpu;

    let repeats = env("WARDEN_BENCH_REPEAT", 3).max(1);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };

    let mut ours = LoadedModel::load(&path, &dev, None, false).unwrap();
    let mut f = std::fs::File::open(&path).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let mut reference = ModelWeights::from_gguf(ct, &mut f, &dev).unwrap();

    // The two engines take turns, so drift in a shared machine's speed
    // (neighbours, clocks) falls on both alike.
    let (mut w_pf, mut w_dc, mut c_pf, mut c_dc) = (vec![], vec![], vec![], vec![]);
    for _ in 0..repeats {
        // warden
        ours.model.clear_cache();
        let t = Instant::now();
        let mut logits = ours.model.prefill(&prompt, 512).unwrap().0;
        w_pf.push(n_prompt as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for _ in 0..n_gen {
            let next = warden::model::Qwen3::argmax(&logits).unwrap();
            logits = ours.model.step(next).unwrap();
        }
        w_dc.push(n_gen as f64 / t.elapsed().as_secs_f64());

        // candle-transformers
        reference.clear_kv_cache();
        let t = Instant::now();
        let input = Tensor::new(prompt.as_slice(), &dev)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let mut logits = reference.forward(&input, 0).unwrap();
        c_pf.push(n_prompt as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for i in 0..n_gen {
            let next = warden::model::Qwen3::argmax(&logits).unwrap();
            let input = Tensor::new(&[next], &dev).unwrap().unsqueeze(0).unwrap();
            logits = reference.forward(&input, n_prompt + i).unwrap();
        }
        c_dc.push(n_gen as f64 / t.elapsed().as_secs_f64());
    }
    let (w_prefill, w_decode) = (median(w_pf), median(w_dc));
    let (c_prefill, c_decode) = (median(c_pf), median(c_dc));

    println!(
        "{path}: prompt {n_prompt}, decode {n_gen}, median of {repeats}, threads {}",
        candle_core::utils::get_num_threads()
    );
    println!(
        "  warden:                prefill {w_prefill:7.1} tok/s   decode {w_decode:6.1} tok/s"
    );
    println!(
        "  candle quantized_qwen3: prefill {c_prefill:7.1} tok/s   decode {c_decode:6.1} tok/s"
    );
}
