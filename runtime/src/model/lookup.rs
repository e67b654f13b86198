//! Prompt lookup: drafts for speculative decoding taken from the context
//! itself. An agent quotes tool results and code back often, so the tokens
//! that followed the last earlier occurrence of the context's final n-gram
//! are a good guess at what comes next, and cost nothing to propose.

/// Longest n-gram matched.
pub const MAX_NGRAM: usize = 3;
/// Shortest n-gram matched (a single token matches too often to pay).
pub const MIN_NGRAM: usize = 2;
/// Most tokens drafted at once.
pub const MAX_DRAFT: usize = 8;

/// The draft for `context`: up to `max_draft` tokens that followed the most
/// recent earlier occurrence of its last `n` tokens, for the longest `n`
/// from [`MAX_NGRAM`] down to [`MIN_NGRAM`] that occurs; empty if none does.
pub fn draft(context: &[u32], max_draft: usize) -> &[u32] {
    let len = context.len();
    for n in (MIN_NGRAM..=MAX_NGRAM).rev() {
        if len <= n {
            continue;
        }
        let tail = &context[len - n..];
        // Start positions whose n-gram ends before the tail starts to leave
        // at least one token to draft; the latest first.
        for start in (0..len - n).rev() {
            if &context[start..start + n] == tail {
                let from = start + n;
                return &context[from..(from + max_draft).min(len)];
            }
        }
    }
    &[]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_what_followed_the_latest_match_of_the_longest_ngram() {
        // "a b c d e ... a b c" drafts "d e ..."
        let ctx = [1, 2, 3, 4, 5, 6, 9, 1, 2, 3];
        assert_eq!(draft(&ctx, 3), &[4, 5, 6]);
        assert_eq!(draft(&ctx, 100), &[4, 5, 6, 9, 1, 2, 3]);
        // The latest occurrence wins.
        let ctx = [2, 3, 7, 2, 3, 8, 2, 3];
        assert_eq!(draft(&ctx, 1), &[8]);
        // A longer match beats a later shorter one.
        let ctx = [1, 2, 3, 4, 9, 2, 3, 5, 1, 2, 3];
        assert_eq!(draft(&ctx, 1), &[4]);
        // No bigram repeats: nothing (single tokens are not matched).
        assert!(draft(&[1, 2, 3, 1], 4).is_empty());
        assert!(draft(&[], 4).is_empty());
        assert!(draft(&[5, 5], 4).is_empty());
        // The draft may run into the tail itself.
        assert_eq!(draft(&[7, 7, 7], 4), &[7]);
    }
}
