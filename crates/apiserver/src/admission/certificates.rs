//! The requester of a CertificateSigningRequest: kube's CSR strategy records who created
//! it (`spec.username`, `groups`, `uid`, `extra`), whatever the body said, so that the
//! approver sees who asks and the signer can check the names asked for.

use serde_json::{json, Value};
use skiff_resources::ResourceInfo;

use super::{Attributes, Operation, Plugin};
use crate::status::ApiResult;

/// Sets a new CSR's requester from the writer's identity.
#[derive(Debug, Default)]
pub(crate) struct CertificateRequester;

impl Plugin for CertificateRequester {
    fn handles(&self, info: &ResourceInfo) -> bool {
        info.group == "certificates.k8s.io" && info.kind == "CertificateSigningRequest"
    }

    fn admit(&self, a: &Attributes<'_>, obj: &mut Value, _old: Option<&Value>) -> ApiResult<()> {
        if a.operation != Operation::Create {
            return Ok(());
        }
        if !obj.get("spec").is_some_and(Value::is_object) {
            obj["spec"] = json!({});
        }
        let spec = &mut obj["spec"];
        if let Some(m) = spec.as_object_mut() {
            for f in ["username", "uid", "groups", "extra"] {
                m.remove(f);
            }
        }
        if let Some(u) = a.user {
            spec["username"] = json!(u.user);
            if !u.groups.is_empty() {
                spec["groups"] = json!(u.groups);
            }
        }
        Ok(())
    }
}
