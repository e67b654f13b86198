//! `y = x·Wᵀ` for quantized weights: activations quantized once, rows of
//! the weights handed to candle's persistent thread pool in chunks.

use super::act::{self, Acts};
use super::pack::{Packed, ROWS};
use super::{level, scalar, Kind, Level};
use std::sync::atomic::{AtomicU8, Ordering};

/// A quantized `(n, k)` weight as GGUF stores it: `n` rows of `k / block`
/// blocks each.
#[derive(Debug, Clone, Copy)]
pub struct QMat<'a> {
    /// The block format.
    pub kind: Kind,
    /// Rows (outputs).
    pub n: usize,
    /// Columns (inputs).
    pub k: usize,
    /// The blocks, row-major.
    pub data: &'a [u8],
    /// The same weight repacked for this CPU ([`Packed::new`]), if it has
    /// a packed layout; the kernels then read it instead of `data`.
    pub packed: Option<&'a Packed>,
}

impl QMat<'_> {
    /// Bytes per row.
    fn row_bytes(&self) -> usize {
        self.k / self.kind.block_values() * self.kind.block_bytes()
    }

    /// Whether the data is whole rows of whole blocks.
    fn well_formed(&self) -> bool {
        self.k > 0
            && self.k % self.kind.block_values() == 0
            && self.data.len() == self.n * self.row_bytes()
    }
}

/// Which kernels multiply quantized weights on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// warden's for decoding and where candle has no faster kernel; candle's
    /// repacked tiles for prefill of the types and CPUs it has them for (the
    /// default: each side where it measured faster).
    Auto,
    /// warden's everywhere.
    Warden,
    /// candle's everywhere.
    Candle,
}

/// 0: unset (read `WARDEN_KERNELS` once), else `Choice as u8 + 1`.
static CHOICE: AtomicU8 = AtomicU8::new(0);

/// The process's [`Choice`]: `WARDEN_KERNELS=auto|warden|candle` (default
/// auto), or what [`set_choice`] last set.
pub fn choice() -> Choice {
    match CHOICE.load(Ordering::Relaxed) {
        1 => Choice::Auto,
        2 => Choice::Warden,
        3 => Choice::Candle,
        _ => {
            let c = match std::env::var("WARDEN_KERNELS").as_deref() {
                Ok("candle") => Choice::Candle,
                Ok("warden") => Choice::Warden,
                _ => Choice::Auto,
            };
            set_choice(c);
            c
        }
    }
}

/// Sets the [`Choice`] for the whole process (a side-by-side benchmark).
pub fn set_choice(c: Choice) {
    CHOICE.store(c as u8 + 1, Ordering::Relaxed);
}

/// Whether these kernels are used at all (weights are repacked at load
/// only then).
pub fn enabled() -> bool {
    choice() != Choice::Candle
}

/// Rows up to which a product counts as decoding (one token, or a
/// speculative verification of up to 8 drafts).
pub const DECODE_ROWS: usize = 9;

/// Whether a product of `m` rows by an `(n, k)` weight of `kind` goes
/// through these kernels under the current [`choice`].
pub fn chosen(kind: Kind, m: usize, n: usize, k: usize) -> bool {
    match choice() {
        Choice::Candle => false,
        Choice::Warden => true,
        // Without AVX2 these run their portable code, which candle's NEON
        // and generic kernels outrun: only ever by request there.
        Choice::Auto => {
            level() == Level::Avx2
                && !candle_throughout(kind, n, k)
                && (m <= DECODE_ROWS || !candle_tiles(kind, n, k))
        }
    }
}

/// Whether a weight is repacked at load for these kernels under the
/// current [`choice`] (not where candle takes every product of it, so that
/// a weight never has three copies for nothing).
pub fn packs(kind: Kind, n: usize, k: usize) -> bool {
    level() == Level::Avx2
        && match choice() {
            Choice::Candle => false,
            Choice::Warden => true,
            Choice::Auto => !candle_throughout(kind, n, k),
        }
}

