//! Admission webhooks (`MutatingAdmissionWebhook`, `ValidatingAdmissionWebhook`): the
//! dynamic admission stage after the built-in plugins. Each write is matched against the
//! stored MutatingWebhookConfigurations and ValidatingWebhookConfigurations
//! ([`matching`]), and every matching webhook is sent an AdmissionReview ([`review`])
//! over HTTPS ([`client`]). Mutating webhooks run one after the other, each seeing the
//! previous one's JSONPatch, and those with `reinvocationPolicy: IfNeeded` run once more
//! when a later webhook changed the object; validating webhooks run after the
//! strategy's validation and the built-in validating plugins. `failurePolicy` decides
//! what a webhook that cannot be called means, kube-apiserver's texts report denials and
//! failures, and the webhooks' warnings reach the client as `Warning` headers.
//!
//! The configurations are read from the datastore at each write (always current, also
//! across servers); webhook configurations themselves are never sent to webhooks, as
//! kube-apiserver exempts them so that a broken webhook can always be removed.

mod matching;
mod review;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use skiff_resources::ResourceInfo;
use skiff_store::Store;

use super::{Attributes, Operation};
use crate::conversion::{to_storage, to_version};
use crate::status::{ApiError, ApiResult};
use crate::storage::{decode, key, prefix};
use crate::webhookclient::{self as client, resolve};

const GROUP: &str = "admissionregistration.k8s.io";

/// Which stage a configuration belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mutating,
    Validating,
}

impl Kind {
    fn plural(self) -> &'static str {
        match self {
            Kind::Mutating => "mutatingwebhookconfigurations",
            Kind::Validating => "validatingwebhookconfigurations",
        }
    }
}

/// The webhook stages of the admission chain.
pub(crate) struct Webhooks {
    store: Arc<dyn Store>,
}

/// One webhook of a configuration and the configuration's name.
struct Hook {
    hook: Value,
}

impl Hook {
    fn name(&self) -> &str {
        self.hook.get("name").and_then(Value::as_str).unwrap_or("")
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.hook.get(key).and_then(Value::as_str)
    }

    fn fails_open(&self) -> bool {
        self.str("failurePolicy") == Some("Ignore")
    }

    fn timeout(&self) -> Duration {
        let secs = self
            .hook
            .get("timeoutSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(10)
            .clamp(1, 30);
        Duration::from_secs(secs)
    }
}

/// What a matching webhook is called with.
struct Matched {
    /// The resource version the webhook gets the object in.
    info: &'static ResourceInfo,
}

impl Webhooks {
    /// Webhooks configured in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Webhooks { store }
    }

