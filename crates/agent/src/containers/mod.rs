//! The container runtime, usable without an API server: images, pod network namespaces
//! wired in process or by the CNI plugins, containers under youki's libcontainer (in the
//! agent's runtime service) or runc with CRI log files, exec. (Not to be confused with
//! the `skiff-runtime` crate: informers, events and leader election for API clients.)

pub mod bridge;
pub mod cni;
pub mod console;
pub mod container;
pub mod crictl;
pub mod crilog;
pub mod exec;
pub mod images;
pub mod ipam;
pub mod layers;
pub mod load;
pub mod netns;
pub mod oci;
pub mod reference;
pub mod registry;
pub mod runtime;
pub mod service;
