//! skiff-agent: the node agent, skiff's kubelet and container runtime.
//!
//! [`runtime`] runs containers without any API server (images, netns + CNI, runc, logs,
//! exec); [`streaming`] speaks the remotecommand protocols.

pub mod runtime;
pub mod streaming;

pub use runtime::images;
