//! Label and field selectors of LIST and WATCH (`labelSelector=`, `fieldSelector=`).

use std::collections::BTreeMap;

use serde_json::Value;
use skiff_resources::ResourceInfo;

use crate::http::Query;
use crate::status::{ApiError, ApiResult};

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector (all requirements must hold).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<LabelReq>);

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn set_values(s: &str) -> Result<Vec<String>, String> {
    let s = s.trim();
    let inner = s
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            format!("unable to parse requirement: expected a set in parentheses, got {s:?}")
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let req = if let Some(k) = part.strip_prefix('!') {
                LabelReq::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                LabelReq::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                LabelReq::NotIn(k.trim().into(), set_values(v)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                LabelReq::In(k.trim().into(), set_values(v)?)
            } else if part.contains(['(', ')', ' ', '<', '>']) {
                return Err(format!("unable to parse requirement: {part:?}"));
            } else {
                LabelReq::Exists(part.to_string())
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => labels.get(k) == Some(v),
            LabelReq::NotEq(k, v) => labels.get(k) != Some(v),
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            LabelReq::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::NotExists(k) => !labels.contains_key(k),
        })
    }

    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.is_empty() {
            return true;
        }
        let labels: BTreeMap<String, String> = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        self.matches(&labels)
    }
}

/// Which selectable fields an object offers beyond its metadata: kube's per-kind
/// `GetAttrs`/`ToSelectableFields` (`pkg/registry/*/strategy.go`) and the labels its
/// `AddFieldLabelConversionFunc` accepts (`pkg/apis/*/v1/conversion.go`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Selectable {
    /// A kind without a conversion function: `metadata.name` and `metadata.namespace`
    /// (kube's `DefaultMetaV1FieldSelectorConversion`).
    #[default]
    Meta,
    Pod,
    Node,
    ReplicationController,
    Event,
    Namespace,
    Secret,
    Service,
    Job,
    CertificateSigningRequest,
    /// apps/v1beta1 and v1beta2 StatefulSets accept `status.successful` (which no
    /// StatefulSet has, so it reads as empty), as kube's conversion functions do.
    BetaStatefulSet,
    /// A custom resource: its version's `selectableFields` (kube's `crConverter`;
    /// `metadata.namespace` only when namespaced).
    Custom {
        namespaced: bool,
        fields: &'static [String],
    },
}

impl Selectable {
    fn of(group: &str, version: &str, kind: &str) -> Self {
        match (group, version, kind) {
            ("", "v1", "Pod") => Selectable::Pod,
            ("", "v1", "Node") => Selectable::Node,
            ("", "v1", "ReplicationController") => Selectable::ReplicationController,
            ("", "v1", "Event") => Selectable::Event,
            ("", "v1", "Namespace") => Selectable::Namespace,
            ("", "v1", "Secret") => Selectable::Secret,
            ("", "v1", "Service") => Selectable::Service,
            ("batch", "v1", "Job") => Selectable::Job,
            ("certificates.k8s.io", "v1", "CertificateSigningRequest") => {
                Selectable::CertificateSigningRequest
            }
            ("apps", "v1beta1" | "v1beta2", "StatefulSet") => Selectable::BetaStatefulSet,
            _ => Selectable::Meta,
        }
    }

