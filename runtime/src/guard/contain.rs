//! A panic inside a third-party reader (candle's GGUF reader, the
//! tokenizer's regex engine) as an error naming the file, not a crash.
//! warden's own code does not panic on bad input; these wrap code it does
//! not own, as a last line behind its own checks.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`; a panic becomes an error "`what`: MESSAGE".
pub fn contain<T>(what: impl std::fmt::Display, f: impl FnOnce() -> T) -> anyhow::Result<T> {
    quietly(f).map_err(|m| anyhow::anyhow!("{what}: {m}"))
}

/// Runs `f`, catching a panic as its message without printing it.
pub fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    let was = QUIET.with(|q| q.replace(true));
    let out = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    out.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with no message".into())
    })
}

/// Installs, once, a panic hook that stays silent for contained panics and
/// defers to the previous hook for every other.
fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
}

/// Reads the header of the GGUF file at `path` (metadata and tensor
/// table) with candle's reader, which panics on some malformed files (a
/// `general.alignment` of 0 divides by zero): a panic or an error becomes
/// "PATH is not a readable GGUF file: …". The file comes back positioned
/// for reading tensors.
pub fn read_gguf(
    path: &std::path::Path,
) -> anyhow::Result<(std::fs::File, candle_core::quantized::gguf_file::Content)> {
    use anyhow::Context as _;
    use candle_core::quantized::gguf_file;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let what = format!("{} is not a readable GGUF file", path.display());
    let content = contain(&what, || gguf_file::Content::read(&mut file))?
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    // The alignment candle used (it reads these integer types, and takes
    // its default for any other).
    let alignment = match content.metadata.get("general.alignment") {
        Some(gguf_file::Value::U8(v)) => Some(u64::from(*v)),
        Some(gguf_file::Value::U16(v)) => Some(u64::from(*v)),
        Some(gguf_file::Value::U32(v)) => Some(u64::from(*v)),
        Some(gguf_file::Value::I8(v)) if *v >= 0 => Some(*v as u64),
        Some(gguf_file::Value::I16(v)) if *v >= 0 => Some(*v as u64),
        Some(gguf_file::Value::I32(v)) if *v >= 0 => Some(*v as u64),
        _ => None,
    };
    if let Some(a) = alignment.filter(|a| !a.is_power_of_two()) {
        anyhow::bail!("{what}: general.alignment {a} is not a power of two");
    }
    Ok((file, content))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_becomes_an_error_naming_what() {
        let e = super::contain("reading x.gguf", || {
            let zero = std::hint::black_box(0usize);
            10 / zero
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("reading x.gguf: attempt to divide by zero"),
            "{e}"
        );
        assert_eq!(super::contain("y", || 3).unwrap(), 3);
    }
}
