//! skiff-resources: what the API server knows about each resource kind, as pure functions.
//!
//! No IO happens here. The API server (`skiff-apiserver`) calls into this crate for:
//! - the registry of served resources ([`resources`], [`lookup`]), built-in and, from
//!   CustomResourceDefinitions, installed at run time ([`registry::set_dynamic`], [`crd`]),
//! - discovery documents ([`discovery`]) and OpenAPI v3 documents ([`openapi`]),
//! - defaulting ([`default_object`]) and version conversion ([`convert`]),
//! - typed decoding of request bodies with kube-apiserver's messages ([`decode`]),
//! - validation with Kubernetes' messages ([`validate`], [`unknown_fields`]),
//! - strategic merge patch ([`strategic_merge_patch`]),
//! - server-side printing as `meta.k8s.io/v1` Tables ([`table()`]).
//!
//! Objects travel as `serde_json::Value` in their wire form; the functions here follow
//! kube-apiserver's behaviour for the built-in kinds.

pub mod convert;
pub mod crd;
pub mod decode;
pub mod defaults;
pub mod discovery;
pub mod duration;
pub mod managedfields;
pub mod openapi;
pub mod registry;
pub mod schema;
pub mod smp;
pub mod table;
pub mod unknown;
pub mod validation;

pub use convert::convert;
pub use defaults::default_object;
pub use duration::human_duration;
pub use registry::{lookup, lookup_kind, resources, split_api_version, ResourceInfo};
pub use smp::{strategic_merge_patch, PatchError};
pub use table::{table, IncludeObject};
pub use unknown::unknown_fields;
pub use validation::{
    invalid_status, validate, validate_ephemeral_containers_update, FieldError, FieldErrorKind,
};
