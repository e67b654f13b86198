//! AVX2 + FMA + F16C dot products (x86-64), the same arithmetic as
//! [`super::scalar`]: integer sums per block with `maddubs`/`madd`, one
//! float multiply-add per block.
//!
//! Every function here requires the CPU features of [`super::Level::Avx2`];
//! [`dot`] is only called after [`super::level`] found them.

use super::Kind;
use std::arch::x86_64::*;

/// How far ahead of the block being read the weight stream is prefetched:
/// the hardware prefetcher alone leaves a single core's stream well short
/// of the memory bandwidth.
const PREFETCH: usize = 8192;

/// `Σ w·x` for a weight row of `kind` and an activation row quantized for
/// it.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; the slices must be whole
/// blocks of the same count (as [`super::scalar::dot`] requires).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot(kind: Kind, w: &[u8], d: &[f32], qs: &[i8], bsums: &[i16], s: &[f32]) -> f32 {
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

/// The f16 at `p` (little-endian), as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum(v: __m256) -> f32 {
    let x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    let x = _mm_add_ss(x, _mm_movehdup_ps(x));
    _mm_cvtss_f32(x)
}

/// Eight i32 sums of pairs of products of signed bytes `x·y`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_i8(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0(w: &[u8], d: &[f32], qs: &[i8]) -> f32 {
    let nb = d.len();
    let (wp, ap) = (w.as_ptr(), qs.as_ptr() as *const u8);
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 1 < nb {
        let (b0, b1) = (wp.add(i * 34), wp.add(i * 34 + 34));
        _mm_prefetch(b0.wrapping_add(PREFETCH) as *const i8, _MM_HINT_T1);
        let p0 = dot_i8(load(b0.add(2)), load(ap.add(i * 32)));
        let p1 = dot_i8(load(b1.add(2)), load(ap.add(i * 32 + 32)));
        let s0 = f16(b0) * d[i];
        let s1 = f16(b1) * d[i + 1];
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(s0), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(s1), _mm256_cvtepi32_ps(p1), acc1);
        i += 2;
    }
    if i < nb {
        let b0 = wp.add(i * 34);
        let p0 = dot_i8(load(b0.add(2)), load(ap.add(i * 32)));
        let s0 = f16(b0) * d[i];
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(s0), _mm256_cvtepi32_ps(p0), acc0);
    }
    hsum(_mm256_add_ps(acc0, acc1))
}

/// The 32 nibbles of 16 bytes at `p` as bytes 0..15, low nibbles first
/// (values 0..15 of a block), then high nibbles (values 16..31).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles(p: *const u8) -> __m256i {
    let raw = _mm_loadu_si128(p as *const __m128i);
    let v = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
    _mm256_and_si256(v, _mm256_set1_epi8(0xF))
}

/// Byte `i` is 0xFF where bit `i` of the little-endian u32 at `p` is set.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bits_to_bytes(p: *const u8) -> __m256i {
    let x = u32::from_le_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]);
    // Byte i holds byte i/8 of x; or-ing every bit but bit i%8 makes it
    // all ones exactly when that bit is set.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(x as i32),
        _mm256_set_epi64x(
            0x0303030303030303,
            0x0202020202020202,
            0x0101010101010101,
            0,
        ),
    );
    let others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe_u64 as i64);
    _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi8(-1))
}

/// Eight i32 sums of pairs of products of unsigned bytes `u` (< 128) with
/// signed bytes `y`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_u8(u: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1(w: &[u8], d: &[f32], qs: &[i8], s: &[f32]) -> f32 {
    let (wp, ap) = (w.as_ptr(), qs.as_ptr() as *const u8);
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    for (i, (&da, &sa)) in d.iter().zip(s).enumerate() {
        let b = wp.add(i * 20);
        if i % 4 == 0 {
            _mm_prefetch(b.wrapping_add(PREFETCH) as *const i8, _MM_HINT_T1);
        }
        let p = dot_u8(nibbles(b.add(4)), load(ap.add(i * 32)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(b) * da), _mm256_cvtepi32_ps(p), acc);
        mins += f16(b.add(2)) * sa;
    }
    hsum(acc) + mins
}

