//! Cross-entropy over the vocabulary as one operation with its own gradient.
//!
//! Composed from candle ops, log-softmax and the gather of the target make a
//! dozen passes over the `(tokens, vocab)` logits forward and backward; with
//! Qwen3's 151,936-token vocabulary that is most of a small model's training
//! time. Fused, it is one pass forward (max and log-sum-exp per row) and one
//! backward (`softmax − one-hot`). Other devices use the composed form.

use candle_core::{CpuStorage, Layout, Shape, Tensor, D};
use rayon::prelude::*;

/// Per-row loss `−log softmax(logits)[target]` of `(n, vocab)` f32 logits.
pub fn cross_entropy_rows(logits: &Tensor, targets: &[u32]) -> candle_core::Result<Tensor> {
    let (n, v) = logits.dims2()?;
    if n != targets.len() {
        candle_core::bail!("{n} rows of logits for {} targets", targets.len());
    }
    if let Some(t) = targets.iter().find(|&&t| t as usize >= v) {
        candle_core::bail!("target token {t} is outside the vocabulary ({v})");
    }
    if logits.device().is_cpu() && logits.dtype() == candle_core::DType::F32 {
        return logits.contiguous()?.apply_op1(CrossEntropy {
            targets: targets.to_vec(),
        });
    }
    let t = Tensor::new(targets, logits.device())?.unsqueeze(1)?;
    candle_nn::ops::log_softmax(logits, D::Minus1)?
        .gather(&t, 1)?
        .squeeze(1)?
        .neg()
}

struct CrossEntropy {
    targets: Vec<u32>,
}

fn logsumexp(row: &[f32]) -> f32 {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    m + row.iter().map(|x| (x - m).exp()).sum::<f32>().ln()
}

impl candle_core::CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "warden-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(all) = s else {
            candle_core::bail!("cross-entropy takes f32 logits");
        };
        let (n, v) = l.shape().dims2()?;
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("cross-entropy takes contiguous logits");
        };
        let x = &all[a..b];
        let out: Vec<f32> = (0..n)
            .into_par_iter()
            .map(|i| {
                let row = &x[i * v..(i + 1) * v];
                logsumexp(row) - row[self.targets[i] as usize]
            })
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (n, v) = arg.dims2()?;
        let arg = arg.contiguous()?;
        let (s, l) = arg.storage_and_layout();
        let (candle_core::Storage::Cpu(CpuStorage::F32(all)), Some((a, b))) =
            (&*s, l.contiguous_offsets())
        else {
            candle_core::bail!("cross-entropy takes f32 logits on the CPU");
        };
        let x = &all[a..b];
        let g = grad.to_vec1::<f32>()?;
        let mut out = vec![0f32; n * v];
        out.par_chunks_mut(v).enumerate().for_each(|(i, o)| {
            let row = &x[i * v..(i + 1) * v];
            let lse = logsumexp(row);
            for (o, r) in o.iter_mut().zip(row) {
                *o = (r - lse).exp() * g[i];
            }
            o[self.targets[i] as usize] -= g[i];
        });
        Ok(Some(Tensor::from_vec(out, (n, v), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Same value and gradient as candle's log-softmax and gather.
    #[test]
    fn fused_equals_composed() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f32, 3.0, (5, 1000), &dev).unwrap())).unwrap();
        let targets = [3u32, 999, 0, 500, 3];
        let w = Tensor::new(&[1f32, 2., 0.5, 1., 3.], &dev).unwrap();
        let fused = (cross_entropy_rows(x.as_tensor(), &targets).unwrap() * &w)
            .unwrap()
            .sum_all()
            .unwrap();
        let t = Tensor::new(&targets, &dev).unwrap().unsqueeze(1).unwrap();
        let composed = candle_nn::ops::log_softmax(x.as_tensor(), D::Minus1)
            .unwrap()
            .gather(&t, 1)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .neg()
            .unwrap();
        let composed = (composed * &w).unwrap().sum_all().unwrap();
        let (a, b) = (
            fused.to_scalar::<f32>().unwrap(),
            composed.to_scalar::<f32>().unwrap(),
        );
        assert!((a - b).abs() < 1e-3 * b.abs(), "{a} vs {b}");
        let ga = fused
            .backward()
            .unwrap()
            .get(x.as_tensor())
            .unwrap()
            .clone();
        let gb = composed
            .backward()
            .unwrap()
            .get(x.as_tensor())
            .unwrap()
            .clone();
        let d: f32 = (ga - gb)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(d < 1e-5, "gradients differ by {d}");
        assert!(cross_entropy_rows(x.as_tensor(), &[1000, 0, 0, 0, 0]).is_err());
    }
}
