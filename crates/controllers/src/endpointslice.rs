//! The EndpointSlice controller: for every Service with a selector, EndpointSlices
//! (`discovery.k8s.io/v1`, addressType IPv4, at most 100 endpoints each, named
//! `<service>-<5 random chars>` by generateName) with one endpoint per selected pod and
//! its ready/serving/terminating conditions. Pods whose ports resolve differently (named
//! targetPorts) go to different slices, as in Kubernetes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use skiff_api::names::{
    ENDPOINTSLICE_CONTROLLER, ENDPOINTSLICE_MANAGED_BY_LABEL, SERVICE_NAME_LABEL,
};

use crate::informer::Informer;
use crate::podendpoint::{
    headless, in_endpoints, managed, resolved_ports, Address, ResolvedPort, HEADLESS_LABEL,
};
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::{controller_ref, is_not_found, key_of, split_key};
use crate::Informers;

/// Workers, as kube-controller-manager's `--concurrent-service-endpoint-syncs` default: a sync mostly waits
/// for API calls, so two workers left keys queued for seconds at a thousand nodes.
const WORKERS: usize = 5;

/// Most endpoints in one slice (`--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// One desired slice: its ports and endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceContent {
    /// Ports, in the Service's order.
    pub ports: Vec<EndpointPort>,
    /// Endpoints, sorted by address.
    pub endpoints: Vec<Endpoint>,
}

/// The endpoint of one pod (podToEndpoint), if it has an IPv4 address.
pub fn pod_endpoint(pod: &Pod, svc: &Service) -> Option<Endpoint> {
    Address::of_pod(pod, svc).map(|a| a.to_endpoint())
}

/// The slices `svc` should have, given the pods it selects: grouped by resolved ports,
/// at most [`MAX_ENDPOINTS_PER_SLICE`] endpoints each, sorted by address; one empty
/// slice without ports when no pod qualifies (Kubernetes' placeholder slice).
pub fn desired_slices(svc: &Service, pods: &[&Pod]) -> Vec<SliceContent> {
    let mut groups: BTreeMap<Vec<ResolvedPort>, Vec<Endpoint>> = BTreeMap::new();
    for pod in pods {
        if !in_endpoints(pod, true) {
            continue;
        }
        let Some(ep) = pod_endpoint(pod, svc) else {
            continue;
        };
        groups.entry(resolved_ports(svc, pod)).or_default().push(ep);
    }
    let mut out = Vec::new();
    for (ports, mut eps) in groups {
        eps.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        let ports: Vec<EndpointPort> = ports.iter().map(ResolvedPort::to_discovery).collect();
        let mut eps = eps.into_iter().peekable();
        while eps.peek().is_some() {
            out.push(SliceContent {
                ports: ports.clone(),
                endpoints: eps.by_ref().take(MAX_ENDPOINTS_PER_SLICE).collect(),
            });
        }
    }
    if out.is_empty() {
        out.push(SliceContent {
            ports: vec![],
            endpoints: vec![],
        });
    }
    out
}

/// Labels of a Service's slices.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    labels.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
    labels.insert(
        ENDPOINTSLICE_MANAGED_BY_LABEL.into(),
        ENDPOINTSLICE_CONTROLLER.into(),
    );
    if headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// "ns/name" -> (resourceVersion a write replaced, the object the API returned).
type Written = HashMap<String, (Option<String>, Arc<EndpointSlice>)>;

/// The slices this controller wrote and its cache may not show yet (Kubernetes'
/// endpointSliceTracker). It serves two purposes: the watch event of our own write does
/// not trigger another full sync of the Service, and a sync that runs before the cache
/// caught up builds on what we wrote instead of failing with a conflict and backing off.
#[derive(Default)]
pub struct SliceTracker {
    written: Mutex<Written>,
}

