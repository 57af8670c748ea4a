//! Validation with kube-apiserver's rules and messages (`pkg/apis/core/validation`,
//! `pkg/apis/apps/validation`, `apimachinery/pkg/util/validation`). Each failure is a
//! [`FieldError`] whose `Display` is what kubectl prints after `is invalid: `.

use std::fmt;

use serde_json::Value;

use crate::registry::ResourceInfo;

mod names;
mod rules;

pub(crate) use rules::validate_webhook_client_config;

pub use names::{
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
    is_valid_label_value,
};

/// The kind of a field error, as `k8s.io/apimachinery/pkg/util/validation/field` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// `FieldValueNotFound`: "Not found".
    NotFound,
    /// `FieldValueRequired`: "Required value".
    Required,
    /// `FieldValueDuplicate`: "Duplicate value".
    Duplicate,
    /// `FieldValueInvalid`: "Invalid value".
    Invalid,
    /// `FieldValueNotSupported`: "Unsupported value".
    NotSupported,
    /// `FieldValueForbidden`: "Forbidden".
    Forbidden,
    /// `FieldValueTooLong`: "Too long".
    TooLong,
    /// `FieldValueTooMany`: "Too many".
    TooMany,
    /// `FieldValueTypeInvalid`: "Invalid value" (wrong type).
    TypeInvalid,
}

impl FieldErrorKind {
    /// The text Kubernetes prints for the kind.
    pub fn as_str(&self) -> &'static str {
        match self {
            FieldErrorKind::NotFound => "Not found",
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
            FieldErrorKind::TypeInvalid => "Invalid value",
        }
    }

    /// The `reason` of a `StatusCause` (`FieldValueInvalid`...).
    pub fn reason(&self) -> &'static str {
        match self {
            FieldErrorKind::NotFound => "FieldValueNotFound",
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::TypeInvalid => "FieldValueTypeInvalid",
        }
    }
}

/// One validation failure (a `StatusCause` of a 422 Invalid response).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Field path, e.g. `spec.ports[0].port`.
    pub path: String,
    /// What is wrong.
    pub kind: FieldErrorKind,
    /// Detail message, e.g. `must be between 1 and 65535, inclusive`.
    pub message: String,
    /// The offending value, when the kind shows one (Invalid, NotSupported, Duplicate...).
    pub bad_value: Option<Value>,
}

impl FieldError {
    /// A `Required value` error.
    pub fn required(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            kind: FieldErrorKind::Required,
            message: message.into(),
            bad_value: None,
        }
    }

    /// An `Invalid value` error.
    pub fn invalid(
        path: impl Into<String>,
        value: Value,
        message: impl Into<String>,
    ) -> FieldError {
        FieldError {
            path: path.into(),
            kind: FieldErrorKind::Invalid,
            message: message.into(),
            bad_value: Some(value),
        }
    }

    /// An `Unsupported value` error listing the supported values.
    pub fn not_supported(path: impl Into<String>, value: Value, supported: &[&str]) -> FieldError {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        FieldError {
            path: path.into(),
            kind: FieldErrorKind::NotSupported,
            message: format!("supported values: {}", list.join(", ")),
            bad_value: Some(value),
        }
    }

    /// A `Duplicate value` error.
    pub fn duplicate(path: impl Into<String>, value: Value) -> FieldError {
        FieldError {
            path: path.into(),
            kind: FieldErrorKind::Duplicate,
            message: String::new(),
            bad_value: Some(value),
        }
    }

    /// A `Not found` error.
    pub fn not_found(path: impl Into<String>, value: Value) -> FieldError {
        FieldError {
            path: path.into(),
            kind: FieldErrorKind::NotFound,
            message: String::new(),
            bad_value: Some(value),
        }
    }

    /// A `Forbidden` error.
    pub fn forbidden(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            kind: FieldErrorKind::Forbidden,
            message: message.into(),
            bad_value: None,
        }
    }

    /// A `Too long` error.
    pub fn too_long(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            kind: FieldErrorKind::TooLong,
            message: message.into(),
            bad_value: None,
        }
    }

    /// The error without its field path (`ErrorBody()` in Go): the `message` of a
    /// `StatusCause`, e.g. `Invalid value: 0: must be between 1 and 65535, inclusive`.
    pub fn body(&self) -> String {
        let mut s = self.kind.as_str().to_string();
        let shows_value = !matches!(
            self.kind,
            FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong
        );
        if shows_value {
            if let Some(v) = &self.bad_value {
                s.push_str(": ");
                s.push_str(&go_value(v));
            }
        }
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        s
    }

    /// The `StatusCause` object: `{"reason": "FieldValueInvalid", "message": ..., "field": ...}`.
    pub fn status_cause(&self) -> Value {
        serde_json::json!({"reason": self.kind.reason(), "message": self.body(), "field": self.path})
    }
}

/// Formats a bad value as Go's `field.Error` does: strings quoted, numbers and booleans
/// bare, string maps as `map[string]string{"k":"v"}`, string lists as `[]string{"a"}`.
fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Object(m) if m.values().all(Value::is_string) => {
            let mut pairs: Vec<(String, String)> = m
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            pairs.sort();
            let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
            format!("map[string]string{{{}}}", inner.join(", "))
        }
        Value::Array(a) if a.iter().all(Value::is_string) => {
            let inner: Vec<String> = a
                .iter()
                .map(|s| format!("{:?}", s.as_str().unwrap_or_default()))
                .collect();
            format!("[]string{{{}}}", inner.join(", "))
        }
        other => other.to_string(),
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.body())
    }
}

/// Validates an object in its storage version: on create `old` is `None`, on update it
/// is the stored object (immutable fields are checked against it). An empty result means
/// valid.
pub fn validate(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    rules::validate(info, obj, old)
}

/// What the pod `ephemeralcontainers` subresource checks (kube's
/// `ValidatePodEphemeralContainersUpdate`): the pod's metadata and spec, and that
/// existing ephemeral containers are neither removed nor changed. A pod update's own
/// restrictions do not apply.
pub fn validate_ephemeral_containers_update(
    info: &ResourceInfo,
    obj: &Value,
    old: &Value,
) -> Vec<FieldError> {
    rules::validate_ephemeral_containers_update(info, obj, old)
}

/// The 422 `Status` kube-apiserver answers for validation failures:
/// `<Kind>[.<group>] "<name>" is invalid: <errors>` with one cause per error.
pub fn invalid_status(info: &ResourceInfo, name: &str, errors: &[FieldError]) -> Value {
    let qualified = if info.group.is_empty() {
        info.kind.to_string()
    } else {
        format!("{}.{}", info.kind, info.group)
    };
    let aggregate = match errors {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{qualified} {name:?} is invalid: {aggregate}"),
        "reason": "Invalid",
        "details": {"name": name, "group": info.group, "kind": info.kind,
                    "causes": errors.iter().map(FieldError::status_cause).collect::<Vec<_>>()},
        "code": 422,
    })
}
