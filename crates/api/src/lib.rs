//! Shared API vocabulary for skiff's components.
//!
//! This crate does no IO. It re-exports the Kubernetes types (`k8s-openapi`) that every
//! component speaks, and holds the cluster-wide defaults and well-known names that more
//! than one component must agree on (the API server allocates from the service CIDR that
//! the proxy masquerades, the agent writes the DNS address that the DNS add-on serves...),
//! and the few Kubernetes rules several components apply ([`helpers`]).

pub mod cron;
pub mod defaults;
pub mod helpers;
pub mod metrics;
pub mod names;
pub mod quantity;
pub mod tz;
pub mod volumes;

pub use k8s_openapi;
