//! Generation: the loop over the decoder, sampling, and speculative decoding (prompt lookup and a draft model).

pub(crate) mod generate;
pub mod lookup;
pub(crate) mod sampler;
