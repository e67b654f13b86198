//! warden's own CPU kernels for quantized matrix products (the crate
//! `warden-kernels`; warden reaches it as `warden::model::kernels`).
//!
//! candle stores a GGUF weight as its blocks, unchanged; these kernels
//! multiply by those bytes directly, without a repacked copy:
//!
//! * the activations are quantized once per product into the weight type's
//!   companion format ([`act`]: Q8_0 blocks for Q4_0/Q8_0 weights, Q8_K
//!   super-blocks for the K-quants), and every thread reads that one copy;
//! * each output is an integer dot product of a weight row with an
//!   activation row ([`scalar`] is the reference, [`x86`] the AVX2 version,
//!   picked at run time by CPU feature);
//! * rows are handed out in small chunks from an atomic cursor to candle's
//!   persistent thread pool, the one every other CPU op of the forward pass
//!   runs on, so no thread is spawned per product and `--threads` bounds
//!   them all;
//! * layers that read the same input (q/k/v, gate/up) run as one product
//!   (one activation quantization, one dispatch).
//!
//! For a prefill (many activation rows), each weight row is read once and
//! multiplied with every activation row while it is in L1, so weight
//! traffic does not grow with the prompt.
//!
//! Exactness is tested against candle's dequantize-then-matmul on random
//! data for every type and odd shapes (tests at the bottom of [`matmul`]).

pub mod act;
pub mod bandwidth;
pub mod matmul;
pub mod pack;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
pub mod x86;
#[cfg(target_arch = "x86_64")]
pub mod x86_packed;

pub use matmul::{
    choice, chosen, enabled, matmul_many, packs, set_choice, Choice, QMat, DECODE_ROWS,
};

use candle_core::quantized::GgmlDType;

/// The weight types these kernels multiply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 32 values: an f16 scale and 4-bit values offset by 8.
    Q4_0,
    /// 32 values: an f16 scale, an f16 minimum and 4-bit values.
    Q4_1,
    /// 32 values: an f16 scale and 5-bit values offset by 16.
    Q5_0,
    /// 32 values: an f16 scale, an f16 minimum and 5-bit values.
    Q5_1,
    /// 32 values: an f16 scale and 8-bit values.
    Q8_0,
    /// 256 values in 8 sub-blocks with 6-bit scales and minimums, 4 bits.
    Q4K,
    /// As Q4_K with a fifth bit per value.
    Q5K,
    /// 256 values in 16 sub-blocks with 8-bit scales, 6 bits.
    Q6K,
}

impl Kind {
    /// The kind of a GGUF type, `None` for types left to candle.
    pub fn of(t: GgmlDType) -> Option<Kind> {
        Some(match t {
            GgmlDType::Q4_0 => Kind::Q4_0,
            GgmlDType::Q4_1 => Kind::Q4_1,
            GgmlDType::Q5_0 => Kind::Q5_0,
            GgmlDType::Q5_1 => Kind::Q5_1,
            GgmlDType::Q8_0 => Kind::Q8_0,
            GgmlDType::Q4K => Kind::Q4K,
            GgmlDType::Q5K => Kind::Q5K,
            GgmlDType::Q6K => Kind::Q6K,
            _ => return None,
        })
    }

    /// Values per block.
    pub fn block_values(self) -> usize {
        match self {
            Kind::Q4_0 | Kind::Q4_1 | Kind::Q5_0 | Kind::Q5_1 | Kind::Q8_0 => 32,
            Kind::Q4K | Kind::Q5K | Kind::Q6K => 256,
        }
    }

    /// Bytes per block, as GGUF stores it.
    pub fn block_bytes(self) -> usize {
        match self {
            Kind::Q4_0 => 18,
            Kind::Q4_1 => 20,
            Kind::Q5_0 => 22,
            Kind::Q5_1 => 24,
            Kind::Q8_0 => 34,
            Kind::Q4K => 144,
            Kind::Q5K => 176,
            Kind::Q6K => 210,
        }
    }

    /// Whether the activations are quantized to Q8_K (else Q8_0).
    pub fn uses_q8k(self) -> bool {
        self.block_values() == 256
    }
}

/// The instruction set the kernels run with on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Portable Rust.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C.
    Avx2,
}

/// The best [`Level`] this CPU supports (detected once).
pub fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::env::var_os("WARDEN_KERNELS_SCALAR").is_none()
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            return Level::Avx2;
        }
        Level::Scalar
    })
}

/// An f16 stored little-endian at `b[0..2]`, as f32.
#[inline(always)]
pub(crate) fn f16_at(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// The 6-bit scale and minimum of sub-block `j` of a Q4_K/Q5_K block's
/// 12 packed scale bytes.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}