/// Q5_0 and, with `min`, Q5_1.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5(w: &[u8], d: &[f32], qs: &[i8], s: &[f32], min: bool) -> f32 {
    let (bb, at) = if min { (24, 4) } else { (22, 2) };
    let (wp, ap) = (w.as_ptr(), qs.as_ptr() as *const u8);
    let fifth = _mm256_set1_epi8(0x10);
    let sixteen = _mm256_set1_epi8(16);
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    for (i, &da) in d.iter().enumerate() {
        let b = wp.add(i * bb);
        if i % 4 == 0 {
            _mm_prefetch(b.wrapping_add(PREFETCH) as *const i8, _MM_HINT_T1);
        }
        let v = _mm256_or_si256(
            nibbles(b.add(at + 4)),
            _mm256_and_si256(bits_to_bytes(b.add(at)), fifth),
        );
        let a = load(ap.add(i * 32));
        let p = if min {
            mins += f16(b.add(2)) * s[i];
            dot_u8(v, a)
        } else {
            dot_i8(_mm256_sub_epi8(v, sixteen), a)
        };
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(b) * da), _mm256_cvtepi32_ps(p), acc);
    }
    hsum(acc) + mins
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0(w: &[u8], d: &[f32], qs: &[i8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), qs.as_ptr() as *const u8);
    let (m4, eight) = (_mm256_set1_epi8(0xF), _mm256_set1_epi8(8));
    let mut acc = _mm256_setzero_ps();
    for (i, &da) in d.iter().enumerate() {
        let b = wp.add(i * 18);
        if i % 4 == 0 {
            _mm_prefetch(b.wrapping_add(PREFETCH) as *const i8, _MM_HINT_T1);
        }
        let raw = _mm_loadu_si128(b.add(2) as *const __m128i);
        let v = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
        let v = _mm256_sub_epi8(_mm256_and_si256(v, m4), eight);
        let p = dot_i8(v, load(ap.add(i * 32)));
        let s = f16(b) * da;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(s), _mm256_cvtepi32_ps(p), acc);
    }
    hsum(acc)
}

/// The eight 6-bit scales and eight minimums of a Q4_K/Q5_K block, as
/// bytes `[s0..s7, m0..m7]`.
#[inline(always)]
fn scales_mins(q: &[u8]) -> [u8; 16] {
    let u = |i: usize| u32::from_le_bytes([q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3]]);
    let (k1, k2, k3) = (0x3f3f3f3fu32, 0x0f0f0f0fu32, 0x03030303u32);
    let (u0, u1, u2) = (u(0), u(1), u(2));
    let s_lo = u0 & k1;
    let s_hi = (u2 & k2) | (((u0 >> 6) & k3) << 4);
    let m_lo = u1 & k1;
    let m_hi = ((u2 >> 4) & k2) | (((u1 >> 6) & k3) << 4);
    let mut out = [0u8; 16];
    out[0..4].copy_from_slice(&s_lo.to_le_bytes());
    out[4..8].copy_from_slice(&s_hi.to_le_bytes());
    out[8..12].copy_from_slice(&m_lo.to_le_bytes());
    out[12..16].copy_from_slice(&m_hi.to_le_bytes());
    out
}