/// Q8_0 where candle has VNNI tiles: its decode matched these kernels'
/// (0.99×, `bench --compare-kernels` on the 0.6B shape) and it prefills
/// faster, so under `auto` candle takes every product and only its copy
/// of the weight is made.
fn candle_throughout(kind: Kind, n: usize, k: usize) -> bool {
    kind == Kind::Q8_0 && candle_tiles(kind, n, k)
}

/// Whether candle multiplies many rows by this weight with its repacked
/// x86 tiles (as its `repack_x86::select` decides: Q4_K and Q6_K with AVX2
/// or better, Q8_0 with VNNI; whole 16-row tiles and 256-value blocks),
/// which match or outrun these kernels at prefill (`warden bench
/// --compare-kernels`: 0.5–1.0× for ours there); elsewhere candle's CPU
/// path is a row-by-row dot product that ours beats (Q8_0 prefill 3.1× on
/// AVX2). `MISTRALRS_FORCE_AVX2=1` makes candle act as on an AVX2-only
/// CPU, and this agrees.
fn candle_tiles(kind: Kind, n: usize, k: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        #[derive(PartialEq)]
        enum Tier {
            None,
            Avx2,
            Vnni,
        }
        static TIER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let tier = || {
            let force_avx2 = std::env::var("MISTRALRS_FORCE_AVX2").as_deref() == Ok("1");
            if !force_avx2
                && ((is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni"))
                    || is_x86_feature_detected!("avxvnni"))
            {
                Tier::Vnni
            } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                Tier::Avx2
            } else {
                Tier::None
            }
        };
        let vnni = *TIER.get_or_init(|| tier() == Tier::Vnni);
        let avx2 = *AVX2.get_or_init(|| tier() != Tier::None);
        if !avx2 || n % 16 != 0 || k % 256 != 0 {
            return false;
        }
        match kind {
            Kind::Q4K | Kind::Q6K => true,
            Kind::Q8_0 => vnni,
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kind, n, k);
        false
    }
}

/// `[x·W₁ᵀ, x·W₂ᵀ, …]` for `m` rows of `x` (row-major, each as long as
/// every weight's `k`): one `m × nᵢ` output per weight, or `None` when a
/// weight's shape or data does not fit (the caller falls back to candle).
pub fn matmul_many(ws: &[QMat], x: &[f32], m: usize) -> Option<Vec<Vec<f32>>> {
    let k = ws.first()?.k;
    if m == 0 || x.len() != m * k || ws.iter().any(|w| w.k != k || !w.well_formed()) {
        return None;
    }
    // The activations in each companion format the weights need.
    let q8_0 = ws
        .iter()
        .any(|w| !w.kind.uses_q8k())
        .then(|| act::q8_0(x, m, k));
    let q8k = ws
        .iter()
        .any(|w| w.kind.uses_q8k())
        .then(|| act::q8k(x, m, k));
    let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| vec![0f32; m * w.n]).collect();
    let ptrs: Vec<usize> = outs.iter_mut().map(|o| o.as_mut_ptr() as usize).collect();
    // Work units: tiles of 8 rows for packed weights, rows otherwise.
    let lvl = level();
    let packed: Vec<Option<&Packed>> = ws
        .iter()
        .map(|w| {
            w.packed
                .filter(|p| lvl == Level::Avx2 && p.n == w.n && p.k == w.k)
        })
        .collect();
    let units: Vec<usize> = ws
        .iter()
        .zip(&packed)
        .map(|(w, p)| if p.is_some() { w.n.div_ceil(ROWS) } else { w.n })
        .collect();
    let starts: Vec<usize> = units
        .iter()
        .scan(0, |s, u| {
            let at = *s;
            *s += u;
            Some(at)
        })
        .collect();
    let total = starts.last().unwrap() + units.last().unwrap();
    let run = |range: std::ops::Range<usize>| {
        for (l, w) in ws.iter().enumerate() {
            let (lo, hi) = (
                range.start.max(starts[l]),
                range.end.min(starts[l] + units[l]),
            );
            if lo >= hi {
                continue;
            }
            let acts = if w.kind.uses_q8k() { &q8k } else { &q8_0 };
            let acts: &Acts = acts.as_ref().expect("quantized above");
            let out = ptrs[l] as *mut f32;
            let (lo, hi) = (lo - starts[l], hi - starts[l]);
            if let Some(p) = packed[l] {
                packed_tiles(p, lo..hi, acts, out);
                continue;
            }
            let rb = w.row_bytes();
            for r in lo..hi {
                let wr = &w.data[r * rb..(r + 1) * rb];
                for i in 0..m {
                    let (d, qs, sums) = acts.row(i);
                    let y = dot(lvl, w.kind, wr, d, qs, sums, acts.sums(i));
                    // SAFETY: each (row i, output r) is written by exactly
                    // one work item, inside `outs[l]` (m × n).
                    unsafe { *out.add(i * w.n + r) = y };
                }
            }
        }
    };
    candle_core::utils::barrier_pool().execute_chunked(total, run);
    Some(outs)
}

