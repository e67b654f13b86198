//! Generation: the loop over the decoder, sampling, speculative decoding (prompt lookup and a draft model), and its benchmark.

pub mod bench;
pub mod constraint;
pub(crate) mod generate;
pub mod lookup;
pub(crate) mod sampler;