    /// The labels the kind's conversion function accepts besides the metadata ones.
    fn labels(self) -> &'static [&'static str] {
        match self {
            Selectable::Meta => &[],
            Selectable::Pod => &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.podIPs",
                "status.nominatedNodeName",
            ],
            Selectable::Node => &["spec.unschedulable"],
            Selectable::ReplicationController => &["status.replicas"],
            Selectable::Event => &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            Selectable::Namespace => &["status.phase"],
            Selectable::Secret => &["type"],
            Selectable::Service => &["spec.clusterIP", "spec.type"],
            Selectable::Job | Selectable::BetaStatefulSet => &["status.successful"],
            Selectable::CertificateSigningRequest => &["spec.signerName"],
            Selectable::Custom { .. } => &[],
        }
    }

    /// Whether the conversion function accepts `metadata.namespace` (kube's Node,
    /// Namespace and CertificateSigningRequest functions do not).
    fn takes_namespace(self) -> bool {
        match self {
            Selectable::Node | Selectable::Namespace | Selectable::CertificateSigningRequest => {
                false
            }
            Selectable::Custom { namespaced, .. } => namespaced,
            _ => true,
        }
    }

    /// kube's `ConvertFieldLabel`: the label to match (old clients' `spec.host` is
    /// `spec.nodeName`), or kube-apiserver's error for a label the kind does not offer.
    fn convert(self, label: &str) -> Result<String, String> {
        if self == Selectable::Pod && label == "spec.host" {
            return Ok("spec.nodeName".into());
        }
        if label == "metadata.name"
            || (label == "metadata.namespace" && self.takes_namespace())
            || self.labels().contains(&label)
            || matches!(self, Selectable::Custom { fields, .. } if fields.iter().any(|f| f == label))
        {
            return Ok(label.to_string());
        }
        match self {
            Selectable::Meta => Err(format!(
                "{label:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
            )),
            Selectable::BetaStatefulSet => Err(format!(
                "field label not supported for appsv1beta1.StatefulSet: {label}"
            )),
            _ => Err(format!("field label not supported: {label}")),
        }
    }

    /// The value of a selectable field in `obj`, as kube's field set holds it: absent
    /// strings are empty, booleans and counts are printed with their zero defaults.
    fn value(self, obj: &Value, label: &str) -> String {
        let text = |p: &str| {
            obj.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let flag = |p: &str| {
            obj.pointer(p)
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string()
        };
        let count = |p: &str| {
            obj.pointer(p)
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .to_string()
        };
        match (self, label) {
            (_, "metadata.name") => text("/metadata/name"),
            (_, "metadata.namespace") => text("/metadata/namespace"),
            (Selectable::Pod, "spec.hostNetwork") => flag("/spec/hostNetwork"),
            (Selectable::Pod, "status.podIP") => {
                // The internal pod keeps only `podIPs`; its first is the pod IP.
                let first = text("/status/podIPs/0/ip");
                if first.is_empty() {
                    text("/status/podIP")
                } else {
                    first
                }
            }
            // Accepted by the conversion but not in the pod's field set.
            (Selectable::Pod, "status.podIPs") => String::new(),
            (Selectable::Node, "spec.unschedulable") => flag("/spec/unschedulable"),
            (Selectable::ReplicationController, "status.replicas") => count("/status/replicas"),
            (Selectable::Job, "status.successful") => count("/status/succeeded"),
            (Selectable::BetaStatefulSet, _) => String::new(),
            // A selectable field of a custom resource: strings, booleans and integers as
            // text, absent ones empty.
            (Selectable::Custom { .. }, label) => {
                match obj.pointer(&format!("/{}", label.replace('.', "/"))) {
                    Some(Value::String(s)) => s.clone(),
                    Some(v @ (Value::Bool(_) | Value::Number(_))) => v.to_string(),
                    _ => String::new(),
                }
            }
            (Selectable::Event, "source") => {
                let s = text("/source/component");
                if s.is_empty() {
                    text("/reportingComponent")
                } else {
                    s
                }
            }
            (_, label) => text(&format!("/{}", label.replace('.', "/"))),
        }
    }
}

/// A parsed field selector: `path=value` / `path==value` / `path!=value` terms, read
/// from the objects of one kind ([`FieldSelector::for_kind`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSelector {
    terms: Vec<(String, bool, String)>,
    kind: Selectable,
}