/// Tiles `tiles` of `p` times every activation row, into `out` (`m × n`).
#[cfg(target_arch = "x86_64")]
fn packed_tiles(p: &Packed, tiles: std::ops::Range<usize>, acts: &Acts, out: *mut f32) {
    use super::x86_packed::{tile, Row, RN};
    let rows: Vec<Row> = (0..acts.m).map(|i| acts.row(i)).collect();
    let mut y = [[0f32; ROWS]; RN];
    for t in tiles {
        let valid = ROWS.min(p.n - t * ROWS);
        for (g, group) in rows.chunks(RN).enumerate() {
            // SAFETY: packed weights are only used at Level::Avx2; the rows
            // were quantized for this kind and width.
            unsafe { tile(p, t, group, &mut y) };
            for (j, yj) in y.iter().enumerate().take(group.len()) {
                let i = g * RN + j;
                for (r, &v) in yj.iter().enumerate().take(valid) {
                    // SAFETY: as for unpacked rows: one writer per output.
                    unsafe { *out.add(i * p.n + t * ROWS + r) = v };
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn packed_tiles(_: &Packed, _: std::ops::Range<usize>, _: &Acts, _: *mut f32) {
    unreachable!("weights are packed only on x86-64")
}

#[inline]
fn dot(lvl: Level, kind: Kind, w: &[u8], d: &[f32], qs: &[i8], sums: &[i16], s: &[f32]) -> f32 {
    match lvl {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` found AVX2, FMA and F16C; the slices are whole
        // blocks of one row (checked by `well_formed`).
        Level::Avx2 => unsafe { super::x86::dot(kind, w, d, qs, sums, s) },
        _ => scalar::dot(kind, w, d, qs, sums, s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QStorage, QTensor};
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};
    use std::borrow::Cow;

    const KINDS: [(Kind, GgmlDType); 8] = [
        (Kind::Q4_0, GgmlDType::Q4_0),
        (Kind::Q4_1, GgmlDType::Q4_1),
        (Kind::Q5_0, GgmlDType::Q5_0),
        (Kind::Q5_1, GgmlDType::Q5_1),
        (Kind::Q8_0, GgmlDType::Q8_0),
        (Kind::Q4K, GgmlDType::Q4K),
        (Kind::Q5K, GgmlDType::Q5K),
        (Kind::Q6K, GgmlDType::Q6K),
    ];

    /// The weight dequantized by candle, `n × k`.
    fn dequantized(t: GgmlDType, data: &[u8], n: usize, k: usize) -> Vec<f32> {
        let s = QStorage::from_data(Cow::Borrowed(data), &Device::Cpu, t).unwrap();
        QTensor::new(s, (n, k))
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// Checks our product against the dequantized weight times the exact
    /// activations: the only difference allowed is the activations'
    /// quantization, at most half a step (plus the f16 rounding of Q8_0's
    /// scale, < 127·2⁻¹¹ of a step) per value, weighted by |w|; plus f32
    /// rounding. Also checks the portable and SIMD kernels agree.
    fn check(kind: Kind, t: GgmlDType, data: &[u8], n: usize, k: usize, x: &[f32], m: usize) {
        let w = dequantized(t, data, n, k);
        let q = QMat {
            kind,
            n,
            k,
            data,
            packed: None,
        };
        let plain = matmul_many(&[q], x, m).expect("well formed")[0].clone();
        // The repacked layout (where this CPU runs it) gives the same sums.
        let packed = (level() == Level::Avx2)
            .then(|| Packed::new(kind, n, k, data))
            .flatten();
        let mut results = vec![plain];
        if let Some(p) = &packed {
            let q = QMat {
                packed: Some(p),
                ..q
            };
            results.push(matmul_many(&[q], x, m).expect("well formed")[0].clone());
        }
        for got in &results {
            check_one(kind, &w, data, n, k, x, m, got, &results[0]);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_one(
        kind: Kind,
        w: &[f32],
        data: &[u8],
        n: usize,
        k: usize,
        x: &[f32],
        m: usize,
        got: &[f32],
        plain: &[f32],
    ) {
        let q = QMat {
            kind,
            n,
            k,
            data,
            packed: None,
        };
        let acts = if kind.uses_q8k() {
            act::q8k(x, m, k)
        } else {
            act::q8_0(x, m, k)
        };
        let blk = acts.block;
        let rb = q.row_bytes();
        for i in 0..m {
            let (d, qs, sums) = acts.row(i);
            for r in 0..n {
                let (wr, xr) = (&w[r * k..(r + 1) * k], &x[i * k..(i + 1) * k]);
                let exact: f64 = wr.iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum();
                let mag: f64 = wr.iter().zip(xr).map(|(&a, &b)| (a * b).abs() as f64).sum();
                let step: f64 = (0..k / blk)
                    .map(|b| {
                        let wsum: f64 = wr[b * blk..(b + 1) * blk]
                            .iter()
                            .map(|v| v.abs() as f64)
                            .sum();
                        // Q4_1/Q5_1: the block sum d·Σq is kept at f16
                        // precision (as ggml's Q8_1), off by up to 2⁻¹¹ of
                        // itself, times the minimum (≤ max |w|).
                        let wmax = wr[b * blk..(b + 1) * blk]
                            .iter()
                            .fold(0f64, |a, v| a.max(v.abs() as f64));
                        let s = acts.sums(i).get(b).map_or(0.0, |s| s.abs() as f64);
                        wsum * d[b].abs() as f64 * 0.57 + wmax * s / 2048.0
                    })
                    .sum();
                let tol = step + 1e-5 * mag + 1e-6;
                let y = got[i * n + r] as f64;
                assert!(
                    (y - exact).abs() <= tol,
                    "{kind:?} n={n} k={k} m={m} row {r} act {i}: {y} vs {exact} (tolerance {tol})"
                );
                // The same integer sums: only f32 rounding may differ.
                let p = plain[i * n + r] as f64;
                assert!(
                    (y - p).abs() <= 1e-5 * mag + 1e-6,
                    "{kind:?} n={n} k={k}: packed {y} vs rows {p}"
                );
                let s = scalar::dot(kind, &data[r * rb..(r + 1) * rb], d, qs, sums, acts.sums(i))
                    as f64;
                assert!(
                    (y - s).abs() <= 1e-5 * mag + 1e-6,
                    "{kind:?} n={n} k={k}: SIMD {y} vs portable {s}"
                );
            }
        }
    }

    #[test]
    fn every_type_matches_dequantize_then_matmul_on_odd_shapes() {
        let dev = Device::Cpu;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (kind, t) in KINDS {
            let ks: &[usize] = if kind.uses_q8k() {
                &[256, 768]
            } else {
                &[32, 96, 512]
            };
            for &k in ks {
                for (n, m) in [(1, 1), (37, 1), (5, 3), (19, 17)] {
                    let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
                    let qt = QTensor::quantize(&w, t).unwrap();
                    let data = qt.data().unwrap().into_owned();
                    // Activations with an outlier per row, as real ones have.
                    let mut x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
                    for i in 0..m {
                        x[i * k + (i * 7) % k] = 9.0;
                    }
                    check(kind, t, &data, n, k, &x, m);
                }
            }
        }
    }

    /// Weights of random bytes reach every bit pattern a file may hold
    /// (Q8_0's −128, Q6_K's negative scales, all scale/min codes) — the
    /// cases where a SIMD trick could overflow.
    #[test]
    fn every_type_matches_on_random_block_bytes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for (kind, t) in KINDS {
            let k = 512;
            let (n, m) = (9, 4);
            let bb = kind.block_bytes();
            let mut data: Vec<u8> = (0..n * k / kind.block_values() * bb)
                .map(|_| rng.random())
                .collect();
            // Finite f16 scales in 2⁻⁸..2⁻⁶, so no product overflows f32.
            let scale = |rng: &mut rand::rngs::StdRng| {
                half::f16::from_f32(rng.random_range(0.004..0.016)).to_le_bytes()
            };
            for b in data.chunks_exact_mut(bb) {
                let at: &[usize] = match kind {
                    Kind::Q4_0 | Kind::Q5_0 | Kind::Q8_0 => &[0],
                    Kind::Q4_1 | Kind::Q5_1 | Kind::Q4K | Kind::Q5K => &[0, 2],
                    Kind::Q6K => &[208],
                };
                for &o in at {
                    b[o..o + 2].copy_from_slice(&scale(&mut rng));
                }
            }
            let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-2.0..2.0)).collect();
            check(kind, t, &data, n, k, &x, m);
        }
    }

    #[test]
    fn candle_keeps_only_what_it_has_tiles_for() {
        // No tiles for these types or for partial tiles/blocks, whatever
        // the CPU: warden's kernels take them.
        for kind in [Kind::Q4_0, Kind::Q5K] {
            assert!(!candle_tiles(kind, 1024, 1024));
        }
        assert!(!candle_tiles(Kind::Q4K, 1000, 1024));
        assert!(!candle_tiles(Kind::Q6K, 1024, 1000));
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            assert!(candle_tiles(Kind::Q4K, 1024, 1024));
            assert!(candle_tiles(Kind::Q6K, 1024, 1024));
        }
        // Only Q8_0 with candle's tiles is left to candle for every product.
        assert!(!candle_throughout(Kind::Q4K, 1024, 1024));
        assert!(!candle_throughout(Kind::Q8_0, 1000, 1024));
    }

    #[test]
    fn data_that_is_not_whole_rows_is_not_packed() {
        let w = vec![0u8; 34 * 8];
        assert!(Packed::new(Kind::Q8_0, 8, 32, &w).is_some());
        assert!(Packed::new(Kind::Q8_0, 8, 32, &w[..34 * 7]).is_none());
        assert!(Packed::new(Kind::Q8_0, 8, 48, &w).is_none());
        assert!(Packed::new(Kind::Q4K, 2, 256, &w[..200]).is_none());
        assert!(
            Packed::new(Kind::Q6K, 1, 256, &w[..210]).is_none(),
            "no packed layout"
        );
    }

    #[test]
    fn zero_activations_and_refused_shapes() {
        let w = vec![0u8; 34 * 2];
        let q = QMat {
            kind: Kind::Q8_0,
            n: 2,
            k: 32,
            data: &w,
            packed: None,
        };
        assert_eq!(matmul_many(&[q], &[0.0; 32], 1).unwrap()[0], vec![0.0, 0.0]);
        // Data that is not whole rows, or x of the wrong length: not ours.
        let short = QMat {
            data: &w[..40],
            ..q
        };
        assert!(matmul_many(&[short], &[0.0; 32], 1).is_none());
        assert!(matmul_many(&[q], &[0.0; 31], 1).is_none());
        let k4 = QMat {
            kind: Kind::Q4K,
            n: 1,
            k: 32,
            data: &w[..34],
            packed: None,
        };
        assert!(matmul_many(&[k4], &[0.0; 32], 1).is_none());
    }
}
