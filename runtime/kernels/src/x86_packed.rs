//! Kernels over [`super::pack`]ed weights: one tile (8 rows) times up to
//! four activation rows at a time, with AVX2 (`maddubs` + `madd`) or, where
//! the CPU has AVX-VNNI, `vpdpbusd`.

use super::pack::{Packed, Q4KX8, Q8_0X8, ROWS};
use super::Kind;
use std::arch::x86_64::*;

/// One activation row: block scales, values, Q8_K sums.
pub type Row<'a> = (&'a [f32], &'a [i8], &'a [i16]);

/// Rows of activations multiplied per pass over a tile.
pub const RN: usize = 4;

/// Whether this CPU has AVX-VNNI (256-bit `vpdpbusd`).
pub fn vnni() -> bool {
    static V: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        std::env::var_os("WARDEN_KERNELS_NO_VNNI").is_none() && is_x86_feature_detected!("avxvnni")
    })
}

/// Tile `t` of `p` times `acts` (1 to [`RN`] rows): `out[j][r]` is output
/// row `8t + r` for activation row `j`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C (and AVX-VNNI if [`vnni`] says
/// so); `t < p.tiles()`; the activation rows are quantized for `p.kind`
/// with `p.k` values.
pub unsafe fn tile(p: &Packed, t: usize, acts: &[Row], out: &mut [[f32; ROWS]; RN]) {
    let base = p.data.as_slice().as_ptr().add(t * p.tile_bytes());
    let nb = p.k / p.kind.block_values();
    macro_rules! go {
        ($f:ident, $g:ident) => {
            match (acts.len(), vnni()) {
                (1, false) => $f::<1>(base, nb, acts, out),
                (2, false) => $f::<2>(base, nb, acts, out),
                (3, false) => $f::<3>(base, nb, acts, out),
                (_, false) => $f::<4>(base, nb, acts, out),
                (1, true) => $g::<1>(base, nb, acts, out),
                (2, true) => $g::<2>(base, nb, acts, out),
                (3, true) => $g::<3>(base, nb, acts, out),
                (_, true) => $g::<4>(base, nb, acts, out),
            }
        };
    }
    match p.kind {
        Kind::Q8_0 => go!(q8_0_avx2, q8_0_vnni),
        Kind::Q4K => go!(q4k_avx2, q4k_vnni),
        _ => unreachable!("only packed kinds"),
    }
}

/// Generates a Q8_0x8 kernel; `$dot(acc, |w|, sign(a, w))` accumulates
/// 4-byte dot products per lane.
macro_rules! q8_0_kernel {
    ($name:ident, $feat:literal, $dot:ident) => {
        #[target_feature(enable = $feat)]
        unsafe fn $name<const N: usize>(
            base: *const u8,
            nb: usize,
            acts: &[Row],
            out: &mut [[f32; ROWS]; RN],
        ) {
            let mut acc = [_mm256_setzero_ps(); N];
            for b in 0..nb {
                let t = base.add(b * Q8_0X8);
                pf(t.wrapping_add(PREFETCH));
                pf(t.wrapping_add(PREFETCH + 64));
                pf(t.wrapping_add(PREFETCH + 128));
                pf(t.wrapping_add(PREFETCH + 192));
                pf(t.wrapping_add(PREFETCH + 256));
                let ws = _mm256_cvtph_ps(_mm_loadu_si128(t as *const __m128i));
                let mut isum = [_mm256_setzero_si256(); N];
                for g in 0..8 {
                    let w = _mm256_loadu_si256(t.add(16 + 32 * g) as *const __m256i);
                    let aw = _mm256_sign_epi8(w, w);
                    for j in 0..N {
                        let a =
                            (acts[j].1.as_ptr().add(b * 32 + 4 * g) as *const i32).read_unaligned();
                        let sa = _mm256_sign_epi8(_mm256_set1_epi32(a), w);
                        isum[j] = $dot(isum[j], aw, sa);
                    }
                }
                for j in 0..N {
                    let s = _mm256_mul_ps(ws, _mm256_set1_ps(acts[j].0[b]));
                    acc[j] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(isum[j]), acc[j]);
                }
            }
            for j in 0..N {
                _mm256_storeu_ps(out[j].as_mut_ptr(), acc[j]);
            }
        }
    };
}