impl FieldSelector {
    /// Parses the selector's terms; which of them the kind offers is checked by
    /// [`FieldSelector::for_kind`].
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                ));
            };
            terms.push((k.trim().to_string(), eq, v.trim().to_string()));
        }
        Ok(FieldSelector {
            terms,
            kind: Selectable::Meta,
        })
    }

    /// The selector applied to objects of `group/version` `kind`: each label converted as
    /// kube-apiserver's `ConvertFieldLabel` does, or its error for an unsupported one.
    pub fn for_kind(mut self, group: &str, version: &str, kind: &str) -> Result<Self, String> {
        self.kind = Selectable::of(group, version, kind);
        self.convert()
    }

    /// The selector applied to a resource: a custom resource's `selectableFields`, or
    /// the built-in kind's labels ([`FieldSelector::for_kind`]).
    pub fn for_resource(mut self, info: &ResourceInfo) -> Result<Self, String> {
        match info.custom {
            Some(c) => {
                self.kind = Selectable::Custom {
                    namespaced: info.namespaced,
                    fields: &c.selectable,
                };
                self.convert()
            }
            None => self.for_kind(info.group, info.version, info.kind),
        }
    }

    fn convert(mut self) -> Result<Self, String> {
        for (label, _, _) in &mut self.terms {
            *label = self.kind.convert(label)?;
        }
        Ok(self)
    }

    /// Whether the selector has no terms (every object matches).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value the selector requires `label` to equal (`label=value`), if it does.
    pub fn required(&self, label: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|(l, eq, _)| *eq && l == label)
            .map(|(_, _, want)| want.as_str())
    }

    /// What the stored JSON of a matching object must contain: `"<value>"` for each
    /// `metadata.name=` / `spec.nodeName=` term (string fields, stored as they are
    /// compared) whose value JSON writes unescaped. A watch checks these bytes before
    /// decoding an event: with one `spec.nodeName` watch per node, every pod event would
    /// otherwise be decoded once per node (kube-apiserver's cacher indexes these fields
    /// for the same reason).
    pub fn needles(&self) -> Vec<Vec<u8>> {
        let plain = |v: &str| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
        };
        self.terms
            .iter()
            .filter(|(label, eq, want)| {
                *eq && matches!(label.as_str(), "metadata.name" | "spec.nodeName") && plain(want)
            })
            .map(|(_, _, want)| format!("\"{want}\"").into_bytes())
            .collect()
    }

    pub fn matches_object(&self, obj: &Value) -> bool {
        self.terms.iter().all(|(label, eq, want)| {
            let got = self.kind.value(obj, label);
            (got == *want) == *eq
        })
    }
}

