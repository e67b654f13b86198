//! AdamW (decoupled weight decay, bias-corrected moments) with linear
//! warm-up, cosine decay and global-norm gradient clipping. Written here
//! rather than taken from candle-nn because a checkpoint must hold the
//! moments, which candle-nn's optimizer keeps private.

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, Layout, Storage, Tensor, Var};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Mutex;

/// Optimizer settings.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct AdamWConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Largest global gradient norm (0: no clipping).
    pub clip: f64,
    /// Warm-up steps (learning rate rising linearly to `lr`).
    pub warmup: usize,
    /// All steps (cosine decay to zero from the end of warm-up).
    pub total: usize,
}

impl AdamWConfig {
    /// The learning rate at step `t` (0-based).
    pub fn lr_at(&self, t: usize) -> f64 {
        if t < self.warmup {
            return self.lr * (t + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let p = ((t - self.warmup) as f64 / span).min(1.0);
        self.lr * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
    }
}

/// The optimizer and its state.
pub struct AdamW {
    cfg: AdamWConfig,
    params: Vec<(String, Var)>,
    moments: Vec<Moments>,
    /// Steps taken.
    pub step: usize,
}

/// First and second moments of one parameter: plain memory for f32 CPU
/// parameters (updated in one fused pass), tensors elsewhere.
enum Moments {
    Cpu(Vec<f32>, Vec<f32>),
    Device(Tensor, Tensor),
}

impl Moments {
    fn zeros(p: &Tensor) -> candle_core::Result<Moments> {
        Ok(if is_cpu_f32(p) {
            Moments::Cpu(vec![0.0; p.elem_count()], vec![0.0; p.elem_count()])
        } else {
            Moments::Device(p.zeros_like()?, p.zeros_like()?)
        })
    }

    fn tensors(&self, p: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        Ok(match self {
            Moments::Cpu(m, v) => (
                Tensor::from_slice(m, p.dims(), p.device())?,
                Tensor::from_slice(v, p.dims(), p.device())?,
            ),
            Moments::Device(m, v) => (m.clone(), v.clone()),
        })
    }

    fn from_tensors(p: &Tensor, m: Tensor, v: Tensor) -> candle_core::Result<Moments> {
        Ok(if is_cpu_f32(p) {
            Moments::Cpu(m.flatten_all()?.to_vec1()?, v.flatten_all()?.to_vec1()?)
        } else {
            Moments::Device(m.to_device(p.device())?, v.to_device(p.device())?)
        })
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
}

impl AdamW {
    /// An optimizer over `params` with zero moments.
    pub fn new(params: Vec<(String, Var)>, cfg: AdamWConfig) -> candle_core::Result<AdamW> {
        let moments = params
            .iter()
            .map(|(_, p)| Moments::zeros(p.as_tensor()))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(AdamW {
            cfg,
            params,
            moments,
            step: 0,
        })
    }

    /// Clips the gradients in `grads` to the global norm and updates every
    /// parameter (a parameter without a gradient is left alone).
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<StepInfo> {
        let mut sq = 0f64;
        for (_, p) in &self.params {
            if let Some(g) = grads.get(p.as_tensor()) {
                sq += match cpu_slice(g, |x| {
                    x.par_iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>()
                }) {
                    Some(s) => s,
                    None => g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64,
                };
            }
        }
        let grad_norm = sq.sqrt();
        if !grad_norm.is_finite() {
            candle_core::bail!(
                "the gradient is not finite (norm {grad_norm}); lower --lr or check the data"
            );
        }
        let clip = if self.cfg.clip > 0.0 && grad_norm > self.cfg.clip {
            self.cfg.clip / grad_norm
        } else {
            1.0
        };
        let lr = self.cfg.lr_at(self.step);
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            match &mut self.moments[i] {
                Moments::Cpu(m, v) if is_cpu_f32(g) => {
                    let op = AdamCpu {
                        g,
                        mv: Mutex::new((m, v)),
                        k: [
                            clip as f32,
                            b1 as f32,
                            b2 as f32,
                            c1 as f32,
                            c2 as f32,
                            self.cfg.eps as f32,
                            lr as f32,
                            self.cfg.weight_decay as f32,
                        ],
                    };
                    p.as_tensor().inplace_op1(&op)?;
                }
                moments => {
                    let (m0, v0) = moments.tensors(p.as_tensor())?;
                    let g = (g * clip)?;
                    let m = ((m0 * b1)? + (&g * (1.0 - b1))?)?;
                    let v = ((v0 * b2)? + (g.sqr()? * (1.0 - b2))?)?;
                    let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + self.cfg.eps)?)?;
                    let decayed = (p.as_tensor() * (1.0 - lr * self.cfg.weight_decay))?;
                    p.set(&(decayed - (update * lr)?)?)?;
                    *moments = Moments::from_tensors(p.as_tensor(), m, v)?;
                }
            }
        }
        Ok(StepInfo { grad_norm, lr })
    }

