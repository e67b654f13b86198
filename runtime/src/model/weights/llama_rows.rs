//! The row order of a Llama GGUF's query and key projections.
//!
//! llama.cpp rotates Llama's queries and keys in interleaved pairs
//! (`x[2i], x[2i+1]`), Hugging Face in halves (`x[i], x[i + d/2]`); its
//! converter reorders the rows of `q_proj` and `k_proj` (and their biases)
//! within each head so that the one rotation on the reordered rows equals
//! the other on the original ones. warden runs the Hugging Face order
//! everywhere — adapters, fusing and training see Hugging Face's layout — so
//! a Llama GGUF's rows are put back at load and reordered again when warden
//! writes one.

/// Which way rows move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// llama.cpp's interleaved order to Hugging Face's halves (reading).
    ToHf,
    /// Hugging Face's halves to llama.cpp's interleaved order (writing).
    ToGguf,
}

/// Reorders the rows of `data` (`rows` rows of equal byte length: a
/// quantized matrix's blocks, or a bias's f32 values) head by head for
/// `heads` heads.
pub fn reorder(data: &[u8], rows: usize, heads: usize, dir: Direction) -> anyhow::Result<Vec<u8>> {
    if heads == 0 || rows == 0 || rows % heads != 0 || (rows / heads) % 2 != 0 {
        anyhow::bail!("cannot reorder {rows} rows into {heads} heads of an even width");
    }
    if data.len() % rows != 0 {
        anyhow::bail!("{} bytes are not {rows} rows of equal length", data.len());
    }
    let (width, half, bytes) = (rows / heads, rows / heads / 2, data.len() / rows);
    let mut out = vec![0u8; data.len()];
    for h in 0..heads {
        for pair in 0..2 {
            for i in 0..half {
                let hf = h * width + pair * half + i;
                let gguf = h * width + 2 * i + pair;
                let (from, to) = match dir {
                    Direction::ToHf => (gguf, hf),
                    Direction::ToGguf => (hf, gguf),
                };
                out[to * bytes..(to + 1) * bytes]
                    .copy_from_slice(&data[from * bytes..(from + 1) * bytes]);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_go_to_halves_and_back() {
        // Two heads of width 4: GGUF rows 0..8 hold HF rows 0,2,1,3 | 4,6,5,7.
        let gguf: Vec<u8> = vec![0, 2, 1, 3, 4, 6, 5, 7];
        let hf = reorder(&gguf, 8, 2, Direction::ToHf).unwrap();
        assert_eq!(hf, (0..8).collect::<Vec<u8>>());
        assert_eq!(reorder(&hf, 8, 2, Direction::ToGguf).unwrap(), gguf);
        assert!(reorder(&gguf, 8, 3, Direction::ToHf).is_err());
    }
}
