//! Weights repacked at first use so that one 32-byte load holds 4 values of
//! each of 8 rows: the kernel multiplies 8 output rows by one broadcast
//! group of 4 activations per instruction, every lane of the result is one
//! row's sum (no horizontal reductions), and each thread streams one
//! contiguous, cache-line-aligned region. Same bytes per value as the file
//! (Q8_0) or 2.8 % more (Q4_K, scales unpacked to bytes).
//!
//! Rows are grouped in tiles of 8 (the last padded with zero scales); each
//! tile holds its blocks in order.

use super::{scale_min_k4, Kind};

/// Rows per tile.
pub const ROWS: usize = 8;

/// Bytes of one tile-block of Q8_0x8: 8 f16 scales, then for each group of
/// 4 values, 4 bytes of each of the 8 rows.
pub const Q8_0X8: usize = 16 + 8 * 32;

/// Bytes of one tile-super-block of Q4_Kx8: 8 f16 `d`, 8 f16 `dmin`, the 8
/// sub-blocks' scales then minimums as bytes (`[sub][row]`), then for each
/// 64-value chunk and group of 4, 4 bytes of each row (low nibbles: values
/// `64c + 4g + j`, high nibbles: `64c + 32 + 4g + j`, as in the file).
pub const Q4KX8: usize = 32 + 64 + 64 + 4 * 8 * 32;

/// A weight repacked for the x86 kernels.
#[derive(Debug)]
pub struct Packed {
    /// The source type.
    pub kind: Kind,
    /// Rows (outputs), before padding.
    pub n: usize,
    /// Columns (inputs).
    pub k: usize,
    /// Tiles, each `k / block` tile-blocks.
    pub data: PageBuf,
}

impl Packed {
    /// Bytes per tile-block.
    pub fn block_bytes(kind: Kind) -> Option<usize> {
        match kind {
            Kind::Q8_0 => Some(Q8_0X8),
            Kind::Q4K => Some(Q4KX8),
            _ => None,
        }
    }

    /// Bytes per tile (8 rows, all of `k`).
    pub fn tile_bytes(&self) -> usize {
        self.k / self.kind.block_values() * Self::block_bytes(self.kind).unwrap_or(0)
    }

    /// Tiles.
    pub fn tiles(&self) -> usize {
        self.n.div_ceil(ROWS)
    }

    /// Repacks `data` (`n` rows of `k` in GGUF blocks of `kind`), or `None`
    /// for a type without a packed layout or data that is not whole rows of
    /// whole blocks (the caller then multiplies `data` as it is).
    pub fn new(kind: Kind, n: usize, k: usize, data: &[u8]) -> Option<Packed> {
        let bb = Self::block_bytes(kind)?;
        let nb = k / kind.block_values();
        let src_bb = kind.block_bytes();
        if n == 0 || k == 0 || k % kind.block_values() != 0 || data.len() != n * nb * src_bb {
            return None;
        }
        let tiles = n.div_ceil(ROWS);
        let mut out = PageBuf::zeroed(tiles * nb * bb);
        let buf = out.as_mut_slice();
        for t in 0..tiles {
            for b in 0..nb {
                let dst = &mut buf[(t * nb + b) * bb..(t * nb + b + 1) * bb];
                for r in 0..ROWS.min(n - t * ROWS) {
                    let row = t * ROWS + r;
                    let src = &data[(row * nb + b) * src_bb..(row * nb + b + 1) * src_bb];
                    match kind {
                        Kind::Q8_0 => pack_q8_0(src, r, dst),
                        Kind::Q4K => pack_q4k(src, r, dst),
                        _ => unreachable!("block_bytes gates the kinds"),
                    }
                }
            }
        }
        Some(Packed {
            kind,
            n,
            k,
            data: out,
        })
    }
}

fn pack_q8_0(src: &[u8], r: usize, dst: &mut [u8]) {
    dst[2 * r..2 * r + 2].copy_from_slice(&src[0..2]);
    for g in 0..8 {
        let at = 16 + g * 32 + r * 4;
        dst[at..at + 4].copy_from_slice(&src[2 + 4 * g..6 + 4 * g]);
    }
}

fn pack_q4k(src: &[u8], r: usize, dst: &mut [u8]) {
    dst[2 * r..2 * r + 2].copy_from_slice(&src[0..2]);
    dst[16 + 2 * r..18 + 2 * r].copy_from_slice(&src[2..4]);
    for s in 0..8 {
        let (sc, m) = scale_min_k4(s, &src[4..16]);
        dst[32 + s * 8 + r] = sc;
        dst[96 + s * 8 + r] = m;
    }
    let qs = &src[16..144];
    for c in 0..4 {
        for g in 0..8 {
            let at = 160 + (c * 8 + g) * 32 + r * 4;
            dst[at..at + 4].copy_from_slice(&qs[c * 32 + 4 * g..c * 32 + 4 * g + 4]);
        }
    }
}

/// A zeroed byte buffer asking the kernel for 2 MiB pages (Linux): a
/// weight stream then crosses a page, and needs a TLB entry, every 2 MiB
/// instead of every 4 KiB, and the hardware prefetcher is not stopped at
/// each 4 KiB boundary.
#[derive(Debug)]
pub struct PageBuf {
    ptr: *mut u8,
    len: usize,
    mapped: bool,
    vec: Vec<u8>,
}

// SAFETY: PageBuf owns its memory exclusively, like a Vec<u8>.
unsafe impl Send for PageBuf {}
unsafe impl Sync for PageBuf {}

impl PageBuf {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> PageBuf {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        if len >= 1 << 21 {
            // SAFETY: an anonymous private mapping of `len` bytes, unmapped
            // in Drop; zero-filled by the kernel.
            unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                if p != libc::MAP_FAILED {
                    // Advice only: without transparent huge pages it is a no-op.
                    libc::madvise(p, len, libc::MADV_HUGEPAGE);
                    return PageBuf {
                        ptr: p as *mut u8,
                        len,
                        mapped: true,
                        vec: vec![],
                    };
                }
            }
        }
        let mut vec = vec![0u8; len];
        PageBuf {
            ptr: vec.as_mut_ptr(),
            len,
            mapped: false,
            vec,
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points at `len` initialised bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        if self.mapped {
            // SAFETY: mapped in `zeroed` with this length.
            unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
        }
        let _ = (&self.vec, self.mapped);
    }
}