    /// The webhooks of every configuration of `kind`, configurations by name (as
    /// kube-apiserver orders them), webhooks in their configuration's order.
    fn load(&self, kind: Kind) -> ApiResult<Vec<Hook>> {
        let Some(info) = skiff_resources::lookup(GROUP, "v1", kind.plural()) else {
            return Ok(Vec::new());
        };
        let (kvs, _) = self.store.list(&prefix(info, None))?;
        let mut configs: Vec<Value> = kvs.iter().map(decode).collect::<ApiResult<_>>()?;
        configs.sort_by(|a, b| {
            let n = |v: &Value| {
                v.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            n(a).cmp(&n(b))
        });
        Ok(configs
            .into_iter()
            .flat_map(|mut c| match c.get_mut("webhooks").map(Value::take) {
                Some(Value::Array(hooks)) => hooks,
                _ => Vec::new(),
            })
            .map(|hook| Hook { hook })
            .collect())
    }

    /// Whether writes of `info` skip webhooks: the webhook configurations themselves
    /// (and the admission policies), as kube-apiserver exempts them.
    fn exempt(info: &ResourceInfo) -> bool {
        info.group == GROUP
    }

    /// The versions a rule may match the request in: the request's own first, then
    /// the storage version, then the other served versions of the resource.
    fn versions(a: &Attributes<'_>) -> Vec<&'static ResourceInfo> {
        let mut out = vec![a.requested, a.info];
        for r in skiff_resources::registry::all_resources() {
            if r.group == a.info.group && r.plural == a.info.plural && r.kind == a.info.kind {
                out.push(r);
            }
        }
        let mut seen = Vec::new();
        out.retain(|r| {
            let fresh = !seen.contains(&r.version);
            seen.push(r.version);
            fresh
        });
        out
    }

    /// The labels of the request's namespace, for namespace selectors (`None`: the
    /// request is cluster-scoped and not about a Namespace; never exempted).
    fn namespace_labels(
        &self,
        a: &Attributes<'_>,
        obj: Option<&Value>,
        old: Option<&Value>,
    ) -> ApiResult<Option<BTreeMap<String, String>>> {
        if a.info.group.is_empty() && a.info.plural == "namespaces" {
            return Ok(Some(matching::labels_of(obj.or(old))));
        }
        let Some(ns) = a.namespace else {
            return Ok(None);
        };
        let info = skiff_resources::lookup("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("namespaces are not served"))?;
        match self.store.get(&key(info, None, ns))? {
            Some(kv) => Ok(Some(matching::labels_of(Some(&decode(&kv)?)))),
            None => Err(ApiError::not_found("", "namespaces", ns)),
        }
    }

    /// Whether `h` is called for this request, and with which version of the object.
    fn matches(
        &self,
        h: &Hook,
        a: &Attributes<'_>,
        obj: Option<&Value>,
        old: Option<&Value>,
    ) -> ApiResult<Option<Matched>> {
        let op = a.operation.as_str();
        let req = matching::Request {
            operation: op,
            info: a.requested,
            subresource: a.subresource.unwrap_or(""),
            namespaced: a.info.namespaced,
        };
        let Some(info) = matching::matched_version(&h.hook, &req, Self::versions(a)) else {
            return Ok(None);
        };
        let bad_selector = |e: String| {
            ApiError::internal(format!("invalid selector of webhook {:?}: {e}", h.name()))
        };
        if matching::has_namespace_selector(&h.hook) {
            let labels = self.namespace_labels(a, obj, old)?;
            if !matching::namespace_selector_matches(&h.hook, labels.as_ref())
                .map_err(bad_selector)?
            {
                return Ok(None);
            }
        }
        if !matching::object_selector_matches(&h.hook, obj, old).map_err(bad_selector)? {
            return Ok(None);
        }
        Ok(Some(Matched { info }))
    }

    /// Where a webhook's client configuration points.
    fn target(&self, h: &Hook) -> Result<client::Target, String> {
        let cc = h.hook.get("clientConfig").unwrap_or(&Value::Null);
        resolve(self.store.as_ref(), cc)
    }

    /// Calls one webhook; its verdict, or the error to return. A webhook that cannot
    /// be called (or answers nonsense) is skipped (`Ok(None)`) under
    /// `failurePolicy: Ignore`.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        h: &Hook,
        m: &Matched,
        a: &Attributes<'_>,
        obj: Option<&Value>,
        old: Option<&Value>,
        dry_run: bool,
    ) -> ApiResult<Option<review::Verdict>> {
        if dry_run && !matches!(h.str("sideEffects"), Some("None" | "NoneOnDryRun")) {
            return Err(ApiError::bad_request(format!(
                "admission webhook {:?} does not support dry run",
                h.name()
            )));
        }
        let uid = uuid::Uuid::new_v4().to_string();
        let store = self.store.as_ref();
        let obj_v = obj
            .map(|o| to_version(store, m.info, o.clone()))
            .transpose()?;
        let old_v = old
            .map(|o| to_version(store, m.info, o.clone()))
            .transpose()?;
        let body = review::request(&review::Call {
            uid: &uid,
            info: m.info,
            requested: a.requested,
            subresource: a.subresource.unwrap_or(""),
            name: a.name,
            namespace: a.namespace.unwrap_or(""),
            operation: a.operation.as_str(),
            user: a.user,
            object: obj_v.as_ref(),
            old: old_v.as_ref(),
            dry_run,
        });
        let ca = h
            .hook
            .pointer("/clientConfig/caBundle")
            .and_then(Value::as_str);
        let answer = match self.target(h) {
            Ok(t) => client::call(&t, ca, h.timeout(), &body).await,
            Err(e) => Err(format!("failed to call webhook: {e}")),
        };
        let failed = |why: String| {
            if h.fails_open() {
                tracing::warn!(webhook = h.name(), error = %why, "failed calling webhook, failing open");
                Ok(None)
            } else {
                Err(review::call_failed(h.name(), &why))
            }
        };
        match answer {
            Err(why) => failed(why),
            Ok(resp) => match review::read_response(h.name(), &uid, &resp) {
                Ok(v) => Ok(Some(v)),
                Err(Ok(denied)) => Err(denied),
                Err(Err(why)) => failed(format!("received invalid webhook response: {why}")),
            },
        }
    }

    /// The mutating webhook stage: may change `obj` (storage version); returns the
    /// webhooks' warnings.
    pub async fn admit(
        &self,
        a: &Attributes<'_>,
        obj: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> ApiResult<Vec<String>> {
        if Self::exempt(a.info) || a.operation == Operation::Delete {
            return Ok(Vec::new());
        }
        let hooks = self.load(Kind::Mutating)?;
        if hooks.is_empty() {
            return Ok(Vec::new());
        }
        let mut warnings = Vec::new();
        // The object right after each IfNeeded webhook ran: one that a later webhook
        // changed is called once more.
        let mut reinvoke: Vec<(usize, Value)> = Vec::new();
        for (i, h) in hooks.iter().enumerate() {
            if self.mutate(h, a, obj, old, dry_run, &mut warnings).await?
                && h.str("reinvocationPolicy") == Some("IfNeeded")
            {
                reinvoke.push((i, obj.clone()));
            }
        }
        for (i, after) in reinvoke {
            if *obj != after {
                self.mutate(&hooks[i], a, obj, old, dry_run, &mut warnings)
                    .await?;
            }
        }
        Ok(warnings)
    }

    /// Calls one mutating webhook if it matches and applies its patch; whether it was
    /// called.
    async fn mutate(
        &self,
        h: &Hook,
        a: &Attributes<'_>,
        obj: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
        warnings: &mut Vec<String>,
    ) -> ApiResult<bool> {
        let Some(m) = self.matches(h, a, Some(obj), old)? else {
            return Ok(false);
        };
        let Some(verdict) = self.call(h, &m, a, Some(obj), old, dry_run).await? else {
            return Ok(true);
        };
        warnings.extend(verdict.warnings);
        if let Some(patch) = verdict.patch {
            let mut v = to_version(self.store.as_ref(), m.info, obj.clone())?;
            review::apply_patch(&mut v, &patch)
                .map_err(|e| ApiError::internal(format!("Internal error occurred: {e}")))?;
            let mut patched = to_storage(self.store.as_ref(), m.info, v)?;
            // The patched object is decoded again with defaulting, as kube does.
            skiff_resources::default_object(a.info, &mut patched);
            *obj = patched;
        }
        Ok(true)
    }

    /// The validating webhook stage (`obj` is `None` for a delete; `old` the stored
    /// object); returns the webhooks' warnings.
    pub async fn validate(
        &self,
        a: &Attributes<'_>,
        obj: Option<&Value>,
        old: Option<&Value>,
        dry_run: bool,
    ) -> ApiResult<Vec<String>> {
        if Self::exempt(a.info) {
            return Ok(Vec::new());
        }
        let hooks = self.load(Kind::Validating)?;
        let mut warnings = Vec::new();
        for h in &hooks {
            let Some(m) = self.matches(h, a, obj, old)? else {
                continue;
            };
            if let Some(v) = self.call(h, &m, a, obj, old, dry_run).await? {
                warnings.extend(v.warnings);
            }
        }
        Ok(warnings)
    }
}
