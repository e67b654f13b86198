//! Patterns: POSIX regular expressions (basic and extended, as GNU grep and
//! sed read them) turned into Rust `regex` syntax, and shell wildcards.

pub mod fnmatch;
pub mod posix;
