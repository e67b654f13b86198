//! Capping tool output: never silently.

/// Cuts `text` to at most `max` bytes (on a character boundary) and appends
/// a marker saying how much was dropped. Returns whether it cut.
pub fn truncate(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let total = text.len();
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!(
        "\n[warden: output truncated: showing the first {end} of {total} bytes; ask for less, e.g. a narrower path, range or pattern]"
    ));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_char_boundary_with_marker() {
        let mut s = "héllo".repeat(10);
        assert!(truncate(&mut s, 2));
        assert!(s.starts_with("h\n[warden: output truncated: showing the first 1 of 60 bytes"));
        let mut short = "ok".to_string();
        assert!(!truncate(&mut short, 2));
        assert_eq!(short, "ok");
    }
}
