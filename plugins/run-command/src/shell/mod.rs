//! The command line: parsing (`parse`), word expansion (`expand`) and running
//! lists of pipelines over the built-in commands (`exec`).

pub mod exec;
pub mod expand;
pub mod parse;
