//! Portable dot products of one weight row (GGUF blocks, as stored) with
//! one quantized activation row: the reference every SIMD version is
//! tested against, and the fallback on CPUs without one.

use super::{f16_at, scale_min_k4, Kind};

/// `Σ w·x` for a weight row of `kind` and an activation row quantized for
/// it (scales `d`, values `qs`, Q8_K sums `bsums`, Q8_0 block sums `s`).
pub fn dot(kind: Kind, w: &[u8], d: &[f32], qs: &[i8], bsums: &[i16], s: &[f32]) -> f32 {
    match kind {
        Kind::Q4_0 => q4_0(w, d, qs),
        Kind::Q4_1 => q4_1(w, d, qs, s),
        Kind::Q5_0 => q5(w, d, qs, s, false),
        Kind::Q5_1 => q5(w, d, qs, s, true),
        Kind::Q8_0 => q8_0(w, d, qs),
        Kind::Q4K => q4k(w, d, qs, bsums, false),
        Kind::Q5K => q4k(w, d, qs, bsums, true),
        Kind::Q6K => q6k(w, d, qs, bsums),
    }
}

fn q8_0(w: &[u8], d: &[f32], qs: &[i8]) -> f32 {
    let mut acc = 0f32;
    for ((b, &da), a) in w.chunks_exact(34).zip(d).zip(qs.chunks_exact(32)) {
        let s: i32 = b[2..]
            .iter()
            .zip(a)
            .map(|(&q, &x)| q as i8 as i32 * x as i32)
            .sum();
        acc += f16_at(b) * da * s as f32;
    }
    acc
}

fn q4_0(w: &[u8], d: &[f32], qs: &[i8]) -> f32 {
    let mut acc = 0f32;
    for ((b, &da), a) in w.chunks_exact(18).zip(d).zip(qs.chunks_exact(32)) {
        let mut s = 0i32;
        for j in 0..16 {
            let q = b[2 + j];
            s += ((q & 0xF) as i32 - 8) * a[j] as i32;
            s += ((q >> 4) as i32 - 8) * a[j + 16] as i32;
        }
        acc += f16_at(b) * da * s as f32;
    }
    acc
}

/// Q4_1: `d·q + m` per value; the minimum meets the activations' sum.
fn q4_1(w: &[u8], d: &[f32], qs: &[i8], s: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (((b, &da), a), &sa) in w.chunks_exact(20).zip(d).zip(qs.chunks_exact(32)).zip(s) {
        let mut si = 0i32;
        for j in 0..16 {
            let q = b[4 + j];
            si += (q & 0xF) as i32 * a[j] as i32;
            si += (q >> 4) as i32 * a[j + 16] as i32;
        }
        acc += f16_at(b) * da * si as f32 + f16_at(&b[2..]) * sa;
    }
    acc
}

/// Q5_0 (`d·(q − 16)`) and, with `min`, Q5_1 (`d·q + m`): bit `j` of the
/// 32-bit `qh` is the fifth bit of value `j`.
fn q5(w: &[u8], d: &[f32], qs: &[i8], s: &[f32], min: bool) -> f32 {
    let (bb, at) = if min { (24, 4) } else { (22, 2) };
    let offset = if min { 0 } else { 16 };
    let mut acc = 0f32;
    for (i, ((b, &da), a)) in w
        .chunks_exact(bb)
        .zip(d)
        .zip(qs.chunks_exact(32))
        .enumerate()
    {
        let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let q = &b[at + 4..at + 20];
        let mut si = 0i32;
        for j in 0..16 {
            let lo = (q[j] & 0xF) as i32 | (((qh >> j) & 1) << 4) as i32;
            let hi = (q[j] >> 4) as i32 | (((qh >> (j + 16)) & 1) << 4) as i32;
            si += (lo - offset) * a[j] as i32 + (hi - offset) * a[j + 16] as i32;
        }
        acc += f16_at(b) * da * si as f32;
        if min {
            acc += f16_at(&b[2..]) * s[i];
        }
    }
    acc
}

/// Q4_K: `d·sc_s·q − dmin·m_s` per value of sub-block `s`; with `five`,
/// Q5_K: bit `s` of `qh[j]` is the fifth bit of value `j` of sub-block `s`.
fn q4k(w: &[u8], d: &[f32], qs: &[i8], bsums: &[i16], five: bool) -> f32 {
    let bb = if five { 176 } else { 144 };
    let mut acc = 0f32;
    for (((b, &da), a), sums) in w
        .chunks_exact(bb)
        .zip(d)
        .zip(qs.chunks_exact(256))
        .zip(bsums.chunks_exact(16))
    {
        let (dw, dmin) = (f16_at(b), f16_at(&b[2..]));
        let scales = &b[4..16];
        let (qh, q) = if five {
            (&b[16..48], &b[48..176])
        } else {
            (&[0u8; 32][..], &b[16..144])
        };
        let (mut si, mut mi) = (0i32, 0i32);
        for c in 0..4 {
            let (sl, ml) = scale_min_k4(2 * c, scales);
            let (sh, mh) = scale_min_k4(2 * c + 1, scales);
            let (mut lo, mut hi) = (0i32, 0i32);
            for j in 0..32 {
                let v = q[c * 32 + j];
                let l = (v & 0xF) | (((qh[j] >> (2 * c)) & 1) << 4);
                let h = (v >> 4) | (((qh[j] >> (2 * c + 1)) & 1) << 4);
                lo += l as i32 * a[c * 64 + j] as i32;
                hi += h as i32 * a[c * 64 + 32 + j] as i32;
            }
            si += sl as i32 * lo + sh as i32 * hi;
            let sum = |s: usize| sums[2 * s] as i32 + sums[2 * s + 1] as i32;
            mi += ml as i32 * sum(2 * c) + mh as i32 * sum(2 * c + 1);
        }
        acc += da * (dw * si as f32 - dmin * mi as f32);
    }
    acc
}

/// Q6_K: `d·sc_i·(q − 32)` for sub-block `i` of 16 values.
fn q6k(w: &[u8], d: &[f32], qs: &[i8], bsums: &[i16]) -> f32 {
    let mut acc = 0f32;
    for (((b, &da), a), sums) in w
        .chunks_exact(210)
        .zip(d)
        .zip(qs.chunks_exact(256))
        .zip(bsums.chunks_exact(16))
    {
        let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
        let dw = f16_at(&b[208..]);
        // Unpack into 256 values 0..63 in order.
        let mut v = [0u8; 256];
        for n in 0..2 {
            let (ql, qh, v) = (&ql[n * 64..], &qh[n * 32..], &mut v[n * 128..]);
            for l in 0..32 {
                v[l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
                v[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
                v[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                v[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
            }
        }
        let mut si = 0i32;
        for i in 0..16 {
            let s: i32 = (0..16)
                .map(|j| v[i * 16 + j] as i32 * a[i * 16 + j] as i32)
                .sum();
            si += sc[i] as i8 as i32 * (s - 32 * sums[i] as i32);
        }
        acc += da * dw * si as f32;
    }
    acc
}
