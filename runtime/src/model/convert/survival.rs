//! How much of an adapter's delta survives quantization of the fused
//! weight: for `W` and `ΔW`, `‖Q(W+ΔW) − Q(W)‖ / ‖ΔW‖` and the cosine
//! between `Q(W+ΔW) − Q(W)` and `ΔW`. When the format's rounding step is
//! larger than the delta, `Q(W+ΔW)` rounds back to `Q(W)` almost
//! everywhere and the fine-tune is gone before the model runs: this is the
//! figure that says so.

use crate::model::convert::quantize::QuantFormat;
use candle_core::{DType, Tensor};

/// One matrix, or the total.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SurvivalRow {
    /// `model.layers.N.<module>.weight`, or `total`.
    pub tensor: String,
    /// The format the matrix is written in: the one asked for, or the wider
    /// one its rows fall back to (`q8_0`, `f16`, `bf16`); empty for `total`.
    pub written_as: String,
    /// `‖ΔW‖` (Frobenius).
    pub delta_norm: f64,
    /// `‖Q(W+ΔW) − Q(W)‖`.
    pub survived_norm: f64,
    /// `survived_norm / delta_norm`.
    pub ratio: f64,
    /// Cosine between `Q(W+ΔW) − Q(W)` and `ΔW` (1: kept, 0: lost).
    pub cosine: f64,
}

/// The table for one format.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Survival {
    /// The format (`q4_k`, `mlx-5`, …).
    pub format: String,
    /// Per adapted matrix.
    pub matrices: Vec<SurvivalRow>,
    /// Over all of them.
    pub total: SurvivalRow,
    /// Matrices written wider than `format` (their rows do not fit its
    /// blocks), which keep more of the delta.
    pub written_wider: usize,
    /// Whether most of the delta is lost (total cosine under 0.5); never
    /// on no delta at all.
    pub lost: bool,
}

/// Sums for one matrix: ‖Δ‖², ‖d‖², ⟨d, Δ⟩, with `Q` the format it is
/// written in (`None`: bf16, where MLX keeps matrices that do not fit).
fn sums(w: &Tensor, delta: &Tensor, format: Option<QuantFormat>) -> anyhow::Result<[f64; 3]> {
    let q = |t: &Tensor| -> anyhow::Result<Tensor> {
        match format {
            Some(f) => f.roundtrip(t),
            None => Ok(t.to_dtype(DType::BF16)?.to_dtype(DType::F32)?),
        }
    };
    let fused = (w + delta)?;
    let d = (q(&fused)? - q(w)?)?;
    let dot = |a: &Tensor, b: &Tensor| -> anyhow::Result<f64> {
        Ok(f64::from((a * b)?.sum_all()?.to_scalar::<f32>()?))
    };
    Ok([dot(delta, delta)?, dot(&d, &d)?, dot(&d, delta)?])
}

fn row(tensor: String, written_as: String, [dd, ss, sd]: [f64; 3]) -> SurvivalRow {
    let (delta_norm, survived_norm) = (dd.sqrt(), ss.sqrt());
    SurvivalRow {
        tensor,
        written_as,
        delta_norm,
        survived_norm,
        ratio: if delta_norm > 0.0 {
            survived_norm / delta_norm
        } else {
            0.0
        },
        cosine: if delta_norm > 0.0 && survived_norm > 0.0 {
            sd / (delta_norm * survived_norm)
        } else {
            0.0
        },
    }
}

