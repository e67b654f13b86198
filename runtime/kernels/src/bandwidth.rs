//! The memory read bandwidth the decode kernels are bounded by, measured
//! the way they read: every thread of the pool streaming its chunks of one
//! large buffer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Bytes per second read by the whole thread pool from a buffer of `bytes`
/// (best of `passes` after one warm-up pass). Use a buffer at least as
/// large as the weights read per token so caches help no more than they
/// help decoding.
pub fn read_bandwidth(bytes: usize, passes: usize) -> f64 {
    let words = (bytes / 8).max(1 << 16);
    // Distinct values so no page is shared zero memory.
    let buf: Vec<u64> = (0..words as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let chunk = 8192; // 64 KiB
    let sink = AtomicU64::new(0);
    let pool = candle_core::utils::barrier_pool();
    let mut best = 0f64;
    for pass in 0..=passes.max(1) {
        let t = Instant::now();
        pool.execute_chunked(words.div_ceil(chunk), |range| {
            let lo = range.start * chunk;
            let hi = (range.end * chunk).min(words);
            let mut acc = [0u64; 8];
            for c in buf[lo..hi].chunks(8) {
                for (a, v) in acc.iter_mut().zip(c) {
                    *a ^= v;
                }
            }
            sink.fetch_xor(acc.iter().fold(0, |x, y| x ^ y), Ordering::Relaxed);
        });
        let s = t.elapsed().as_secs_f64();
        if pass > 0 {
            best = best.max((words * 8) as f64 / s);
        }
    }
    std::hint::black_box(sink.load(Ordering::Relaxed));
    best
}
