//! The first layer of the request chain: what a request is about, from its method and
//! path alone, as kube-apiserver's `RequestInfoFactory` finds it before authentication and
//! authorization look at it. Everything after (the authorizer, admission, the REST
//! handlers, watch and the node proxies) reads this instead of the path.

use http::Method;
use skiff_resources::ResourceInfo;

/// A resource request: verb, resource, namespace, name and subresource.
#[derive(Debug, Clone)]
pub(crate) struct RequestInfo {
    /// The Kubernetes verb: `get`, `list`, `watch`, `create`, `update`, `patch`,
    /// `delete`, `deletecollection`; empty for a method no verb maps to (answered 405).
    pub verb: &'static str,
    /// The resource addressed (in the request's group and version).
    pub info: &'static ResourceInfo,
    /// The namespace in the path, if any.
    pub namespace: Option<String>,
    /// The object's name, if the path names one.
    pub name: Option<String>,
    /// The subresource (`status`, `log`, `exec`...), if any.
    pub sub: Option<String>,
    /// Reached through the legacy `/watch/` prefix.
    pub watch_path: bool,
}

impl RequestInfo {
    /// Parses `[watch/][namespaces/<ns>/]<plural>[/<name>[/<sub>[/...]]]` below
    /// `/api/v1` or `/apis/<group>/<version>`; `watch_param` is `?watch=` (true or 1).
    /// `None` when no registered resource has that path (404).
    pub fn parse(
        method: &Method,
        group: &str,
        version: &str,
        segs: &[&str],
        watch_param: bool,
    ) -> Option<RequestInfo> {
        let mut t = parse_path(group, version, segs)?;
        t.verb = verb(method, t.name.is_some(), t.watch_path || watch_param);
        Some(t)
    }

    /// Whether the request is a watch (`?watch=true` or the `/watch/` prefix).
    pub fn is_watch(&self) -> bool {
        self.verb == "watch"
    }
}

/// The Kubernetes verb of a request (kube's `RequestInfoFactory` mapping).
fn verb(method: &Method, named: bool, watch: bool) -> &'static str {
    match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "",
    }
}

/// The path part of [`RequestInfo::parse`]; the verb is left empty.
fn parse_path(group: &str, version: &str, segs: &[&str]) -> Option<RequestInfo> {
    let mut segs = segs;
    let mut watch_path = false;
    if segs.first() == Some(&"watch") {
        watch_path = true;
        segs = &segs[1..];
    }
    let (namespace, segs) = if segs.len() >= 3
        && segs[0] == "namespaces"
        && !matches!(segs[2], "status" | "finalize")
    {
        (Some(segs[1].to_string()), &segs[2..])
    } else {
        (None, segs)
    };
    let plural = *segs.first()?;
    let info = skiff_resources::lookup(group, version, plural)?;
    if namespace.is_some() && !info.namespaced {
        return None;
    }
    let name = segs.get(1).map(|s| s.to_string());
    let sub = segs.get(2).map(|s| s.to_string());
    if let Some(s) = &sub {
        if !info.has_subresource(s) {
            return None;
        }
    }
    Some(RequestInfo {
        verb: "",
        info,
        namespace,
        name,
        sub,
        watch_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_path("", "v1", &["namespaces", "default", "pods", "x", "log"]).unwrap();
        assert_eq!(
            (
                t.info.plural,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.sub.as_deref()
            ),
            ("pods", Some("default"), Some("x"), Some("log"))
        );
        let t = parse_path("", "v1", &["namespaces", "x", "finalize"]).unwrap();
        assert_eq!(
            (
                t.info.plural,
                t.namespace,
                t.name.as_deref(),
                t.sub.as_deref()
            ),
            ("namespaces", None, Some("x"), Some("finalize"))
        );
        let t = parse_path("", "v1", &["namespaces", "default"]).unwrap();
        assert_eq!(
            (t.info.plural, t.name.as_deref()),
            ("namespaces", Some("default"))
        );
        let t = parse_path("", "v1", &["pods"]).unwrap();
        assert!(t.namespace.is_none() && t.name.is_none());
        let t = parse_path("apps", "v1", &["watch", "namespaces", "d", "deployments"]).unwrap();
        assert!(t.watch_path);
        assert!(parse_path("", "v1", &["namespaces", "d", "nodes"]).is_none());
        assert!(parse_path("", "v1", &["nope"]).is_none());
    }

    #[test]
    fn verbs_follow_kube_request_info() {
        let p = |m: Method, segs: &[&str], watch: bool| {
            RequestInfo::parse(&m, "", "v1", segs, watch).map(|r| r.verb)
        };
        let pods = ["namespaces", "d", "pods"];
        let pod = ["namespaces", "d", "pods", "x"];
        assert_eq!(p(Method::GET, &pods, false), Some("list"));
        assert_eq!(p(Method::GET, &pods, true), Some("watch"));
        assert_eq!(
            p(Method::GET, &["watch", "namespaces", "d", "pods"], false),
            Some("watch")
        );
        assert_eq!(p(Method::GET, &pod, false), Some("get"));
        assert_eq!(p(Method::POST, &pods, false), Some("create"));
        assert_eq!(p(Method::PUT, &pod, false), Some("update"));
        assert_eq!(p(Method::PATCH, &pod, false), Some("patch"));
        assert_eq!(p(Method::DELETE, &pod, false), Some("delete"));
        assert_eq!(p(Method::DELETE, &pods, false), Some("deletecollection"));
        assert_eq!(p(Method::OPTIONS, &pod, false), Some(""));
        let exec = ["namespaces", "d", "pods", "x", "exec"];
        assert_eq!(p(Method::POST, &exec, false), Some("create"));
        assert_eq!(p(Method::GET, &exec, false), Some("get"));
        assert!(p(Method::GET, &["nope"], false).is_none());
    }
}
