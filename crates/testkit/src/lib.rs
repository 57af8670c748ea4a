//! Test support shared by skiff's crates. Only `[dev-dependencies]` name this crate; no
//! production code links it (the tidy test checks that).
//!
//! - [`golden`]: compare output with a checked-in file; `UPDATE_GOLDEN=1` rewrites it.

pub mod golden;
