//! Test support shared by skiff's crates. Only `[dev-dependencies]` name this crate; no
//! production code links it. It depends on no skiff crate, so any crate's tests (unit
//! tests too) can use it without a second copy of that crate.
//!
//! - [`golden`]: compare output with a checked-in file; `UPDATE_GOLDEN=1` rewrites it.
//! - [`kubectl`]: the kubectl binaries there are, and a runner with a deadline.
//! - [`etcd`]: real etcd clusters (1 or 3 members) for the store's and the API server's
//!   tests, removed on drop.
//! - [`fakeapi`]: a `kube::Client` backed by a recording fake of the API, for unit tests
//!   of reconcilers.
//! - [`hostnet`]: a snapshot of the host's network, for tests that must leave it as it was.

pub mod etcd;
pub mod fakeapi;
pub mod golden;
pub mod hostnet;
pub mod kubectl;
