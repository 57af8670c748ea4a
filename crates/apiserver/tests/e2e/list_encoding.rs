//! LIST answers encoded from the stored bytes (objects::serve_list): the same objects as
//! GET returns, pages that chain, selectors, Tables with partial objects, conversions.

use http::Request;
use serde_json::{json, Value};

use crate::common;

const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

async fn get(c: &kube::Client, uri: &str, accept: &str) -> Value {
    let req = Request::builder()
        .uri(uri)
        .header("accept", accept)
        .body(Vec::new())
        .expect("request");
    let text = c.request_text(req).await.expect("request succeeds");
    serde_json::from_str(&text).expect("JSON answer")
}

async fn post(c: &kube::Client, uri: &str, body: Value) {
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("encode"))
        .expect("request");
    c.request_text(req).await.expect("create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_match_gets_pages_and_tables() {
    let s = common::start().await;
    let c = s.client();
    for i in 0..5 {
        post(
            &c,
            "/api/v1/namespaces/default/pods",
            json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p{i}"), "labels": {"n": i.to_string(), "all": "yes"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .await;
    }
    let list = get(&c, "/api/v1/namespaces/default/pods", "application/json").await;
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["apiVersion"], "v1");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 5);
    for item in items {
        let name = item["metadata"]["name"].as_str().expect("name");
        let one = get(
            &c,
            &format!("/api/v1/namespaces/default/pods/{name}"),
            "application/json",
        )
        .await;
        assert_eq!(item, &one, "list item equals GET");
    }

    // Pages of two chain to the whole list; the count of the rest is given.
    let mut names = Vec::new();
    let mut uri = "/api/v1/namespaces/default/pods?limit=2".to_string();
    loop {
        let page = get(&c, &uri, "application/json").await;
        for i in page["items"].as_array().expect("items") {
            names.push(i["metadata"]["name"].as_str().expect("name").to_string());
        }
        match page["metadata"]["continue"].as_str() {
            Some(tok) => {
                assert_eq!(
                    page["metadata"]["remainingItemCount"],
                    json!(5 - names.len())
                );
                uri = format!("/api/v1/namespaces/default/pods?limit=2&continue={tok}");
            }
            None => break,
        }
    }
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4"]);

    let sel = get(
        &c,
        "/api/v1/namespaces/default/pods?labelSelector=n%20in%20(1,3)",
        "application/json",
    )
    .await;
    let got: Vec<&str> = sel["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(got, ["p1", "p3"]);
    let sel = get(
        &c,
        "/api/v1/namespaces/default/pods?labelSelector=all%3Dyes&limit=1",
        "application/json",
    )
    .await;
    assert!(sel["metadata"]["continue"].is_string());
    assert!(sel["metadata"].get("remainingItemCount").is_none());
    let by_field = get(
        &c,
        "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dp2",
        "application/json",
    )
    .await;
    assert_eq!(by_field["items"].as_array().map(Vec::len), Some(1));

    let table = get(&c, "/api/v1/namespaces/default/pods", TABLE).await;
    assert_eq!(table["kind"], "Table");
    assert!(table["columnDefinitions"]
        .as_array()
        .is_some_and(|c| !c.is_empty()));
    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0]["cells"][0], "p0");
    assert_eq!(rows[0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(rows[0]["object"]["metadata"], items[0]["metadata"]);
    let none = get(
        &c,
        "/api/v1/namespaces/default/pods?includeObject=None",
        TABLE,
    )
    .await;
    assert!(none["rows"][0].get("object").is_none());

    // Converted on the way out: an apps/v1 object listed as apps/v1beta2.
    post(&c, "/apis/apps/v1/namespaces/default/deployments", json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}))
    .await;
    let beta = get(
        &c,
        "/apis/apps/v1beta2/namespaces/default/deployments",
        "application/json",
    )
    .await;
    assert_eq!(beta["kind"], "DeploymentList");
    assert_eq!(beta["apiVersion"], "apps/v1beta2");
    assert_eq!(beta["items"][0]["apiVersion"], "apps/v1beta2");
    assert!(beta["items"][0]["metadata"]["resourceVersion"].is_string());
}