/// Selectors of a LIST or WATCH.
pub(crate) struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    /// The selectors of a request for objects of `info`'s kind; a field the kind does
    /// not offer is a 400 with kube-apiserver's message.
    pub fn from_query(q: &Query, info: &ResourceInfo) -> ApiResult<Self> {
        Self::parse(
            q.get("labelSelector").unwrap_or(""),
            q.get("fieldSelector").unwrap_or(""),
            info,
        )
    }

    /// [`Filter::from_query`] of the two selectors' text.
    pub fn parse(labels: &str, fields: &str, info: &ResourceInfo) -> ApiResult<Self> {
        Ok(Filter {
            labels: LabelSelector::parse(labels).map_err(ApiError::bad_request)?,
            fields: FieldSelector::parse(fields)
                .and_then(|f| f.for_resource(info))
                .map_err(ApiError::bad_request)?,
        })
    }
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches_object(obj)
    }
    /// Whether every object matches (no selector terms).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// False when the stored bytes of an object show it cannot match, without decoding
    /// them (`needles`: [`FieldSelector::needles`] of this filter); true when it may.
    pub fn may_match_bytes(needles: &[Vec<u8>], stored: &[u8]) -> bool {
        needles
            .iter()
            .all(|n| stored.windows(n.len()).any(|w| w == n.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_name_watches_skip_other_nodes_pods_without_decoding() {
        let f = FieldSelector::parse("spec.nodeName=n-1")
            .and_then(|f| f.for_kind("", "v1", "Pod"))
            .unwrap();
        let needles = f.needles();
        assert_eq!(needles, vec![b"\"n-1\"".to_vec()]);
        assert!(Filter::may_match_bytes(
            &needles,
            br#"{"spec":{"nodeName":"n-1"}}"#
        ));
        assert!(!Filter::may_match_bytes(
            &needles,
            br#"{"spec":{"nodeName":"n-12"}}"#
        ));
        // Terms the bytes cannot decide give no needle: the object is decoded.
        for sel in [
            "spec.nodeName=",
            "spec.nodeName!=n-1",
            "status.phase=Running",
        ] {
            let f = FieldSelector::parse(sel)
                .and_then(|f| f.for_kind("", "v1", "Pod"))
                .unwrap();
            assert!(f.needles().is_empty(), "{sel}");
        }
    }
    use serde_json::json;

    fn obj() -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"run": "httpd", "tier": "web"}},
               "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_selectors() {
        let o = obj();
        for (sel, want) in [
            ("run=httpd", true),
            ("run==httpd", true),
            ("run!=httpd", false),
            ("run in (httpd, x)", true),
            ("run notin (httpd)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing,run=httpd", true),
            ("missing notin (a)", true),
            ("run=httpd,tier=db", false),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches_object(&o),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("a in b").is_err());
    }

    fn custom(fields: &[&str], namespaced: bool, sel: &str) -> Result<FieldSelector, String> {
        let fields: &'static [String] = Box::leak(
            fields
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .into(),
        );
        let mut f = FieldSelector::parse(sel)?;
        f.kind = Selectable::Custom { namespaced, fields };
        f.convert()
    }

    #[test]
    fn custom_resources_select_on_their_selectable_fields() {
        let o = json!({"metadata": {"name": "a", "namespace": "ns"},
                       "spec": {"color": "red", "n": 3, "on": true}});
        let fields = ["spec.color", "spec.n", "spec.on", "spec.missing"];
        for (sel, want) in [
            ("spec.color=red,spec.n=3,spec.on=true", true),
            ("spec.color!=red", false),
            ("spec.missing=", true),
            ("metadata.namespace=ns,metadata.name=a", true),
        ] {
            let f = custom(&fields, true, sel).expect(sel);
            assert_eq!(f.matches_object(&o), want, "{sel}");
        }
        assert_eq!(
            custom(&fields, true, "spec.other=1").unwrap_err(),
            "field label not supported: spec.other"
        );
        // A cluster-scoped resource has no namespace to select on (kube's crConverter).
        assert_eq!(
            custom(&fields, false, "metadata.namespace=x").unwrap_err(),
            "field label not supported: metadata.namespace"
        );
    }

    #[test]
    fn field_selectors() {
        let o = obj();
        for (sel, want) in [
            ("metadata.name=a", true),
            ("metadata.namespace!=ns", false),
            ("spec.nodeName=n1,status.phase=Running", true),
            ("spec.nodeName=", false),
            ("spec.missing=", true),
        ] {
            assert_eq!(
                FieldSelector::parse(sel).unwrap().matches_object(&o),
                want,
                "{sel}"
            );
        }
    }

    fn kind_selector(
        group: &str,
        version: &str,
        kind: &str,
        sel: &str,
    ) -> Result<FieldSelector, String> {
        FieldSelector::parse(sel)?.for_kind(group, version, kind)
    }

    #[test]
    fn each_kind_offers_kube_apiservers_fields() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {}});
        let cordoned = json!({"metadata": {"name": "n2"}, "spec": {"unschedulable": true}});
        let sel = kind_selector("", "v1", "Node", "spec.unschedulable=false").unwrap();
        assert!(sel.matches_object(&node), "a missing flag is false");
        assert!(!sel.matches_object(&cordoned));

        let pod = json!({"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}]}});
        for (sel, want) in [
            ("status.podIP=10.244.1.5", true),
            ("spec.restartPolicy=Always", true),
            ("spec.hostNetwork=false", true),
            ("spec.hostNetwork=true", false),
            ("spec.host=n1", true),
            ("status.podIPs=", true),
            ("metadata.namespace=ns,status.phase!=Pending", true),
        ] {
            assert_eq!(
                kind_selector("", "v1", "Pod", sel)
                    .unwrap()
                    .matches_object(&pod),
                want,
                "{sel}"
            );
        }

        let event = json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"},
            "reason": "Started", "type": "Normal", "reportingComponent": "kubelet"});
        let sel = kind_selector(
            "",
            "v1",
            "Event",
            "involvedObject.kind=Pod,reason=Started,source=kubelet",
        )
        .unwrap();
        assert!(
            sel.matches_object(&event),
            "source falls back to the reporting component"
        );

        let job = json!({"metadata": {"name": "j"}, "status": {"succeeded": 2}});
        assert!(kind_selector("batch", "v1", "Job", "status.successful=2")
            .unwrap()
            .matches_object(&job));
        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque"});
        assert!(kind_selector("", "v1", "Secret", "type=Opaque")
            .unwrap()
            .matches_object(&secret));
    }

    #[test]
    fn unsupported_fields_get_kube_apiservers_errors() {
        assert_eq!(
            kind_selector("", "v1", "Pod", "status.hostIP=1.2.3.4").unwrap_err(),
            "field label not supported: status.hostIP"
        );
        assert_eq!(
            kind_selector("", "v1", "Node", "metadata.namespace=x").unwrap_err(),
            "field label not supported: metadata.namespace"
        );
        assert_eq!(
            kind_selector("", "v1", "ConfigMap", "data.x=y").unwrap_err(),
            "\"data.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert_eq!(
            kind_selector("apps", "v1", "Deployment", "status.replicas=1").unwrap_err(),
            "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert!(kind_selector("apps", "v1", "Deployment", "metadata.name=d").is_ok());
    }
}