    /// Parameters and moments by name, for a checkpoint.
    pub fn state(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        let mut s = HashMap::new();
        for (i, (name, p)) in self.params.iter().enumerate() {
            let (m, v) = self.moments[i].tensors(p.as_tensor())?;
            s.insert(format!("param.{name}"), p.as_tensor().copy()?);
            s.insert(format!("m.{name}"), m);
            s.insert(format!("v.{name}"), v);
        }
        Ok(s)
    }

    /// Restores what [`AdamW::state`] saved, after `step` steps.
    pub fn restore(&mut self, state: &HashMap<String, Tensor>, step: usize) -> anyhow::Result<()> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            let get = |k: String| {
                state
                    .get(&k)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("the checkpoint has no {k}: it was written by another run (other --targets, --lora-rank or --full)"))
            };
            let param = get(format!("param.{name}"))?;
            if param.dims() != p.dims() {
                anyhow::bail!(
                    "the checkpoint's {name} is {:?}, this run's is {:?}: it was written by another run",
                    param.dims(),
                    p.dims()
                );
            }
            p.set(&param.to_device(p.device())?)?;
            self.moments[i] = Moments::from_tensors(
                p.as_tensor(),
                get(format!("m.{name}"))?,
                get(format!("v.{name}"))?,
            )?;
        }
        self.step = step;
        Ok(())
    }
}

fn is_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && t.is_contiguous()
}

/// Runs `f` on the f32 numbers of a contiguous CPU tensor.
fn cpu_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    if !is_cpu_f32(t) {
        return None;
    }
    let (s, l) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(all)) = &*s else {
        return None;
    };
    let (a, b) = l.contiguous_offsets()?;
    Some(f(&all[a..b]))
}

/// One AdamW update of a parameter in place, with its moments, in one pass
/// over memory (the tensor form makes a dozen, each allocating).
struct AdamCpu<'a> {
    g: &'a Tensor,
    mv: Mutex<(&'a mut Vec<f32>, &'a mut Vec<f32>)>,
    /// clip, β1, β2, 1−β1ᵗ, 1−β2ᵗ, ε, lr, weight decay
    k: [f32; 8],
}

impl candle_core::InplaceOp1 for AdamCpu<'_> {
    fn name(&self) -> &'static str {
        "warden-adamw"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(all), Some((a, b))) = (s, l.contiguous_offsets()) else {
            candle_core::bail!("AdamW: the parameter is not contiguous f32");
        };
        let p = &mut all[a..b];
        let [clip, b1, b2, c1, c2, eps, lr, wd] = self.k;
        let mut mv = self.mv.lock().expect("not poisoned");
        let (m, v) = &mut *mv;
        cpu_slice(self.g, |g| -> candle_core::Result<()> {
            if g.len() != p.len() || m.len() != p.len() || v.len() != p.len() {
                candle_core::bail!("AdamW: parameter, gradient and moments differ in size");
            }
            const CHUNK: usize = 1 << 14;
            p.par_chunks_mut(CHUNK)
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK))
                .for_each(|(((p, m), v), g)| {
                    for i in 0..p.len() {
                        let g = g[i] * clip;
                        m[i] = b1 * m[i] + (1.0 - b1) * g;
                        v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                        let update = (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
                        p[i] = p[i] * (1.0 - lr * wd) - lr * update;
                    }
                });
            Ok(())
        })
        .unwrap_or_else(|| {
            candle_core::bail!("AdamW: the gradient is not contiguous f32 on the CPU")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The fused CPU update is the tensor-op update (what other devices run),
    /// with clipping, warm-up and weight decay in play, and the schedule
    /// rises then decays to zero.
    #[test]
    fn fused_update_equals_tensor_ops() {
        let cfg = AdamWConfig {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
            clip: 0.5,
            warmup: 2,
            total: 5,
        };
        let dev = Device::Cpu;
        let init = Tensor::randn(0f32, 1.0, (3, 50), &dev).unwrap();
        let run = |fused: bool| {
            let p = Var::from_tensor(&init).unwrap();
            let mut opt = AdamW::new(vec![("p".into(), p.clone())], cfg).unwrap();
            if !fused {
                opt.moments[0] =
                    Moments::Device(init.zeros_like().unwrap(), init.zeros_like().unwrap());
            }
            for k in 0..4 {
                let target = Tensor::full(k as f32, (3, 50), &dev).unwrap();
                let loss = (p.as_tensor() - target)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap();
                let info = opt.step(&loss.backward().unwrap()).unwrap();
                assert!(info.grad_norm > cfg.clip);
            }
            p.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let (a, b) = (run(true), run(false));
        let d = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-6, "{d}");
        assert_ne!(a, init.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let lrs: Vec<f64> = (0..5).map(|t| cfg.lr_at(t)).collect();
        assert!(lrs[0] < lrs[1] && lrs[1] == cfg.lr && lrs[2] > lrs[3] && lrs[3] > lrs[4]);
    }
}
