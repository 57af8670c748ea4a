//! A recording fake of the Kubernetes API for unit tests of API clients (reconcilers,
//! informers): a [`kube::Client`] whose transport is a small `tower::Service` that
//! answers scripted requests and records every request it got (method, path, query,
//! JSON body). kube-rs tests its own clients this way (`tower_test::mock`); here the
//! answers are given up front, so a reconciler that makes several requests runs without
//! the test stepping it through each one.
//!
//! ```no_run
//! # async fn t() {
//! use serde_json::json;
//! use skiff_testkit::fakeapi::{FakeApi, Reply};
//! let api = FakeApi::new();
//! api.objects("/api/v1/pods", "PodList", vec![json!({"metadata": {"name": "a"}})]);
//! api.on("POST", "/api/v1/namespaces/default/pods", |r| Reply::created(r.body.clone().unwrap_or_default()));
//! let client = api.client();
//! // ... run the code under test with `client` ...
//! let writes = api.writes();
//! # }
//! ```
//!
//! A request no rule matches gets a 404 `Status` (kube-rs's `Error::Api` with reason
//! `NotFound`), and is recorded like the others.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{json, Value};

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `GET`, `POST`, `PATCH`, ...
    pub method: String,
    /// The URL path, e.g. `/api/v1/namespaces/default/pods`.
    pub path: String,
    /// The query string, without `?` (empty if none).
    pub query: String,
    /// `Content-Type`, if sent (which patch a `PATCH` is).
    pub content_type: Option<String>,
    /// The body as JSON; a body that is not JSON as a JSON string; `None` when empty.
    pub body: Option<Value>,
}

impl Request {
    /// The value of query parameter `name`, if present (not percent-decoded).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }

    /// Whether this is a watch (`?watch=true` or `?watch=1`).
    pub fn is_watch(&self) -> bool {
        matches!(self.param("watch"), Some("true" | "1"))
    }

    /// `METHOD path`, the form tests compare sequences of requests in.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// An answer to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A JSON response with this status code.
    Json(u16, Value),
    /// A watch response that stays open and sends no event.
    OpenWatch,
}

impl Reply {
    /// 200 with `body`.
    pub fn ok(body: Value) -> Reply {
        Reply::Json(200, body)
    }

    /// 201 with `body`.
    pub fn created(body: Value) -> Reply {
        Reply::Json(201, body)
    }

    /// A failure `Status` as kube-apiserver writes it (`reason` e.g. `NotFound`,
    /// `Conflict`, `AlreadyExists`).
    pub fn status(code: u16, reason: &str, message: &str) -> Reply {
        Reply::Json(
            code,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": message, "reason": reason, "code": code}),
        )
    }

    /// 404 `NotFound`.
    pub fn not_found() -> Reply {
        Reply::status(404, "NotFound", "not found")
    }
}

/// A rule's answer, computed from the request.
type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

struct Rule {
    method: String,
    path: String,
    handler: Handler,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    requests: Vec<Request>,
}

/// The fake API server: rules that answer requests, and the record of requests.
/// Clones share both.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    /// A fake with no rules: every request gets 404.
    pub fn new() -> FakeApi {
        FakeApi::default()
    }

    /// A client whose requests go to this fake (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        kube::Client::new(Service(self.state.clone()), "default")
    }

    /// Answers `method` requests for exactly `path` with `handler`. A later rule for the
    /// same method and path takes precedence over an earlier one.
    pub fn on(
        &self,
        method: &str,
        path: &str,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) {
        self.lock().rules.push(Rule {
            method: method.to_string(),
            path: path.to_string(),
            handler: Arc::new(handler),
        });
    }

    /// Answers `method` requests for `path` with `reply`, every time.
    pub fn reply(&self, method: &str, path: &str, reply: Reply) {
        self.on(method, path, move |_| reply.clone());
    }

    /// Serves `items` as the collection at `path` (a `kind` list with resourceVersion
    /// `1`); a watch of it stays open and sends nothing. What an informer needs to fill
    /// its cache and be ready.
    pub fn objects(&self, path: &str, kind: &str, items: Vec<Value>) {
        let list = json!({"kind": kind, "apiVersion": "v1",
                          "metadata": {"resourceVersion": "1"}, "items": items});
        self.on("GET", path, move |r| {
            if r.is_watch() {
                Reply::OpenWatch
            } else {
                Reply::ok(list.clone())
            }
        });
    }

    /// Answers creates (`POST path`) as the API server would: the body back with status
    /// 201, a name made from `generateName` when it has none (suffix `00001`, `00002`...),
    /// a uid and a resourceVersion.
    pub fn echo_creates(&self, path: &str) {
        let n = Arc::new(AtomicU64::new(0));
        self.on("POST", path, move |r| {
            let mut obj = r.body.clone().unwrap_or_else(|| json!({}));
            let i = n.fetch_add(1, Ordering::Relaxed) + 1;
            let meta = &mut obj["metadata"];
            if meta.get("name").and_then(Value::as_str).is_none() {
                let base = meta["generateName"].as_str().unwrap_or("").to_string();
                meta["name"] = json!(format!("{base}{i:05}"));
            }
            meta["uid"] = json!(format!("fake-uid-{i}"));
            meta["resourceVersion"] = json!((100 + i).to_string());
            Reply::created(obj)
        });
    }

    /// Every request so far, in the order received.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// The requests so far that change something (every method but `GET`), in order.
    pub fn writes(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect()
    }

    /// Forgets the requests recorded so far (rules stay).
    pub fn clear(&self) {
        self.lock().requests.clear();
    }

    /// How many requests of each `METHOD path` were received.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in self.requests() {
            *out.entry(r.line()).or_insert(0) += 1;
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The response body type: a whole JSON document, or a stream that never ends.
type Body = BoxBody<Bytes, Infallible>;