/// The survival of each `(name, W, ΔW)` (f32, `(out, in)`) as the file
/// `format` asks for is written: a matrix whose rows do not fit the format
/// is measured in the wider format it is written in, as the file holds it.
pub fn survival(
    matrices: &[(String, Tensor, Tensor)],
    format: QuantFormat,
) -> anyhow::Result<Survival> {
    let mut rows = Vec::new();
    let mut total = [0f64; 3];
    let mut written_wider = 0;
    for (name, w, delta) in matrices {
        let as_written = format.written_as(w.dims2()?.1);
        if as_written != Some(format) {
            written_wider += 1;
        }
        let s = sums(w, delta, as_written)?;
        for (t, x) in total.iter_mut().zip(s) {
            *t += x;
        }
        let written = as_written.map_or("bf16".to_string(), |f| f.name());
        rows.push(row(name.clone(), written, s));
    }
    let total = row("total".into(), String::new(), total);
    Ok(Survival {
        format: format.name(),
        lost: total.delta_norm > 0.0 && total.cosine < 0.5,
        matrices: rows,
        total,
        written_wider,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A base like a real checkpoint's matrix and a rank-4 delta of
    /// relative size `rel`.
    fn pair(rel: f64, seed: u64) -> (Tensor, Tensor) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (o, i, r) = (256, 512, 4);
        let mut draw =
            |n: usize, a: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(-a..a)).collect() };
        let w = Tensor::from_vec(draw(o * i, 0.07), (o, i), &Device::Cpu).unwrap();
        let a = Tensor::from_vec(draw(r * i, 1.0), (r, i), &Device::Cpu).unwrap();
        let b = Tensor::from_vec(draw(o * r, 1.0), (o, r), &Device::Cpu).unwrap();
        let d = b.matmul(&a).unwrap();
        let rms = |t: &Tensor| {
            f64::from(
                t.sqr()
                    .unwrap()
                    .mean_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap(),
            )
            .sqrt()
        };
        let d = (&d * (rel * rms(&w) / rms(&d))).unwrap();
        (w, d)
    }

    fn cosine(format: &str, rel: f64) -> f64 {
        let (w, d) = pair(rel, 3);
        let f = QuantFormat::parse(format, None).unwrap();
        survival(&[("m".into(), w, d)], f).unwrap().total.cosine
    }

    #[test]
    fn survival_falls_as_bits_fall() {
        let rel = 0.02;
        let gguf: Vec<f64> = ["q8_0", "q6_k", "q5_k", "q4_k"]
            .iter()
            .map(|f| cosine(f, rel))
            .collect();
        let mlx: Vec<f64> = ["mlx-8", "mlx-6", "mlx-5", "mlx-4"]
            .iter()
            .map(|f| cosine(f, rel))
            .collect();
        for v in [&gguf, &mlx] {
            assert!(v.windows(2).all(|p| p[0] > p[1]), "not falling: {v:?}");
        }
        // At 8 bits a 2 % delta mostly survives; at 4 bits most of it is lost.
        assert!(gguf[0] > 0.8 && mlx[0] > 0.8, "{gguf:?} {mlx:?}");
        assert!(gguf[3] < 0.5 && mlx[3] < 0.5, "{gguf:?} {mlx:?}");
    }

    #[test]
    fn a_large_delta_survives_four_bits_better_than_a_small_one() {
        for f in ["q4_k", "q4_0", "mlx-4"] {
            let (small, large) = (cosine(f, 0.02), cosine(f, 0.5));
            assert!(large > small, "{f}: {large} <= {small}");
            assert!(large > 0.8, "{f}: {large}");
        }
    }

    #[test]
    fn matrices_that_do_not_fit_are_measured_as_written_and_never_make_a_verdict_alone() {
        // Rows of 64 do not fit q6_k's blocks of 256: written as q8_0, as
        // llama.cpp's quantizer falls back (q4_k to q5_0, q5_k to q5_1).
        let (w, d) = pair(0.02, 5);
        let (w, d) = (w.narrow(1, 0, 64).unwrap(), d.narrow(1, 0, 64).unwrap());
        let f = QuantFormat::parse("q6_k", None).unwrap();
        let s = survival(&[("m".into(), w.clone(), d.clone())], f).unwrap();
        assert_eq!(s.matrices.len(), 1);
        assert_eq!(
            (s.written_wider, s.matrices[0].written_as.as_str()),
            (1, "q8_0")
        );
        let q8 = survival(
            &[("m".into(), w.clone(), d.clone())],
            QuantFormat::parse("q8_0", None).unwrap(),
        )
        .unwrap();
        assert_eq!(s.total.cosine, q8.total.cosine);
        let q4k = survival(
            &[("m".into(), w, d)],
            QuantFormat::parse("q4_k", None).unwrap(),
        )
        .unwrap();
        assert_eq!(q4k.matrices[0].written_as, "q5_0");
        assert!(!s.lost, "{:?}", s.total);
        // No matrices, or no delta: no verdict.
        assert!(!survival(&[], f).unwrap().lost);
    }

    #[test]
    fn no_quantization_loss_means_full_survival() {
        let (w, d) = pair(0.1, 1);
        let f = QuantFormat::parse("q8_0", None).unwrap();
        let s = survival(&[("m".into(), w, d)], f).unwrap();
        assert!(!s.lost);
        assert!((s.total.ratio - 1.0).abs() < 0.1, "{:?}", s.total);
    }
}
