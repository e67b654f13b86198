//! MLX's affine quantization: the format of mlx-community checkpoints and of
//! `mlx_lm.convert -q`.
//!
//! A quantized `(out, in)` matrix is stored as three tensors: `weight`
//! (`uint32`, `(out, in·bits/32)`), and `scales` and `biases`
//! (`(out, in/group)`, in the model's float type). Each group of `group`
//! consecutive values of a row is `w = scale·q + bias` with `q` an unsigned
//! `bits`-bit integer. The integers of a row are one little-endian bit
//! stream: value `i` occupies bits `i·bits .. (i+1)·bits` of the row's bytes
//! (for 2, 4 and 8 bits that is "low bits first inside each `uint32`"; for
//! 3, 5 and 6 bits MLX packs 8, 8 and 4 values into 3, 5 and 3 bytes, which
//! is the same stream).
//!
//! warden dequantizes these matrices at load (see `weights.rs`): simple and
//! exact, at the cost of holding the model in its compute dtype (4 bytes a
//! parameter in f32 on the CPU, 2 in bf16 on a GPU) instead of
//! `bits/8 + 2·2/group` bytes.

use anyhow::bail;

/// Bit widths MLX's affine mode supports.
pub const BITS: [u32; 6] = [2, 3, 4, 5, 6, 8];
/// Group sizes MLX supports.
pub const GROUP_SIZES: [usize; 3] = [32, 64, 128];

/// How one matrix is quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MlxQuant {
    /// Values per scale/bias pair.
    pub group_size: usize,
    /// Bits per value.
    pub bits: u32,
}

impl MlxQuant {
    /// Checks `bits` and `group_size` are ones MLX writes.
    pub fn new(group_size: usize, bits: u32) -> anyhow::Result<MlxQuant> {
        if !BITS.contains(&bits) {
            bail!(
                "MLX quantization with {bits} bits is not supported; MLX uses 2, 3, 4, 5, 6 or 8"
            );
        }
        if !GROUP_SIZES.contains(&group_size) {
            bail!(
                "MLX quantization group size {group_size} is not supported; MLX uses 32, 64 or 128"
            );
        }
        Ok(MlxQuant { group_size, bits })
    }

    /// `uint32` words per row of `cols` values.
    pub fn packed_cols(&self, cols: usize) -> usize {
        cols * self.bits as usize / 32
    }

    /// Checks a row of `cols` values can be stored in this format.
    pub fn check_cols(&self, cols: usize) -> anyhow::Result<()> {
        if cols % self.group_size != 0 {
            bail!(
                "rows of {cols} values are not a multiple of the group size {}",
                self.group_size
            );
        }
        Ok(())
    }
}

/// Packs `values` (each `< 2^bits`) into the little-endian bit stream MLX
/// stores; `values.len() · bits` must be a multiple of 32.
pub fn pack(values: &[u8], bits: u32) -> Vec<u32> {
    let total_bits = values.len() * bits as usize;
    debug_assert_eq!(total_bits % 32, 0);
    let mut words = vec![0u32; total_bits.div_ceil(32)];
    let mut pos = 0usize;
    for &v in values {
        let (w, off) = (pos / 32, (pos % 32) as u32);
        let v = u64::from(v) & ((1u64 << bits) - 1);
        let spread = v << off;
        words[w] |= spread as u32;
        if off + bits > 32 {
            words[w + 1] |= (spread >> 32) as u32;
        }
        pos += bits as usize;
    }
    words
}

/// Unpacks `out.len()` values of `bits` bits from `words`.
pub fn unpack(words: &[u32], bits: u32, out: &mut [u8]) {
    let mask = (1u64 << bits) - 1;
    let mut pos = 0usize;
    for o in out.iter_mut() {
        let (w, off) = (pos / 32, pos % 32);
        let lo = u64::from(words[w]);
        let hi = words.get(w + 1).copied().map_or(0, u64::from);
        *o = (((lo | (hi << 32)) >> off) & mask) as u8;
        pos += bits as usize;
    }
}

/// A quantized `(rows, cols)` matrix.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// `(rows, cols·bits/32)` packed values.
    pub words: Vec<u32>,
    /// `(rows, cols/group)` scales.
    pub scales: Vec<f32>,
    /// `(rows, cols/group)` biases.
    pub biases: Vec<f32>,
}

