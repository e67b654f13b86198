//! Making a model that calls tools: training data from a suite's workspace
//! (`synth_data`).

pub mod synth_data;