/// Q4_K, or Q5_K when `five` (the fifth bits in `qh` before the nibbles).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k(w: &[u8], d: &[f32], qs: &[i8], bsums: &[i16], five: bool) -> f32 {
    let bb = if five { 176 } else { 144 };
    let (wp, ap) = (w.as_ptr(), qs.as_ptr() as *const u8);
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = 0f32;
    for (i, &da) in d.iter().enumerate() {
        let b = std::slice::from_raw_parts(wp.add(i * bb), bb);
        for l in (0..bb).step_by(64) {
            _mm_prefetch(
                wp.wrapping_add(i * bb + l + PREFETCH) as *const i8,
                _MM_HINT_T1,
            );
        }
        let dw = f16(b.as_ptr()) * da;
        let dmin = f16(b.as_ptr().add(2)) * da;
        let sm = scales_mins(&b[4..16]);
        // Minimum term: Σ_s m_s · (sum of sub-block s's activations).
        let sums = _mm256_loadu_si256(bsums.as_ptr().add(i * 16) as *const __m256i);
        let pairs = _mm_hadd_epi16(
            _mm256_castsi256_si128(sums),
            _mm256_extracti128_si256(sums, 1),
        );
        let mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(sm.as_ptr().add(8) as *const __m128i));
        let mp = _mm_madd_epi16(mins, pairs);
        let mp = _mm_add_epi32(mp, _mm_shuffle_epi32(mp, 0b01_00_11_10));
        let mp = _mm_add_epi32(mp, _mm_shuffle_epi32(mp, 0b10_11_00_01));
        acc_m += dmin * _mm_cvtsi128_si32(mp) as f32;
        let (q, hbits) = if five {
            (b.as_ptr().add(48), load(b.as_ptr().add(16)))
        } else {
            (b.as_ptr().add(16), _mm256_setzero_si256())
        };
        let a = ap.add(i * 256);
        let mut sumi = _mm256_setzero_si256();
        for c in 0..4 {
            let bits = load(q.add(c * 32));
            let mut lo = _mm256_and_si256(bits, m4);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            if five {
                let (bl, bh) = (
                    _mm256_set1_epi8(1 << (2 * c)),
                    _mm256_set1_epi8((1u8 << (2 * c + 1)) as i8),
                );
                let sixteen = _mm256_set1_epi8(16);
                let hl = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, bl), bl);
                let hh = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, bh), bh);
                lo = _mm256_or_si256(lo, _mm256_and_si256(hl, sixteen));
                hi = _mm256_or_si256(hi, _mm256_and_si256(hh, sixteen));
            }
            let pl = _mm256_maddubs_epi16(lo, load(a.add(c * 64)));
            let ph = _mm256_maddubs_epi16(hi, load(a.add(c * 64 + 32)));
            let pl = _mm256_madd_epi16(pl, _mm256_set1_epi16(sm[2 * c] as i16));
            let ph = _mm256_madd_epi16(ph, _mm256_set1_epi16(sm[2 * c + 1] as i16));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dw), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum(acc) - acc_m
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k(w: &[u8], d: &[f32], qs: &[i8], bsums: &[i16]) -> f32 {
    let (wp, ap) = (w.as_ptr(), qs.as_ptr() as *const u8);
    let (m4, m2) = (_mm256_set1_epi8(0xF), _mm256_set1_epi8(3));
    let mut acc = _mm256_setzero_ps();
    let mut acc_off = 0f32;
    for (i, &da) in d.iter().enumerate() {
        let b = wp.add(i * 210);
        for l in (0..210).step_by(64) {
            _mm_prefetch(b.wrapping_add(l + PREFETCH) as *const i8, _MM_HINT_T1);
        }
        let sc = std::slice::from_raw_parts(b.add(192) as *const i8, 16);
        let dw = f16(b.add(208)) * da;
        // Offset term: Σ_i sc_i · 32 · (sum of sub-block i's activations).
        let sums = std::slice::from_raw_parts(bsums.as_ptr().add(i * 16), 16);
        let off: i32 = sc
            .iter()
            .zip(sums)
            .map(|(&s, &m)| s as i32 * m as i32)
            .sum();
        let a = ap.add(i * 256);
        let mut sumi = _mm256_setzero_si256();
        for n in 0..2 {
            let (ql, qh) = (b.add(n * 64), b.add(128 + n * 32));
            let (l1, l2, h) = (load(ql), load(ql.add(32)), load(qh));
            let hb0 = _mm256_slli_epi16(_mm256_and_si256(h, m2), 4);
            let hb2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m2), 4);
            let hb4 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m2), 4);
            let hb6 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m2), 4);
            let v = [
                _mm256_or_si256(_mm256_and_si256(l1, m4), hb0),
                _mm256_or_si256(_mm256_and_si256(l2, m4), hb2),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), hb4),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l2, 4), m4), hb6),
            ];
            for (j, v) in v.into_iter().enumerate() {
                let g = 4 * n + j;
                let p = _mm256_maddubs_epi16(v, load(a.add(g * 32)));
                let s = _mm256_set_m128i(
                    _mm_set1_epi16(sc[2 * g + 1] as i16),
                    _mm_set1_epi16(sc[2 * g] as i16),
                );
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dw), _mm256_cvtepi32_ps(sumi), acc);
        acc_off += dw * off as f32;
    }
    hsum(acc) - 32.0 * acc_off
}