/// Quantizes a row-major `(rows, cols)` matrix as MLX does: per group the
/// endpoint of larger magnitude is represented exactly; values are chosen
/// with the f32 scale and bias, which are then stored through `round` (the
/// dtype they are written in, bf16 for most MLX models), as MLX does.
pub fn quantize(
    w: &[f32],
    cols: usize,
    q: MlxQuant,
    round: impl Fn(f32) -> f32,
) -> anyhow::Result<Quantized> {
    q.check_cols(cols)?;
    let n_bins = ((1u32 << q.bits) - 1) as f32;
    let groups = w.len() / q.group_size;
    let mut values = vec![0u8; w.len()];
    let (mut scales, mut biases) = (Vec::with_capacity(groups), Vec::with_capacity(groups));
    for (g, chunk) in w.chunks(q.group_size).enumerate() {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &x in chunk {
            lo = lo.min(x);
            hi = hi.max(x);
        }
        // The endpoint of larger magnitude becomes exact: with it as the
        // bias and a scale that divides it, zero lands on a grid point.
        let low_edge = lo.abs() > hi.abs();
        let mut scale = ((hi - lo) / n_bins).max(1e-7);
        if !low_edge {
            scale = -scale;
        }
        let edge = if low_edge { lo } else { hi };
        let q0 = (edge / scale).round_ties_even();
        let mut bias = 0.0;
        if q0 != 0.0 {
            scale = edge / q0;
            bias = edge;
        }
        for (j, &x) in chunk.iter().enumerate() {
            let v = ((x - bias) / scale).round_ties_even().clamp(0.0, n_bins);
            values[g * q.group_size + j] = v as u8;
        }
        scales.push(round(scale));
        biases.push(round(bias));
    }
    Ok(Quantized {
        words: pack(&values, q.bits),
        scales,
        biases,
    })
}

/// The `(rows, cols)` values of a quantized matrix.
pub fn dequantize(
    words: &[u32],
    scales: &[f32],
    biases: &[f32],
    rows: usize,
    cols: usize,
    q: MlxQuant,
) -> anyhow::Result<Vec<f32>> {
    q.check_cols(cols)?;
    let wpr = q.packed_cols(cols);
    let gpr = cols / q.group_size;
    if words.len() != rows * wpr || scales.len() != rows * gpr || biases.len() != rows * gpr {
        bail!(
            "a {rows}×{cols} matrix at {} bits, group {} needs {} packed words and {} scales and biases; got {}, {} and {}",
            q.bits,
            q.group_size,
            rows * wpr,
            rows * gpr,
            words.len(),
            scales.len(),
            biases.len()
        );
    }
    let mut out = vec![0f32; rows * cols];
    let mut row = vec![0u8; cols];
    for r in 0..rows {
        unpack(&words[r * wpr..(r + 1) * wpr], q.bits, &mut row);
        for (g, vals) in row.chunks(q.group_size).enumerate() {
            let (s, b) = (scales[r * gpr + g], biases[r * gpr + g]);
            let dst = &mut out[r * cols + g * q.group_size..][..q.group_size];
            for (d, &v) in dst.iter_mut().zip(vals) {
                *d = s * f32::from(v) + b;
            }
        }
    }
    Ok(out)
}

/// The `quantization` object of an MLX checkpoint's `config.json`: one
/// format for every quantized matrix, with per-module overrides (an object,
/// or `false` for a module left unquantized).
#[derive(Debug, Clone)]
pub struct MlxQuantConfig {
    default: MlxQuant,
    overrides: std::collections::HashMap<String, Option<MlxQuant>>,
}

impl MlxQuantConfig {
    /// Reads it from `config.json`'s value; `None` when the checkpoint is
    /// not quantized.
    pub fn from_config(config: &serde_json::Value) -> anyhow::Result<Option<MlxQuantConfig>> {
        let q = match config.get("quantization") {
            Some(q) => q,
            None => match config.get("quantization_config") {
                Some(q) if q.get("quant_method").is_some() => bail!(
                    "quant_method {} is not supported; warden reads MLX-quantized safetensors (config \"quantization\") and GGUF files",
                    q["quant_method"]
                ),
                Some(q) => q,
                None => return Ok(None),
            },
        };
        let Some(obj) = q.as_object() else {
            bail!("config.json: quantization must be an object");
        };
        if let Some(mode) = obj
            .get("mode")
            .and_then(|m| m.as_str())
            .filter(|m| *m != "affine")
        {
            bail!("MLX quantization mode {mode:?} is not supported; warden reads the affine mode");
        }
        let one = |v: &serde_json::Value| -> anyhow::Result<MlxQuant> {
            let g = v.get("group_size").and_then(|g| g.as_u64()).unwrap_or(64) as usize;
            let b = v.get("bits").and_then(|b| b.as_u64()).unwrap_or(4) as u32;
            MlxQuant::new(g, b)
        };
        let default = one(q)?;
        let mut overrides = std::collections::HashMap::new();
        for (k, v) in obj {
            match v {
                serde_json::Value::Object(_) => {
                    overrides.insert(k.clone(), Some(one(v)?));
                }
                serde_json::Value::Bool(false) => {
                    overrides.insert(k.clone(), None);
                }
                _ => {}
            }
        }
        Ok(Some(MlxQuantConfig { default, overrides }))
    }

    /// One format for everything.
    pub fn uniform(q: MlxQuant) -> MlxQuantConfig {
        MlxQuantConfig {
            default: q,
            overrides: Default::default(),
        }
    }

