//! End-to-end tests: a real server on a free loopback port with a temporary data
//! directory, driven by kube-rs and by the real kubectl.

mod apiservices;
mod authz;
mod common;
mod crd;
mod crd_cel;
mod crd_conversion;
mod csr;
mod ha;
mod hostile;
mod kube_api;
mod kube_controller;
mod kubectl;
mod kubectl_beta2;
mod list_encoding;
mod nodeproxy;
mod papercuts;
mod pdb;
mod pod_security;
mod rbac_writes;
mod ssa;
mod tokens;
mod typed;
mod webhooks;
