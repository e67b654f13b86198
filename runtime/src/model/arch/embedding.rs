//! The token embedding table: dense, or quantized rows dequantized on lookup.
//!
//! A GGUF's `token_embd.weight` is the largest tensor of a small model
//! (151 936 rows). Dequantizing all of it to f32 at load would cost 622 MB
//! for Qwen3-0.6B, four times its Q8_0 size; instead the quantized table is
//! kept (and shared with a tied LM head) and only the looked-up rows are
//! dequantized, which gives the same values.

use candle_core::quantized::{QStorage, QTensor};
use candle_core::{DType, Device, Result, Tensor};
use std::borrow::Cow;
use std::sync::Arc;

/// A `(vocab, hidden)` embedding table.
#[derive(Debug, Clone)]
pub enum Embedding {
    /// A dense table in the activation dtype.
    Dense(Tensor),
    /// A quantized CPU table; rows are dequantized to `dtype` when looked up.
    Quantized {
        /// The table as stored in the GGUF file.
        table: Arc<QTensor>,
        /// The activation dtype rows are converted to.
        dtype: DType,
    },
}

impl Embedding {
    /// Loads the token embedding `(vocab, hidden)` from `weights`, and with
    /// `tied_head` an LM head over the same table (the same bytes when
    /// quantized).
    pub fn load(
        weights: &mut crate::model::weights::Weights,
        vocab: usize,
        hidden: usize,
        dtype: DType,
        tied_head: bool,
    ) -> anyhow::Result<(Embedding, Option<super::linear::Linear>)> {
        use super::linear::Linear;
        use crate::model::weights::Stored;
        let device = weights.device().clone();
        Ok(match weights.embedding_table(vocab, hidden, dtype)? {
            Stored::Dense(table) => {
                let head = tied_head
                    .then(|| Linear::dense(table.clone(), None))
                    .transpose()?;
                (Embedding::Dense(table), head)
            }
            Stored::Quantized(q) => {
                let table = Arc::new(q);
                let head = tied_head
                    .then(|| Linear::quantized_shared(table.clone()))
                    .transpose()?;
                (Embedding::from_qtensor(table, dtype, &device)?, head)
            }
            Stored::Shared(table) => {
                let head = tied_head
                    .then(|| Linear::quantized_shared(table.clone()))
                    .transpose()?;
                (Embedding::from_qtensor(table, dtype, &device)?, head)
            }
        })
    }

    /// Keeps `table` quantized when that saves memory (a quantized type on
    /// the CPU); otherwise dequantizes it to `dtype` on `device`.
    pub fn from_qtensor(table: Arc<QTensor>, dtype: DType, device: &Device) -> Result<Embedding> {
        use candle_core::quantized::GgmlDType::{BF16, F16, F32};
        if device.is_cpu() && !matches!(table.dtype(), F32 | F16 | BF16) {
            Ok(Embedding::Quantized { table, dtype })
        } else {
            Ok(Embedding::Dense(table.dequantize(device)?.to_dtype(dtype)?))
        }
    }

    /// The rows of `ids`, shaped `(ids.len(), hidden)`. The ids must be
    /// inside the vocabulary (the model checks them first).
    pub fn forward(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        match self {
            Embedding::Dense(table) => table.embedding(&Tensor::new(ids, device)?),
            Embedding::Quantized { table, dtype } => {
                let (rows, hidden) = table.shape().dims2()?;
                let kind = table.dtype();
                let row_bytes = hidden / kind.block_size() * kind.type_size();
                let data = table.data()?;
                let mut picked = Vec::with_capacity(ids.len() * row_bytes);
                for &id in ids {
                    let id = id as usize;
                    if id >= rows {
                        candle_core::bail!("token id {id} is outside the embedding ({rows} rows)");
                    }
                    picked.extend_from_slice(&data[id * row_bytes..(id + 1) * row_bytes]);
                }
                let storage = QStorage::from_data(Cow::Owned(picked), &Device::Cpu, kind)?;
                QTensor::new(storage, (ids.len(), hidden))?
                    .dequantize(&Device::Cpu)?
                    .to_dtype(*dtype)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;

    #[test]
    fn quantized_rows_equal_the_dequantized_table() {
        let dev = Device::Cpu;
        let dense = Tensor::randn(0f32, 1.0, (40, 256), &dev).unwrap();
        for kind in [GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K] {
            let table = Arc::new(QTensor::quantize(&dense, kind).unwrap());
            let full = table.dequantize(&dev).unwrap();
            let emb = Embedding::from_qtensor(table, DType::F32, &dev).unwrap();
            assert!(matches!(emb, Embedding::Quantized { .. }));
            let ids = [39u32, 0, 7, 7, 21];
            let got = emb.forward(&ids, &dev).unwrap();
            let want = full.embedding(&Tensor::new(&ids, &dev).unwrap()).unwrap();
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{kind:?}");
            let err = emb.forward(&[40], &dev).unwrap_err().to_string();
            assert!(err.contains("outside the embedding"), "{err}");
        }
    }

    #[test]
    fn float_tables_are_kept_dense() {
        let dev = Device::Cpu;
        let dense = Tensor::randn(0f32, 1.0, (4, 32), &dev).unwrap();
        let table = Arc::new(QTensor::quantize(&dense, GgmlDType::F16).unwrap());
        let emb = Embedding::from_qtensor(table, DType::F32, &dev).unwrap();
        assert!(matches!(emb, Embedding::Dense(_)));
    }
}
