//! Streaming protocols of the kubelet endpoint.

pub mod channel;
