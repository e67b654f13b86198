//! GGUF tensor types by the names the command line and messages use.

use anyhow::bail;
use candle_core::quantized::GgmlDType;

/// Parses `q8_0`, `q4_k`, … as written on the command line.
pub fn parse_gguf_type(s: &str) -> anyhow::Result<GgmlDType> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "f32" => GgmlDType::F32,
        "f16" => GgmlDType::F16,
        "q4_0" => GgmlDType::Q4_0,
        "q4_1" => GgmlDType::Q4_1,
        "q5_0" => GgmlDType::Q5_0,
        "q5_1" => GgmlDType::Q5_1,
        "q8_0" => GgmlDType::Q8_0,
        "q2_k" => GgmlDType::Q2K,
        "q3_k" => GgmlDType::Q3K,
        "q4_k" | "q4_k_m" => GgmlDType::Q4K,
        "q5_k" | "q5_k_m" => GgmlDType::Q5K,
        "q6_k" => GgmlDType::Q6K,
        other => bail!("unknown GGUF type {other:?}; use one of f32, f16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k"),
    })
}

/// The command-line name of a GGUF tensor type (`q4_k`, `q8_0`, …).
pub fn gguf_type_name(t: GgmlDType) -> String {
    let debug = format!("{t:?}").to_ascii_lowercase();
    match debug.strip_suffix('k') {
        Some(base) if debug.len() == 3 => format!("{base}_k"),
        _ => debug,
    }
}
