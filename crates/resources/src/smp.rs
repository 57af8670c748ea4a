//! Strategic merge patch.

use serde_json::Value;

use crate::registry::ResourceInfo;

/// Why a strategic merge patch could not be applied (a 422/400 for the client).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum PatchError {
    /// The patch is not a JSON object or has a malformed directive.
    #[error("invalid patch: {0}")]
    Invalid(String),
}

/// Applies a strategic merge patch to `original`.
pub fn strategic_merge_patch(
    _info: &ResourceInfo,
    original: &Value,
    _patch: &Value,
) -> Result<Value, PatchError> {
    Ok(original.clone())
}
