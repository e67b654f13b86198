//! Activations quantized once per product, in the companion format of the
//! weight type: Q8_0 (32 values, one scale) for Q4_0/Q8_0 weights, Q8_K
//! (256 values, one f32 scale, sums of every 16) for the K-quants.
//!
//! The rounding follows ggml's x86 quantizers, the ones llama.cpp runs:
//! the inverse scale `127 / max|x|` and round-half-to-even
//! (`_mm256_round_ps` with `_MM_ROUND_NEAREST`; `nearest_int` for Q8_K),
//! so the integer dot products equal llama.cpp's. On a real 4-bit model a
//! different rounding of the activations alone moves log-probabilities by
//! ~0.06 nats on average (measured against candle's quantizer, which
//! rounds half away from zero).

/// `m` rows of `k` activations, quantized.
#[derive(Debug, Clone, Default)]
pub struct Acts {
    /// Rows.
    pub m: usize,
    /// Values per row.
    pub k: usize,
    /// Values per block (32 or 256).
    pub block: usize,
    /// One scale per block, row-major.
    pub d: Vec<f32>,
    /// The quantized values, row-major.
    pub qs: Vec<i8>,
    /// Q8_K only: the sum of each 16 values, 16 per block.
    pub bsums: Vec<i16>,
    /// Q8_0 only: each block's `d·Σq` at f16 precision, as ggml's Q8_1
    /// keeps it (the minimum's term of Q4_1 and Q5_1).
    pub s: Vec<f32>,
}

impl Acts {
    /// Blocks per row.
    pub fn blocks(&self) -> usize {
        self.k / self.block
    }

    /// Row `i`'s block sums `d·Σq` (Q8_0 only).
    #[inline]
    pub fn sums(&self, i: usize) -> &[f32] {
        let nb = self.blocks();
        if self.s.is_empty() {
            &self.s[..]
        } else {
            &self.s[i * nb..(i + 1) * nb]
        }
    }

    /// Row `i`'s scales, values and (Q8_K) sums.
    #[inline]
    pub fn row(&self, i: usize) -> (&[f32], &[i8], &[i16]) {
        let nb = self.blocks();
        let sums = if self.bsums.is_empty() {
            &self.bsums[..]
        } else {
            &self.bsums[i * nb * 16..(i + 1) * nb * 16]
        };
        (
            &self.d[i * nb..(i + 1) * nb],
            &self.qs[i * self.k..(i + 1) * self.k],
            sums,
        )
    }
}

/// Quantizes `x` (`m` rows of `k`, `k` a multiple of 32) to Q8_0: per
/// block `d = max|x| / 127` (kept at f16 precision), `q = round(x·127 /
/// max|x|)`, ties to even;
/// and each block's `d·Σq` as ggml's Q8_1 computes it (unrounded `d`, the
/// product at f16 precision).
pub fn q8_0(x: &[f32], m: usize, k: usize) -> Acts {
    debug_assert_eq!(x.len(), m * k);
    let mut a = Acts {
        m,
        k,
        block: 32,
        d: Vec::with_capacity(m * k / 32),
        qs: vec![0; m * k],
        bsums: vec![],
        s: Vec::with_capacity(m * k / 32),
    };
    for (xs, qs) in x.chunks_exact(32).zip(a.qs.chunks_exact_mut(32)) {
        let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in qs.iter_mut().zip(xs) {
            *q = (v * id).round_ties_even() as i8;
            sum += *q as i32;
        }
        a.d.push(half::f16::from_f32(d).to_f32());
        a.s.push(half::f16::from_f32(d * sum as f32).to_f32());
    }
    a
}

/// Quantizes `x` (`m` rows of `k`, `k` a multiple of 256) to Q8_K: per
/// block the value of largest magnitude maps to −127, `d = 1 / scale`, and
/// the sums of every 16 quantized values are kept for the K-quants'
/// minimum and offset terms.
pub fn q8k(x: &[f32], m: usize, k: usize) -> Acts {
    debug_assert_eq!(x.len(), m * k);
    let mut a = Acts {
        m,
        k,
        block: 256,
        d: Vec::with_capacity(m * k / 256),
        qs: vec![0; m * k],
        bsums: vec![0; m * k / 16],
        s: vec![],
    };
    for ((xs, qs), sums) in x
        .chunks_exact(256)
        .zip(a.qs.chunks_exact_mut(256))
        .zip(a.bsums.chunks_exact_mut(16))
    {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in xs {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            a.d.push(0.0);
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in qs.iter_mut().zip(xs) {
            *q = (iscale * v).round_ties_even().clamp(-128.0, 127.0) as i8;
        }
        for (s, q) in sums.iter_mut().zip(qs.chunks_exact(16)) {
            *s = q.iter().map(|&v| v as i16).sum();
        }
        a.d.push(1.0 / iscale);
    }
    a
}
