//! Reading tensors out of safetensors files one at a time.
//!
//! The files are read, not memory-mapped: pages of a mapped file stay
//! resident while the tensors are copied (and converted) out of them, so
//! loading a bf16 checkpoint as f32 would peak at file + model. Read tensor
//! by tensor, the peak is the model plus its largest tensor.

use anyhow::{bail, Context as _};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Where one tensor lies.
struct Entry {
    file: usize,
    dtype: DType,
    shape: Vec<usize>,
    /// Byte range inside the file.
    start: u64,
    len: u64,
}

/// The tensors of one or several safetensors files (the shards of one
/// checkpoint), indexed by name from their headers.
pub struct SafetensorsFiles {
    files: Vec<(PathBuf, File)>,
    tensors: HashMap<String, Entry>,
}

impl SafetensorsFiles {
    /// Opens `paths` and reads their headers; a truncated or corrupt file
    /// is reported here, naming it, before any tensor is read.
    pub fn open(paths: Vec<PathBuf>) -> anyhow::Result<SafetensorsFiles> {
        let mut files = Vec::with_capacity(paths.len());
        let mut tensors = HashMap::new();
        for (i, path) in paths.into_iter().enumerate() {
            let mut file =
                File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            for (name, entry) in read_header(&mut file, &path, i)? {
                tensors.insert(name, entry);
            }
            files.push((path, file));
        }
        Ok(SafetensorsFiles { files, tensors })
    }

    /// The files, for messages.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }

    /// Whether a tensor called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Whether `name` is stored as packed `uint32` (an MLX-quantized weight).
    pub fn is_u32(&self, name: &str) -> bool {
        self.tensors
            .get(name)
            .is_some_and(|e| e.dtype == DType::U32)
    }

    /// The stored shape of `name`.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|e| e.shape.as_slice())
    }

    /// Reads `name` and converts it to `dtype` on `device`.
    pub fn load(&self, name: &str, dtype: DType, device: &Device) -> anyhow::Result<Tensor> {
        let Some(e) = self.tensors.get(name) else {
            bail!("tensor {name} is missing");
        };
        if e.dtype == DType::U32 {
            bail!("tensor {name} is packed uint32 (MLX-quantized) but has no {} beside it; the checkpoint is incomplete", name.replace(".weight", ".scales"));
        }
        let bytes = self.read(name, e)?;
        let t = Tensor::from_raw_buffer(&bytes, e.dtype, &e.shape, &Device::Cpu)?;
        drop(bytes);
        Ok(t.to_dtype(dtype)?.to_device(device)?)
    }

    /// The stored bytes of tensor `name`.
    fn read(&self, name: &str, e: &Entry) -> anyhow::Result<Vec<u8>> {
        let (path, file) = &self.files[e.file];
        let mut bytes = vec![0u8; e.len as usize];
        let mut f = file;
        f.seek(SeekFrom::Start(e.start))
            .and_then(|_| f.read_exact(&mut bytes))
            .with_context(|| format!("cannot read tensor {name} from {}", path.display()))?;
        Ok(bytes)
    }

    /// Reads a packed `uint32` tensor's words and shape.
    pub fn load_u32(&self, name: &str) -> anyhow::Result<(Vec<u32>, Vec<usize>)> {
        let Some(e) = self.tensors.get(name).filter(|e| e.dtype == DType::U32) else {
            bail!("tensor {name} is missing or not uint32");
        };
        let words = self
            .read(name, e)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((words, e.shape.clone()))
    }
}

/// Parses the header of `file` (shard number `index`) and checks that every
/// tensor it lists lies inside the file and has the size its shape says.
fn read_header(file: &mut File, path: &Path, index: usize) -> anyhow::Result<Vec<(String, Entry)>> {
    let shown = path.display();
    let size = file.metadata()?.len();
    let mut n = [0u8; 8];
    file.read_exact(&mut n).map_err(|_| {
        anyhow::anyhow!("{shown} is not a safetensors file (shorter than its 8-byte header length)")
    })?;
    let header_len = u64::from_le_bytes(n);
    if header_len > size.saturating_sub(8) || header_len > 100 << 20 {
        bail!("{shown} is truncated or corrupt: header claims {header_len} bytes, file has {size}");
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| anyhow::anyhow!("{shown} has a corrupt safetensors header: {e}"))?;
    let Some(obj) = json.as_object() else {
        bail!("{shown} has a corrupt safetensors header: not a JSON object");
    };
    let data_start = 8 + header_len;
    let data_len = size - data_start;
    let mut out = Vec::with_capacity(obj.len());
    for (name, info) in obj.iter().filter(|(k, _)| *k != "__metadata__") {
        let corrupt =
            || anyhow::anyhow!("{shown} has a corrupt safetensors header: bad entry for {name}");
        // The entry in the `safetensors` crate's own type; the checks that
        // follow are warden's (each error names the file and the tensor,
        // and a shard need not hold every tensor contiguously).
        let info: safetensors::tensor::TensorInfo =
            serde_json::from_value(info.clone()).map_err(|_| corrupt())?;
        let shape = info.shape;
        let (begin, end) = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
        if end > data_len {
            bail!("{shown} is truncated: tensor {name} ends at byte {end} of the data, which has only {data_len} bytes; download it again");
        }
        let stored = format!("{:?}", info.dtype);
        let dtype = match info.dtype {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            safetensors::Dtype::U32 => DType::U32,
            _ => bail!("{shown}: tensor {name} is stored as {stored}; warden reads f32, f16 and bf16 checkpoints, MLX-quantized ones (uint32) and GGUF files"),
        };
        // Checked: the header's shape is untrusted, and a product that
        // wraps would pass as a small tensor.
        let want = shape
            .iter()
            .try_fold(dtype.size_in_bytes() as u64, |a, d| {
                a.checked_mul(*d as u64)
            })
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{shown} is corrupt: tensor {name} has a shape {shape:?} too large to exist"
                )
            })?;
        if end < begin || end - begin != want {
            bail!("{shown} is corrupt: tensor {name} of shape {shape:?} ({stored}) needs {want} bytes but has {}", end.saturating_sub(begin));
        }
        out.push((
            name.clone(),
            Entry {
                file: index,
                dtype,
                shape,
                start: data_start + begin,
                len: want,
            },
        ));
    }
    Ok(out)
}
