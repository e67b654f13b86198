//! Making a model that calls tools: training data from a suite's workspace
//! (`synth_data`), examples rendered by the model's own template
//! (`examples`), a differentiable Qwen3 (`net`), the optimizer (`optim`) and
//! the training run (`finetune`).

pub mod examples;
pub mod finetune;
pub mod loss;
pub mod net;
pub mod optim;
pub mod synth_data;
