//! warden's quantized kernels against candle's on the same weights, side by
//! side in one run: one weight matrix larger than the caches (the shape of
//! Qwen3-0.6B's tied output layer by default), multiplied by 1 activation
//! row (decode) and by WARDEN_BENCH_ROWS rows (prefill), interleaved.
//!
//! cargo bench -p warden --bench kernels
//! Env: WARDEN_BENCH_TYPES (q8_0,q4_0,q4_k,q5_k,q6_k), WARDEN_BENCH_N (151936),
//! WARDEN_BENCH_K (1024), WARDEN_BENCH_ROWS (64), WARDEN_BENCH_REPEAT (5),
//! RAYON_NUM_THREADS (threads). Prints GB/s of weights read for decode.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use std::time::Instant;
use warden::model::kernels;

fn env(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() {
    let (n, k) = (env("WARDEN_BENCH_N", 151_936), env("WARDEN_BENCH_K", 1024));
    let rows = env("WARDEN_BENCH_ROWS", 64);
    let repeat = env("WARDEN_BENCH_REPEAT", 5).max(1);
    let types = std::env::var("WARDEN_BENCH_TYPES").unwrap_or("q8_0,q4_0,q4_k,q5_k,q6_k".into());
    let dev = Device::Cpu;
    println!(
        "kernel level {:?}, threads {}, weight {n}×{k}",
        kernels::level(),
        candle_core::utils::get_num_threads()
    );
    for name in types.split(',') {
        let t = match name {
            "q8_0" => GgmlDType::Q8_0,
            "q4_0" => GgmlDType::Q4_0,
            "q4_k" => GgmlDType::Q4K,
            "q5_k" => GgmlDType::Q5K,
            "q6_k" => GgmlDType::Q6K,
            o => panic!("unknown type {o}"),
        };
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
        let q = QTensor::quantize(&w, t).unwrap();
        drop(w);
        let bytes = q.storage_size_in_bytes() as f64;
        let mm = QMatMul::from_qtensor(q).unwrap();
        for m in [1, rows] {
            let x = Tensor::randn(0f32, 1.0, (1, m, k), &dev).unwrap();
            let mut times = [Vec::new(), Vec::new()];
            for _ in 0..repeat + 1 {
                for (i, on) in [true, false].into_iter().enumerate() {
                    kernels::set_choice(if on {
                        kernels::Choice::Warden
                    } else {
                        kernels::Choice::Candle
                    });
                    let lin = warden::model::arch::linear::Linear::quantized_shared(match &mm {
                        QMatMul::QTensor(t) => t.clone(),
                        _ => unreachable!(),
                    })
                    .unwrap();
                    let s = Instant::now();
                    std::hint::black_box(lin.forward(&x).unwrap());
                    times[i].push(s.elapsed().as_secs_f64());
                }
            }
            let best = |v: &mut Vec<f64>| {
                v.remove(0); // warm-up (candle repacks on first use)
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let (ours, theirs) = (best(&mut times[0]), best(&mut times[1]));
            println!(
                "{name:5} m={m:<4} warden {:8.2} ms ({:5.1} GB/s)  candle {:8.2} ms ({:5.1} GB/s)  {:.2}x",
                ours * 1e3,
                bytes / ours / 1e9,
                theirs * 1e3,
                bytes / theirs / 1e9,
                theirs / ours
            );
        }
    }
}