/// Generates a Q4_Kx8 kernel; `$dot16(acc, u4, a, scales)` accumulates
/// `Σ u4·a` per lane weighted by the lane's sub-block scale.
macro_rules! q4k_kernel {
    ($name:ident, $feat:literal, $dot:ident) => {
        #[target_feature(enable = $feat)]
        unsafe fn $name<const N: usize>(
            base: *const u8,
            nb: usize,
            acts: &[Row],
            out: &mut [[f32; ROWS]; RN],
        ) {
            let m4 = _mm256_set1_epi8(0xF);
            let mut acc = [_mm256_setzero_ps(); N];
            for b in 0..nb {
                let t = base.add(b * Q4KX8);
                let d = _mm256_cvtph_ps(_mm_loadu_si128(t as *const __m128i));
                let dmin = _mm256_cvtph_ps(_mm_loadu_si128(t.add(16) as *const __m128i));
                // Minimum terms: Σ_s m_s · (sum of sub-block s's activations).
                let mut msum = [_mm256_setzero_si256(); N];
                for s in 0..8 {
                    let m =
                        _mm256_cvtepu8_epi32(_mm_loadl_epi64(t.add(96 + 8 * s) as *const __m128i));
                    for j in 0..N {
                        let sums = acts[j].2.as_ptr().add(b * 16 + 2 * s);
                        let bs = *sums as i32 + *sums.add(1) as i32;
                        msum[j] =
                            _mm256_add_epi32(msum[j], _mm256_mullo_epi32(m, _mm256_set1_epi32(bs)));
                    }
                }
                let mut isum = [_mm256_setzero_si256(); N];
                for c in 0..4 {
                    let (sl, sh) = (scales(t, 2 * c), scales(t, 2 * c + 1));
                    let q = t.add(160 + c * 256);
                    pf(q.wrapping_add(PREFETCH));
                    pf(q.wrapping_add(PREFETCH + 64));
                    pf(q.wrapping_add(PREFETCH + 128));
                    pf(q.wrapping_add(PREFETCH + 192));
                    for g in 0..8 {
                        let w = _mm256_loadu_si256(q.add(32 * g) as *const __m256i);
                        let lo = _mm256_and_si256(w, m4);
                        let hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
                        for j in 0..N {
                            let a = acts[j].1.as_ptr().add(b * 256 + c * 64 + 4 * g);
                            let al = _mm256_set1_epi32((a as *const i32).read_unaligned());
                            let ah = _mm256_set1_epi32((a.add(32) as *const i32).read_unaligned());
                            isum[j] = $dot(isum[j], lo, al, sl);
                            isum[j] = $dot(isum[j], hi, ah, sh);
                        }
                    }
                }
                for j in 0..N {
                    let da = _mm256_set1_ps(acts[j].0[b]);
                    acc[j] =
                        _mm256_fmadd_ps(_mm256_mul_ps(d, da), _mm256_cvtepi32_ps(isum[j]), acc[j]);
                    acc[j] = _mm256_fnmadd_ps(
                        _mm256_mul_ps(dmin, da),
                        _mm256_cvtepi32_ps(msum[j]),
                        acc[j],
                    );
                }
            }
            for j in 0..N {
                _mm256_storeu_ps(out[j].as_mut_ptr(), acc[j]);
            }
        }
    };
}

/// Sub-block `s`'s 8 row scales of a Q4_Kx8 tile-block, each in both
/// 16-bit halves of its lane.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn scales(t: *const u8, s: usize) -> __m256i {
    let v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(t.add(32 + 8 * s) as *const __m128i));
    _mm256_or_si256(v, _mm256_slli_epi32(v, 16))
}

/// Prefetches the line at `p` into L2: a stream read once gains nothing
/// from L1, and L1 prefetches stall on the fill buffers (measured: T0
/// prefetches ran 12 % slower than none, T1 8 % faster).
#[inline(always)]
unsafe fn pf(p: *const u8) {
    _mm_prefetch(p as *const i8, _MM_HINT_T1);
}

/// Bytes ahead of the tile being read that are prefetched.
const PREFETCH: usize = 8192;

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_add_epi32(
        acc,
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)),
    )
}

#[inline]
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn dot_vnni(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(acc, u, s)
}

/// `acc + Σ u·a` per lane, each lane's sum weighted by its scale (the
/// scale in both 16-bit halves of the lane).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dot_scaled_avx2(acc: __m256i, u: __m256i, a: __m256i, sc: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), sc))
}

q8_0_kernel!(q8_0_avx2, "avx2,fma,f16c", dot_avx2);
q8_0_kernel!(q8_0_vnni, "avx2,fma,f16c,avxvnni", dot_vnni);
q4k_kernel!(q4k_avx2, "avx2,fma,f16c", dot_scaled_avx2);
q4k_kernel!(q4k_vnni, "avx2,fma,f16c,avxvnni", dot_scaled_avx2);