    /// The format of `module` (`model.layers.0.mlp.down_proj`), or `None`
    /// when it is left unquantized.
    pub fn for_module(&self, module: &str) -> Option<MlxQuant> {
        match self.overrides.get(module) {
            Some(o) => *o,
            None => Some(self.default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Reference bit positions written by hand for the 3-, 5- and 6-bit
    /// byte packs MLX documents in its kernels.
    #[test]
    fn odd_widths_follow_mlx_byte_packs() {
        // 3 bits: 8 values in 3 bytes; value 2 straddles bytes 0 and 1.
        let w = pack(
            &[
                1, 2, 7, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0,
            ],
            3,
        );
        let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(bytes[0], 0b1101_0001); // 1 | 2<<3 | (7&3)<<6
        assert_eq!(bytes[1] & 1, 1); // 7>>2
        assert_eq!(bytes[2] >> 5, 5); // value 7 at bits 21..24
                                      // 6 bits: 4 values in 3 bytes.
        let vals: Vec<u8> = (0..16).map(|i| (i * 4 + 3) as u8).collect();
        let w = pack(&vals, 6);
        let b: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(b[0] & 0x3f, 3);
        assert_eq!((b[0] >> 6) | ((b[1] & 0x0f) << 2), 7);
        assert_eq!((b[1] >> 4) | ((b[2] & 0x03) << 4), 11);
        assert_eq!(b[2] >> 2, 15);
        // 5 bits: 8 values in 5 bytes.
        let vals: Vec<u8> = (0..32).map(|i| (31 - i) as u8).collect();
        let w = pack(&vals, 5);
        let b: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(b[0] & 0x1f, 31);
        assert_eq!((b[0] >> 5) | ((b[1] & 0x3) << 3), 30);
        assert_eq!(b[4] >> 3, 24);
    }

    #[test]
    fn unpack_inverts_pack_for_every_width_and_group() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for bits in BITS {
            for group in GROUP_SIZES {
                let q = MlxQuant::new(group, bits).unwrap();
                let (rows, cols) = (3, group * 2);
                let values: Vec<u8> = (0..rows * cols)
                    .map(|_| rng.random_range(0..(1u32 << bits)) as u8)
                    .collect();
                let words = pack(&values, bits);
                assert_eq!(words.len(), rows * q.packed_cols(cols));
                let mut back = vec![0u8; values.len()];
                unpack(&words, bits, &mut back);
                assert_eq!(back, values, "{bits} bits, group {group}");
                // Row by row, as the loader reads them.
                let scales: Vec<f32> = (0..rows * cols / group).map(|i| 0.5 + i as f32).collect();
                let biases: Vec<f32> = (0..rows * cols / group).map(|i| -(i as f32)).collect();
                let w = dequantize(&words, &scales, &biases, rows, cols, q).unwrap();
                for (i, (&got, &v)) in w.iter().zip(&values).enumerate() {
                    let g = i / group;
                    assert_eq!(got, scales[g] * f32::from(v) + biases[g]);
                }
            }
        }
    }

    #[test]
    fn quantize_error_is_within_half_a_step() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for bits in BITS {
            for group in GROUP_SIZES {
                let q = MlxQuant::new(group, bits).unwrap();
                let (rows, cols) = (4, 256);
                let w: Vec<f32> = (0..rows * cols)
                    .map(|_| rng.random_range(-0.1..0.1))
                    .collect();
                let qm = quantize(&w, cols, q, |x| x).unwrap();
                let back = dequantize(&qm.words, &qm.scales, &qm.biases, rows, cols, q).unwrap();
                // Within the grid's range the error is at most half a step;
                // the exact edge can shrink the range at few bits, and values
                // beyond it are clamped to its end, as in MLX.
                let n = ((1u32 << bits) - 1) as f32;
                for (i, (&a, &b)) in w.iter().zip(&back).enumerate() {
                    let (s, z) = (qm.scales[i / group], qm.biases[i / group]);
                    let (lo, hi) = (z.min(z + s * n), z.max(z + s * n));
                    let outside = (lo - a).max(a - hi).max(0.0);
                    assert!(
                        (a - b).abs() <= s.abs() * 0.5 + outside + 1e-6,
                        "{bits}/{group}: {a} vs {b}"
                    );
                }
                // The larger endpoint of each group is exact.
                for (g, chunk) in w.chunks(group).enumerate() {
                    let edge =
                        chunk
                            .iter()
                            .copied()
                            .fold(0f32, |m, x| if x.abs() > m.abs() { x } else { m });
                    let got = back[g * group + chunk.iter().position(|&x| x == edge).unwrap()];
                    assert!(
                        (got - edge).abs() <= 1e-6 * edge.abs().max(1.0),
                        "{bits}/{group}"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_formats_are_refused() {
        assert!(MlxQuant::new(64, 7).is_err());
        assert!(MlxQuant::new(16, 4).is_err());
        let q = MlxQuant::new(64, 4).unwrap();
        assert!(quantize(&[0.0; 96], 96, q, |x| x).is_err());
        assert!(dequantize(&[0; 3], &[1.0], &[0.0], 1, 64, q).is_err());
    }
}
