//! Integration tests against the real API server (in-process, loopback, temp data dir)
//! with the controllers and the scheduler running. No agent runs: the test plays the
//! kubelet (pod IPs, Running/Ready status, finishing graceful deletions).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_deployment_service_and_lifecycle() {
    let cl = start().await;
    let client = cl.client.clone();
    add_node(&client, "k8s-m", "192.0.2.10", true).await;
    add_node(&client, "k8s-n1", "192.0.2.11", false).await;
    add_node(&client, "k8s-n2", "192.0.2.12", false).await;
    let _kubelets = fake_kubelets(client.clone(), &["k8s-m", "k8s-n1", "k8s-n2"]);
    let _heartbeats = heartbeats(
        client.clone(),
        &[
            ("k8s-m", "192.0.2.10"),
            ("k8s-n1", "192.0.2.11"),
            ("k8s-n2", "192.0.2.12"),
        ],
    );

    // Node IPAM: control plane first, workers in order.
    let nodes: Api<Node> = Api::all(client.clone());
    for (n, cidr) in [
        ("k8s-m", "10.244.0.0/24"),
        ("k8s-n1", "10.244.1.0/24"),
        ("k8s-n2", "10.244.2.0/24"),
    ] {
        let got = eventually(10, "pod CIDRs", || async {
            nodes.get(n).await.ok()?.spec?.pod_cidr
        })
        .await;
        assert_eq!(got, cidr, "{n}");
    }

    // ServiceAccount controller.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    eventually(10, "default service account", || async {
        sas.get("default").await.ok()
    })
    .await;

    // The seed's Deployment: one ReplicaSet, 4 pods spread 2+2 over the workers.
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deps.create(&PostParams::default(), &httpd_deployment("httpd"))
        .await
        .expect("create deployment");
    let d = eventually(30, "rollout of 4 replicas", || {
        rollout_done(&deps, "httpd", 4)
    })
    .await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs_list = rss.list(&ListParams::default()).await.expect("rs").items;
    assert_eq!(rs_list.len(), 1);
    let rs = &rs_list[0];
    let hash = rs
        .labels()
        .get("pod-template-hash")
        .cloned()
        .expect("hash label");
    assert_eq!(rs.name_any(), format!("httpd-{hash}"));
    assert_eq!(
        rs.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    let conds: BTreeMap<String, (String, Option<String>)> = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, (c.status, c.reason)))
        .collect();
    assert_eq!(
        conds.get("Available"),
        Some(&(
            "True".to_string(),
            Some("MinimumReplicasAvailable".to_string())
        ))
    );
    assert_eq!(
        conds.get("Progressing"),
        Some(&(
            "True".to_string(),
            Some("NewReplicaSetAvailable".to_string())
        ))
    );
    let pods = active_pods(&client).await;
    assert_eq!(pods.len(), 4);
    let alphabet: BTreeSet<char> = "bcdfghjklmnpqrstvwxz2456789".chars().collect();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in &pods {
        let name = p.name_any();
        let suffix = name
            .strip_prefix(&format!("httpd-{hash}-"))
            .expect("pod name prefix");
        assert_eq!(suffix.len(), 5, "{name}");
        assert!(suffix.chars().all(|c| alphabet.contains(&c)), "{name}");
        *per_node
            .entry(
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
            )
            .or_default() += 1;
    }
    assert_eq!(
        per_node,
        BTreeMap::from([("k8s-n1".to_string(), 2), ("k8s-n2".to_string(), 2)])
    );

    // A Service: Endpoints and an EndpointSlice with the 4 pod IPs.
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "httpd-svc", "namespace": "default"},
            "spec": {"selector": {"run": "httpd"}, "ports": [{"protocol": "TCP", "port": 8080, "targetPort": 80}]}
        }))
        .expect("svc"),
    )
    .await
    .expect("create service");
    let ips: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    eventually(10, "endpoints with 4 addresses", || async {
        let ep = eps.get("httpd-svc").await.ok()?;
        let got: BTreeSet<String> = ep
            .subsets?
            .iter()
            .flat_map(|s| s.addresses.iter().flatten().map(|a| a.ip.clone()))
            .collect();
        (got == ips).then_some(())
    })
    .await;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = eventually(10, "an endpointslice with 4 endpoints", || async {
        let l = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=httpd-svc"))
            .await
            .ok()?;
        let s = l.items.into_iter().next()?;
        (s.endpoints.len() == 4).then_some(s)
    })
    .await;
    assert!(slice.name_any().starts_with("httpd-svc-"));
    assert_eq!(
        slice
            .labels()
            .get("endpointslice.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    assert_eq!(slice.ports.as_ref().and_then(|p| p[0].port), Some(80));

    // A deleted pod is replaced.
    let victim = pods[0].name_any();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods_api
        .delete(&victim, &DeleteParams::default())
        .await
        .expect("delete pod");
    eventually(20, "replacement pod", || async {
        let names: Vec<String> = active_pods(&client)
            .await
            .iter()
            .map(|p| p.name_any())
            .collect();
        (names.len() == 4 && !names.contains(&victim)).then_some(())
    })
    .await;
    eventually(20, "rollout after replacement", || {
        rollout_done(&deps, "httpd", 4)
    })
    .await;

    // An image change rolls to a second ReplicaSet.
    deps.patch(
        "httpd",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "httpd", "image": "httpd:2"}]}}}})),
    )
    .await
    .expect("patch image");
    eventually(30, "rolling update", || async {
        rollout_done(&deps, "httpd", 4).await?;
        let pods = active_pods(&client).await;
        let all_new = pods.len() == 4
            && pods.iter().all(|p| {
                p.spec.as_ref().map(|s| s.containers[0].image.clone())
                    == Some(Some("httpd:2".to_string()))
            });
        all_new.then_some(())
    })
    .await;
    let rs_list = rss.list(&ListParams::default()).await.expect("rs").items;
    assert_eq!(rs_list.len(), 2);
    let revisions: BTreeSet<(String, i32)> = rs_list
        .iter()
        .map(|rs| {
            (
                rs.annotations()
                    .get("deployment.kubernetes.io/revision")
                    .cloned()
                    .unwrap_or_default(),
                rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        revisions,
        BTreeSet::from([("1".to_string(), 0), ("2".to_string(), 4)])
    );

    // Deleting the Deployment leaves nothing behind (garbage collector).
    deps.delete("httpd", &DeleteParams::background())
        .await
        .expect("delete deployment");
    eventually(30, "garbage collection", || async {
        let rs_left = rss.list(&ListParams::default()).await.ok()?.items.len();
        let pods_left = pods_api
            .list(&ListParams::default().labels("run=httpd"))
            .await
            .ok()?
            .items
            .len();
        (rs_left == 0 && pods_left == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unschedulable_pods_and_namespace_deletion() {
    let cl = start().await;
    let client = cl.client.clone();
    add_node(&client, "k8s-m", "192.0.2.10", true).await;
    let _kubelets = fake_kubelets(client.clone(), &["k8s-m", "k8s-w"]);
    let _heartbeats = heartbeats(client.clone(), &[("k8s-m", "192.0.2.10")]);
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "demo"}})).expect("ns"),
    )
    .await
    .expect("ns");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "demo");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
            .expect("pod"),
    )
    .await
    .expect("pod");
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "demo");
    let msg = eventually(10, "FailedScheduling event", || async {
        let l = events.list(&ListParams::default()).await.ok()?;
        l.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
            .and_then(|e| e.message)
    })
    .await;
    assert_eq!(
        msg,
        "0/1 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. \
         preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    );
    // A new worker makes it schedulable.
    add_node(&client, "k8s-w", "192.0.2.20", false).await;
    let _heartbeats_w = heartbeats(client.clone(), &[("k8s-w", "192.0.2.20")]);
    eventually(10, "binding after a node joined", || async {
        pods.get("p")
            .await
            .ok()?
            .spec?
            .node_name
            .filter(|n| n == "k8s-w")
    })
    .await;

    // Deleting the namespace empties it and then removes it.
    nss.delete("demo", &DeleteParams::default())
        .await
        .expect("delete ns");
    eventually(30, "namespace removal", || async {
        match nss.get("demo").await {
            Err(kube::Error::Api(s)) if s.code == 404 => Some(()),
            _ => None,
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_node_is_tainted_and_its_pods_move() {
    let cl = start().await;
    let client = cl.client.clone();
    add_node(&client, "k8s-n1", "192.0.2.11", false).await;
    add_node(&client, "k8s-n2", "192.0.2.12", false).await;
    let _kubelets = fake_kubelets(client.clone(), &["k8s-n1", "k8s-n2"]);
    // Only k8s-n1 keeps posting status.
    let heartbeat = heartbeats(client.clone(), &[("k8s-n1", "192.0.2.11")]);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    // Admission gives pods 300 s of toleration for unreachable nodes; ask for 1 s.
    let mut d = httpd_deployment("httpd");
    if let Some(spec) = d.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.tolerations = Some(
            serde_json::from_value(json!([
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1},
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}
            ]))
            .expect("tolerations"),
        );
    }
    deps.create(&PostParams::default(), &d)
        .await
        .expect("deployment");
    eventually(30, "rollout", || rollout_done(&deps, "httpd", 4)).await;
    let nodes: Api<Node> = Api::all(client.clone());
    eventually(30, "k8s-n2 unreachable", || async {
        let n = nodes.get("k8s-n2").await.ok()?;
        let tainted = n
            .spec?
            .taints?
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute");
        let unknown = n
            .status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "Unknown");
        (tainted && unknown).then_some(())
    })
    .await;
    // k8s-n2's kubelet is gone, so its pods stay Terminating; the replacements run on k8s-n1.
    eventually(30, "all replicas on k8s-n1", || async {
        let pods = active_pods(&client).await;
        let on_n1 = pods
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("k8s-n1"))
            .count();
        (pods.len() == 4 && on_n1 == 4).then_some(())
    })
    .await;
    heartbeat.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_pause_resume_undo_and_mirroring() {
    let cl = start().await;
    let client = cl.client.clone();
    add_node(&client, "k8s-n1", "192.0.2.11", false).await;
    add_node(&client, "k8s-n2", "192.0.2.12", false).await;
    let _kubelets = fake_kubelets(client.clone(), &["k8s-n1", "k8s-n2"]);
    let _heartbeats = heartbeats(
        client.clone(),
        &[("k8s-n1", "192.0.2.11"), ("k8s-n2", "192.0.2.12")],
    );
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    deps.create(&PostParams::default(), &httpd_deployment("httpd"))
        .await
        .expect("deployment");
    eventually(30, "rollout", || rollout_done(&deps, "httpd", 4)).await;
    let patch = |v: serde_json::Value| {
        let deps = deps.clone();
        async move {
            deps.patch("httpd", &PatchParams::default(), &Patch::Merge(v))
                .await
                .expect("patch deployment");
        }
    };
    let revisions = || async {
        let mut v: Vec<(String, i32, Option<String>)> = rss
            .list(&ListParams::default())
            .await
            .expect("rs")
            .items
            .iter()
            .map(|rs| {
                (
                    rs.annotations()
                        .get("deployment.kubernetes.io/revision")
                        .cloned()
                        .unwrap_or_default(),
                    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1),
                    rs.annotations()
                        .get("deployment.kubernetes.io/revision-history")
                        .cloned(),
                )
            })
            .collect();
        v.sort();
        v
    };

    // kubectl scale
    patch(json!({"spec": {"replicas": 6}})).await;
    eventually(30, "scaled to 6", || rollout_done(&deps, "httpd", 6)).await;
    let rs = rss.list(&ListParams::default()).await.expect("rs").items;
    assert_eq!(
        rs[0]
            .annotations()
            .get("deployment.kubernetes.io/desired-replicas")
            .map(String::as_str),
        Some("6")
    );

    // kubectl rollout pause: a template change does not roll.
    patch(json!({"spec": {"paused": true}})).await;
    eventually(10, "DeploymentPaused condition", || async {
        let d = deps.get("httpd").await.ok()?;
        d.status?
            .conditions?
            .iter()
            .find(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused"))
            .map(|_| ())
    })
    .await;
    patch(json!({"spec": {"template": {"spec": {"containers": [{"name": "httpd", "image": "httpd:2", "ports": [{"containerPort": 80}]}]}}}})).await;
    eventually(10, "paused deployment observed", || async {
        let d = deps.get("httpd").await.ok()?;
        (d.status?.observed_generation >= d.metadata.generation).then_some(())
    })
    .await;
    assert_eq!(revisions().await.len(), 1, "no rollout while paused");

    // kubectl rollout resume
    patch(json!({"spec": {"paused": false}})).await;
    eventually(30, "resumed rollout", || async {
        rollout_done(&deps, "httpd", 6).await?;
        let r = revisions().await;
        (r.len() == 2 && r[1].1 == 6 && r[0].1 == 0).then_some(())
    })
    .await;

    // kubectl rollout undo: the template goes back; the old ReplicaSet becomes revision 3.
    patch(json!({"spec": {"template": {"spec": {"containers": [{"name": "httpd", "image": "httpd", "ports": [{"containerPort": 80}]}]}}}})).await;
    eventually(30, "rollback", || async {
        rollout_done(&deps, "httpd", 6).await?;
        let r = revisions().await;
        (r == vec![
            ("2".to_string(), 0, None),
            ("3".to_string(), 6, Some("1".to_string())),
        ])
        .then_some(())
    })
    .await;
    let d = deps.get("httpd").await.expect("deployment");
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("3")
    );

    // A Service without a selector: its user-managed Endpoints are mirrored to a slice.
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "ext"}, "spec": {"ports": [{"port": 80}]}}),
        )
        .expect("svc"),
    )
    .await
    .expect("svc");
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    eps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "ext"},
            "subsets": [{"addresses": [{"ip": "192.0.2.50"}], "ports": [{"port": 8080, "protocol": "TCP"}]}]}))
        .expect("ep"),
    )
    .await
    .expect("endpoints");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    eventually(10, "mirrored slice", || async {
        let l = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=ext"))
            .await
            .ok()?;
        let s = l.items.into_iter().next()?;
        let ok = s
            .labels()
            .get("endpointslice.kubernetes.io/managed-by")
            .map(String::as_str)
            == Some("endpointslicemirroring-controller.k8s.io")
            && s.endpoints.first().map(|e| e.addresses.clone())
                == Some(vec!["192.0.2.50".to_string()]);
        ok.then_some(())
    })
    .await;
    // The Endpoints controller leaves them alone.
    let ep = eps.get("ext").await.expect("endpoints");
    assert_eq!(ep.subsets.map(|s| s.len()), Some(1));
}