impl SliceTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Written> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that we replaced (or created, `base` None) a slice and got `written`.
    pub fn wrote(&self, base: Option<String>, written: EndpointSlice) {
        self.lock()
            .insert(key_of(&written), (base, Arc::new(written)));
    }

    /// Forgets a slice (deleted).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Whether a watch event shows exactly our last write of that slice.
    pub fn is_own_write(&self, slice: &EndpointSlice) -> bool {
        self.lock().get(&key_of(slice)).is_some_and(|(_, w)| {
            w.metadata.resource_version.is_some()
                && w.metadata.resource_version == slice.metadata.resource_version
        })
    }

    /// The freshest known state of a cached slice: our write when the cache still shows
    /// the version it replaced, else the cache (which then caught up, or shows someone
    /// else's later change).
    pub fn freshest(&self, cached: Arc<EndpointSlice>) -> Arc<EndpointSlice> {
        let key = key_of(cached.as_ref());
        let mut m = self.lock();
        match m.get(&key) {
            Some((base, w)) if base.is_some() && *base == cached.metadata.resource_version => {
                w.clone()
            }
            Some(_) => {
                m.remove(&key);
                cached
            }
            None => cached,
        }
    }
}

struct Ctx {
    client: Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    slices: Arc<Informer<EndpointSlice>>,
    tracker: Arc<SliceTracker>,
}

/// Starts the controller.
pub fn run(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        services: inf.services.clone(),
        pods: inf.pods.clone(),
        slices: inf.endpointslices.clone(),
        tracker: Arc::default(),
    });
    let tracker = ctx.tracker.clone();
    Triggers::new(&queue, &inf.services)
        .primary()
        .watches(
            &inf.pods,
            crate::endpoints::pod_to_services(inf.services.clone()),
        )
        // Someone else changing or deleting our slices: put them back. Our own writes
        // coming back need nothing.
        .watches(&ctx.slices, move |s, deleted| {
            if deleted {
                tracker.forget(&key_of(s));
            } else if tracker.is_own_write(s) {
                return Vec::new();
            }
            let ours = s
                .labels()
                .get(ENDPOINTSLICE_MANAGED_BY_LABEL)
                .map(String::as_str)
                == Some(ENDPOINTSLICE_CONTROLLER);
            match s.labels().get(SERVICE_NAME_LABEL) {
                Some(svc) if ours => vec![format!("{}/{svc}", s.namespace().unwrap_or_default())],
                _ => Vec::new(),
            }
        })
        .every(Duration::from_secs(60));
    run_workers("endpointslice", queue, WORKERS, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    });
}

fn same_content(
    slice: &EndpointSlice,
    want: &SliceContent,
    labels: &BTreeMap<String, String>,
) -> bool {
    slice.endpoints == want.endpoints
        && slice.ports.as_deref().unwrap_or_default() == want.ports.as_slice()
        && slice.labels() == labels
}

