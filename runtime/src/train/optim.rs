//! AdamW (decoupled weight decay, bias-corrected moments) with linear
//! warm-up, cosine decay and global-norm gradient clipping. Written here
//! rather than taken from candle-nn because a checkpoint must hold the
//! moments, which candle-nn's optimizer keeps private.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use std::collections::HashMap;

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
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Steps taken.
    pub step: usize,
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
        let m = params
            .iter()
            .map(|(_, p)| p.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(AdamW {
            cfg,
            params,
            m,
            v,
            step: 0,
        })
    }

    /// Clips the gradients in `grads` to the global norm and updates every
    /// parameter (a parameter without a gradient is left alone).
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<StepInfo> {
        let mut sq = 0f64;
        for (_, p) in &self.params {
            if let Some(g) = grads.get(p.as_tensor()) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
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
            let g = (g * clip)?;
            let m = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + self.cfg.eps)?)?;
            let decayed = (p.as_tensor() * (1.0 - lr * self.cfg.weight_decay))?;
            p.set(&(decayed - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(StepInfo { grad_norm, lr })
    }

    /// Parameters and moments by name, for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut s = HashMap::new();
        for (i, (name, p)) in self.params.iter().enumerate() {
            s.insert(format!("param.{name}"), p.as_tensor().clone());
            s.insert(format!("m.{name}"), self.m[i].clone());
            s.insert(format!("v.{name}"), self.v[i].clone());
        }
        s
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
            self.m[i] = get(format!("m.{name}"))?.to_device(p.device())?;
            self.v[i] = get(format!("v.{name}"))?.to_device(p.device())?;
        }
        self.step = step;
        Ok(())
    }
}