/// The transport of [`FakeApi::client`].
#[derive(Clone)]
struct Service(Arc<Mutex<State>>);

impl tower::Service<http::Request<kube::client::Body>> for Service {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let body = (!bytes.is_empty()).then(|| {
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
            });
            let request = Request {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or("").to_string(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                body,
            };
            let handler = {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                s.requests.push(request.clone());
                s.rules
                    .iter()
                    .rev()
                    .find(|r| r.method == request.method && r.path == request.path)
                    .map(|r| r.handler.clone())
            };
            // Called without the lock, so a handler may use the fake itself.
            let reply = handler.map_or_else(Reply::not_found, |h| h(&request));
            Ok(response(reply))
        })
    }
}

fn response(reply: Reply) -> http::Response<Body> {
    let (code, body) = match reply {
        Reply::Json(code, v) => (
            code,
            Full::new(Bytes::from(v.to_string()))
                .map_err(|e| match e {})
                .boxed(),
        ),
        Reply::OpenWatch => (
            200,
            StreamBody::new(futures::stream::pending::<
                Result<http_body::Frame<Bytes>, Infallible>,
            >())
            .boxed(),
        ),
    };
    let mut resp = http::Response::new(body);
    *resp.status_mut() =
        http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ListParams, PostParams};

    #[tokio::test]
    async fn answers_by_rule_and_records_every_request() {
        let fake = FakeApi::new();
        let path = "/api/v1/namespaces/default/configmaps";
        fake.objects(
            path,
            "ConfigMapList",
            vec![json!({"metadata": {"name": "a"}})],
        );
        fake.echo_creates(path);
        let api: Api<ConfigMap> = Api::default_namespaced(fake.client());

        let names: Vec<_> = api
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        assert_eq!(names, ["a"]);

        let mut cm = ConfigMap::default();
        cm.metadata.generate_name = Some("gen-".into());
        let made = api
            .create(&PostParams::default(), &cm)
            .await
            .expect("create");
        assert_eq!(made.metadata.name.as_deref(), Some("gen-00001"));

        let err = api.get("missing").await.expect_err("no rule: 404");
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"),
            "{err:?}"
        );

        let lines: Vec<String> = fake.requests().iter().map(Request::line).collect();
        assert_eq!(
            lines,
            [
                format!("GET {path}"),
                format!("POST {path}"),
                format!("GET {path}/missing"),
            ]
        );
        let writes = fake.writes();
        assert_eq!(writes.len(), 1);
        assert_eq!(
            writes[0].body.as_ref().expect("body")["metadata"]["generateName"],
            "gen-"
        );
    }

    #[tokio::test]
    async fn later_rules_win_and_handlers_see_the_request() {
        let fake = FakeApi::new();
        let path = "/api/v1/namespaces/default/configmaps/x";
        fake.reply("GET", path, Reply::not_found());
        fake.on("GET", path, |r| {
            Reply::ok(json!({"metadata": {"name": "x", "labels": {"q": r.query}}}))
        });
        let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
        let cm = api.get("x").await.expect("the later rule answers");
        assert_eq!(cm.metadata.labels.expect("labels")["q"], "");
        assert_eq!(fake.counts()[&format!("GET {path}")], 1);
        fake.clear();
        assert!(fake.requests().is_empty());
    }

    #[test]
    fn query_parameters_and_watches() {
        let r = Request {
            method: "GET".into(),
            path: "/api/v1/pods".into(),
            query: "limit=500&watch=true&resourceVersion=1".into(),
            content_type: None,
            body: None,
        };
        assert!(r.is_watch());
        assert_eq!(r.param("resourceVersion"), Some("1"));
        assert_eq!(r.param("missing"), None);
    }
}