async fn sync(ctx: &Ctx, key: &str) -> anyhow::Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    ctx.slices.wait_ready().await;
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let mut existing: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .list()
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
        .filter(|s| s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(name))
        .filter(|s| {
            s.labels()
                .get(ENDPOINTSLICE_MANAGED_BY_LABEL)
                .map(String::as_str)
                == Some(ENDPOINTSLICE_CONTROLLER)
        })
        .map(|s| ctx.tracker.freshest(s))
        .collect();
    existing.sort_by_key(|s| s.name_any());
    let svc = ctx
        .services
        .store()
        .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns));
    let Some(svc) = svc.filter(|s| managed(s)) else {
        for s in existing {
            delete(&api, &s.name_any()).await?;
            ctx.tracker.forget(&key_of(s.as_ref()));
        }
        return Ok(None);
    };
    let started = std::time::Instant::now();
    let selected = crate::podendpoint::selected_pods(&ctx.pods, &svc);
    let pods: Vec<&Pod> = selected.iter().map(|p| p.as_ref()).collect();
    let desired = desired_slices(&svc, &pods);
    tracing::debug!(service = %key, pods = pods.len(), compute_us = started.elapsed().as_micros() as u64, "endpointslice desired state");
    let labels = slice_labels(&svc);
    let owner = controller_ref(svc.as_ref());
    // Reuse existing slices with the same ports, in name order, before creating any.
    let mut unused: Vec<Arc<EndpointSlice>> = existing;
    for want in desired {
        let pos = unused.iter().position(|s| {
            s.ports.as_deref().unwrap_or_default() == want.ports.as_slice()
                && s.address_type == "IPv4"
        });
        match pos.map(|i| unused.remove(i)) {
            Some(cur) => {
                if same_content(&cur, &want, &labels) {
                    continue;
                }
                let mut new = (*cur).clone();
                new.endpoints = want.endpoints;
                new.ports = Some(want.ports);
                new.metadata.labels = Some(labels.clone());
                let written = api
                    .replace(&cur.name_any(), &PostParams::default(), &new)
                    .await
                    .with_context(|| format!("updating endpointslice {ns}/{}", cur.name_any()))?;
                ctx.tracker
                    .wrote(cur.metadata.resource_version.clone(), written);
            }
            None => {
                let slice = EndpointSlice {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{name}-")),
                        namespace: Some(ns.to_string()),
                        labels: Some(labels.clone()),
                        owner_references: Some(vec![owner.clone()]),
                        ..Default::default()
                    },
                    address_type: "IPv4".into(),
                    endpoints: want.endpoints,
                    ports: Some(want.ports),
                };
                let created = api
                    .create(&PostParams::default(), &slice)
                    .await
                    .with_context(|| format!("creating endpointslice for {key}"))?;
                // Wait for our cache to see it, so that the next sync reuses it.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                let r = kube::runtime::reflector::ObjectRef::new(&created.name_any()).within(ns);
                ctx.tracker.wrote(None, created);
                while ctx.slices.store().get(&r).is_none() && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    for s in unused {
        delete(&api, &s.name_any()).await?;
        ctx.tracker.forget(&key_of(s.as_ref()));
    }
    Ok(None)
}

async fn delete(api: &Api<EndpointSlice>, name: &str) -> anyhow::Result<()> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting endpointslice {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use skiff_testkit::fakeapi::{FakeApi, Reply};

    use crate::testing::{collection, informer, writes_but_events};

    fn svc(ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u", "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"}, "ports": ports}
        }))
        .expect("svc")
    }

    fn pod(i: usize, port_name: &str, port: i32, ready: bool, terminating: bool) -> Pod {
        let mut v = json!({
            "metadata": {"name": format!("p{i}"), "namespace": "default", "uid": format!("u{i}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "k8s-n1", "containers": [{"name": "c", "ports": [{"name": port_name, "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": format!("10.244.{}.{}", i / 200, i % 200 + 2),
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        });
        if terminating {
            v["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        }
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn conditions_and_named_ports() {
        let s = svc(json!([{"name": "http", "port": 80, "targetPort": "http"}]));
        let pods = [
            pod(1, "http", 8080, true, false),
            pod(2, "http", 9090, false, false),
            pod(3, "http", 8080, true, true),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let slices = desired_slices(&s, &refs);
        assert_eq!(slices.len(), 2, "two port sets");
        let a = &slices[0];
        assert_eq!(a.ports[0].port, Some(8080));
        assert_eq!(a.endpoints.len(), 2);
        let cond = |e: &Endpoint| {
            let c = e.conditions.clone().unwrap_or_default();
            (c.ready, c.serving, c.terminating)
        };
        assert_eq!(cond(&a.endpoints[0]), (Some(true), Some(true), Some(false)));
        assert_eq!(cond(&a.endpoints[1]), (Some(false), Some(true), Some(true)));
        assert_eq!(slices[1].ports[0].port, Some(9090));
        assert_eq!(
            cond(&slices[1].endpoints[0]),
            (Some(false), Some(false), Some(false))
        );
        let labels = slice_labels(&s);
        assert_eq!(
            labels.get("kubernetes.io/service-name").map(String::as_str),
            Some("web")
        );
        assert_eq!(
            labels
                .get("endpointslice.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("endpointslice-controller.k8s.io")
        );
    }

    fn slice(name: &str, rv: &str) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
            "addressType": "IPv4", "endpoints": []
        }))
        .expect("slice")
    }

    #[test]
    fn tracker_skips_own_writes_and_covers_a_stale_cache() {
        let t = SliceTracker::default();
        let cached = Arc::new(slice("web-abcde", "10"));
        assert!(!t.is_own_write(&cached));
        t.wrote(Some("10".into()), slice("web-abcde", "11"));
        assert!(t.is_own_write(&slice("web-abcde", "11")));
        assert!(
            !t.is_own_write(&slice("web-abcde", "12")),
            "someone else's write"
        );
        // The cache still shows the version we replaced: use what we wrote.
        assert_eq!(
            t.freshest(cached.clone()).resource_version().as_deref(),
            Some("11")
        );
        // The cache caught up (or moved on): use it, and stop tracking.
        let newer = Arc::new(slice("web-abcde", "12"));
        assert_eq!(t.freshest(newer).resource_version().as_deref(), Some("12"));
        assert_eq!(t.freshest(cached).resource_version().as_deref(), Some("10"));
        t.wrote(None, slice("web-fghij", "20"));
        assert!(t.is_own_write(&slice("web-fghij", "20")));
        t.forget("default/web-fghij");
        assert!(!t.is_own_write(&slice("web-fghij", "20")));
    }

    #[test]
    fn at_most_100_per_slice_and_a_placeholder_when_empty() {
        let s = svc(json!([{"port": 80, "targetPort": 80}]));
        let pods: Vec<Pod> = (0..250).map(|i| pod(i, "x", 80, true, false)).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let sizes: Vec<usize> = desired_slices(&s, &refs)
            .iter()
            .map(|c| c.endpoints.len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(
            desired_slices(&s, &[]),
            vec![SliceContent {
                ports: vec![],
                endpoints: vec![]
            }]
        );
    }

    /// Our slice `name` of Service `web` with `ports` and `endpoints` (JSON).
    fn our_slice(name: &str, ports: Value, endpoints: Value) -> Value {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "9",
                         "labels": {"app": "web", "kubernetes.io/service-name": "web",
                             "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4", "ports": ports, "endpoints": endpoints})
    }

    /// The Service `web` (port 80 to the pods' 8080) and one ready pod of it, as JSON.
    fn web() -> (Value, Value) {
        let svc = svc(json!([{"name": "http", "port": 80, "targetPort": 8080}]));
        let pod = pod(1, "http", 8080, true, false);
        (
            serde_json::to_value(&svc).expect("svc"),
            serde_json::to_value(&pod).expect("pod"),
        )
    }

    /// The controller's context over `fake`, its caches holding these objects.
    async fn ctx(fake: &FakeApi, svcs: Vec<Value>, pods: Vec<Value>, slices: Vec<Value>) -> Ctx {
        Ctx {
            client: fake.client(),
            services: informer(fake, svcs).await,
            pods: informer(fake, pods).await,
            slices: informer(fake, slices).await,
            tracker: Arc::default(),
        }
    }

    #[tokio::test]
    async fn sync_rewrites_a_stale_slice_and_deletes_one_no_longer_wanted() {
        let fake = FakeApi::new();
        let coll = collection::<EndpointSlice>("default");
        let (svc, pod) = web();
        let stale = our_slice(
            "web-abcde",
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
            json!([]),
        );
        let old_ports = our_slice(
            "web-old",
            json!([{"name": "http", "port": 9090, "protocol": "TCP"}]),
            json!([]),
        );
        // Someone else's slice for the same Service is not ours to touch.
        let mut foreign = our_slice("web-mine", json!([]), json!([]));
        foreign["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] = json!("someone");
        fake.on("PUT", &format!("{coll}/web-abcde"), |r| {
            let mut v = r.body.clone().unwrap_or_default();
            v["metadata"]["resourceVersion"] = json!("10");
            Reply::ok(v)
        });
        fake.reply(
            "DELETE",
            &format!("{coll}/web-old"),
            Reply::ok(old_ports.clone()),
        );
        let ctx = ctx(&fake, vec![svc], vec![pod], vec![stale, old_ports, foreign]).await;
        fake.clear();

        sync(&ctx, "default/web").await.expect("sync");

        let writes = writes_but_events(&fake);
        let lines: Vec<String> = writes.iter().map(|r| r.line()).collect();
        assert_eq!(
            lines,
            [
                format!("PUT {coll}/web-abcde"),
                format!("DELETE {coll}/web-old")
            ],
            "{writes:#?}"
        );
        let put = writes[0].body.as_ref().expect("slice");
        assert_eq!(
            put["metadata"]["resourceVersion"], "9",
            "replaces the version it read"
        );
        assert_eq!(put["endpoints"][0]["addresses"], json!(["10.244.0.3"]));
        assert_eq!(put["endpoints"][0]["conditions"]["ready"], true);
        assert_eq!(put["endpoints"][0]["targetRef"]["name"], "p1");
        assert_eq!(
            put["metadata"]["labels"]["kubernetes.io/service-name"],
            "web"
        );

        // The cache still shows the old version: the next sync builds on what it wrote
        // and does not write that slice again (the slice tracker). The deleted slice,
        // still cached, is deleted again (a 404 would be fine).
        fake.clear();
        sync(&ctx, "default/web").await.expect("second sync");
        let lines: Vec<String> = writes_but_events(&fake).iter().map(|r| r.line()).collect();
        assert_eq!(lines, [format!("DELETE {coll}/web-old")]);
    }

    #[tokio::test]
    async fn sync_creates_the_slice_of_a_new_service() {
        let fake = FakeApi::new();
        let coll = collection::<EndpointSlice>("default");
        fake.echo_creates(&coll);
        let (svc, pod) = web();
        let ctx = ctx(&fake, vec![svc], vec![pod], vec![]).await;
        fake.clear();

        sync(&ctx, "default/web").await.expect("sync");

        let writes = writes_but_events(&fake);
        assert_eq!(writes.len(), 1, "{writes:#?}");
        assert_eq!(writes[0].line(), format!("POST {coll}"));
        let slice = writes[0].body.as_ref().expect("slice");
        assert_eq!(slice["metadata"]["generateName"], "web-");
        assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
        assert_eq!(slice["metadata"]["ownerReferences"][0]["uid"], "u");
        assert_eq!(slice["addressType"], "IPv4");
        assert_eq!(
            slice["ports"],
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
        );
        assert_eq!(slice["endpoints"][0]["addresses"], json!(["10.244.0.3"]));
    }

    #[tokio::test]
    async fn sync_of_a_deleted_service_deletes_only_its_own_slices() {
        let fake = FakeApi::new();
        let coll = collection::<EndpointSlice>("default");
        let ours = our_slice("web-abcde", json!([]), json!([]));
        let mut foreign = our_slice("web-mine", json!([]), json!([]));
        foreign["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] = json!("someone");
        fake.reply(
            "DELETE",
            &format!("{coll}/web-abcde"),
            Reply::ok(ours.clone()),
        );
        let ctx = ctx(&fake, vec![], vec![], vec![ours, foreign]).await;
        fake.clear();

        sync(&ctx, "default/web").await.expect("sync");

        let lines: Vec<String> = writes_but_events(&fake).iter().map(|r| r.line()).collect();
        assert_eq!(lines, [format!("DELETE {coll}/web-abcde")]);
    }
}