/// The ClusterRole aggregation user story: a role labelled `aggregate-to-view` shows up
/// in `view`, and through `view` in `edit` and `admin`; unlabelled or deleted, it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clusterrole_aggregation_follows_labels() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};

    let cl = start_these_controllers(
        std::time::Duration::from_secs(40),
        &["clusterrole-aggregation"],
    )
    .await;
    let roles: Api<ClusterRole> = Api::all(cl.client.clone());
    let widgets: PolicyRule = serde_json::from_value(json!({
        "apiGroups": ["widgets.example.com"], "resources": ["widgets"],
        "verbs": ["get", "list", "watch"]}))
    .expect("rule");
    let has_widgets = |r: &ClusterRole| r.rules.iter().flatten().any(|x| *x == widgets);
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "widgets-view",
                     "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [widgets]}))
    .expect("role");
    roles
        .create(&PostParams::default(), &role)
        .await
        .expect("create widgets-view");
    for name in ["view", "edit", "admin"] {
        let r = eventually(10, &format!("widgets rule in {name}"), || async {
            roles.get(name).await.ok().filter(has_widgets)
        })
        .await;
        // The rules it had from the default roles are still there.
        assert!(r.rules.iter().flatten().any(|x| x
            .resources
            .iter()
            .flatten()
            .any(|res| res == "pods")));
    }
    let view = roles.get("view").await.expect("view");
    assert!(
        view.managed_fields().iter().any(|m| m.manager.as_deref()
            == Some("clusterrole-aggregation-controller")
            && m.operation.as_deref() == Some("Apply")),
        "{:?}",
        view.managed_fields()
    );

    // Unlabelled, it leaves every aggregated role.
    roles
        .patch(
            "widgets-view",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                "rbac.authorization.k8s.io/aggregate-to-view": null}}})),
        )
        .await
        .expect("unlabel");
    for name in ["view", "edit", "admin"] {
        eventually(10, &format!("widgets rule out of {name}"), || async {
            roles.get(name).await.ok().filter(|r| !has_widgets(r))
        })
        .await;
    }

    // A role aggregating only `widgets-view` loses every rule when it is deleted.
    let mine: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "mine"},
        "aggregationRule": {"clusterRoleSelectors": [
            {"matchExpressions": [{"key": "team", "operator": "In", "values": ["widgets"]}]}]}}))
    .expect("role");
    roles
        .create(&PostParams::default(), &mine)
        .await
        .expect("create mine");
    roles
        .patch(
            "widgets-view",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "widgets"}}})),
        )
        .await
        .expect("label");
    eventually(10, "widgets rule in mine", || async {
        roles.get("mine").await.ok().filter(has_widgets)
    })
    .await;
    roles
        .delete("widgets-view", &DeleteParams::default())
        .await
        .expect("delete widgets-view");
    eventually(10, "mine without rules", || async {
        roles
            .get("mine")
            .await
            .ok()
            .filter(|r| r.rules.iter().flatten().next().is_none())
    })
    .await;
}
