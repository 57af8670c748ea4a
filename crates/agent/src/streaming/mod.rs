//! The kubelet endpoint and its streaming protocols.

pub mod channel;
pub mod server;
