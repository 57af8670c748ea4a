//! GET and LIST of `metrics.k8s.io/v1beta1` NodeMetrics and PodMetrics, computed at
//! each request from the agents' statistics (`nodemetrics`), as metrics-server serves
//! them: the Nodes or Pods the request names (namespace, label and field selectors
//! applied to them, as metrics-server applies them to its informers' objects), each
//! node's summary fetched once (cached briefly), objects without metrics left out; a
//! GET of one without metrics is NotFound.

use std::collections::BTreeMap;

use chrono::{SecondsFormat, Utc};
use futures::future::join_all;
use http::HeaderMap;
use serde_json::{json, Value};

use crate::http::{include_object, representation, Query, Representation};
use crate::nodemetrics;
use crate::request::RequestInfo;
use crate::selectors::Filter;
use crate::state::ApiState;
use crate::status::{ApiError, ApiResult};
use crate::storage::{decode, key, prefix};

/// The summaries of `nodes`, each from the cache or fetched (concurrently); a node that
/// does not answer is left out, as metrics-server skips a failed scrape.
async fn summaries(state: &ApiState, nodes: Vec<String>) -> BTreeMap<String, Value> {
    let fetches = nodes.into_iter().map(|n| async move {
        if let Some(s) = state.node_stats.get(&n) {
            return Some((n, s));
        }
        match crate::nodeproxy::stats_summary(state, &n).await {
            Ok(s) => {
                state.node_stats.put(&n, s.clone());
                Some((n, s))
            }
            Err(e) => {
                tracing::debug!(node = %n, error = %e.message, "scraping a node's statistics");
                None
            }
        }
    });
    join_all(fetches).await.into_iter().flatten().collect()
}

/// The stored objects of `core/v1` `plural` the request selects.
fn stored(state: &ApiState, t: &RequestInfo, q: &Query, plural: &str) -> ApiResult<Vec<Value>> {
    let info = skiff_resources::lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))?;
    if let Some(name) = &t.name {
        let kv = state
            .store
            .get(&key(info, t.namespace.as_deref(), name))?
            .ok_or_else(|| ApiError::not_found(t.info.group, t.info.plural, name))?;
        return Ok(vec![decode(&kv)?]);
    }
    let filter = Filter::from_query(q, info)?;
    let (kvs, _) = state.store.list(&prefix(info, t.namespace.as_deref()))?;
    let mut out = Vec::with_capacity(kvs.len());
    for kv in &kvs {
        let obj = decode(kv)?;
        if filter.matches(&obj) {
            out.push(obj);
        }
    }
    Ok(out)
}

/// GET of one NodeMetrics/PodMetrics or of the list, in the representation `Accept`
/// asks for.
pub(crate) async fn serve(
    state: &ApiState,
    t: &RequestInfo,
    q: &Query,
    headers: &HeaderMap,
) -> ApiResult<Value> {
    let now = Utc::now();
    let stamp = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let pods = t.info.kind == "PodMetrics";
    let objs = stored(state, t, q, if pods { "pods" } else { "nodes" })?;
    let node_of = |o: &Value| -> Option<String> {
        if pods {
            o.pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .map(str::to_string)
        } else {
            o.pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_string)
        }
    };
    let mut nodes: Vec<String> = objs.iter().filter_map(node_of).collect();
    nodes.sort();
    nodes.dedup();
    let summaries = summaries(state, nodes).await;
    let items: Vec<Value> = objs
        .iter()
        .filter_map(|o| {
            let summary = summaries.get(&node_of(o)?)?;
            if pods {
                nodemetrics::pod_metrics(o, summary, &stamp)
            } else {
                nodemetrics::node_metrics(o, summary, &stamp)
            }
        })
        .collect();
    if let Some(name) = &t.name {
        let one = items
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found(t.info.group, t.info.plural, name))?;
        return Ok(match representation(headers) {
            Representation::Table => {
                let mut table = skiff_resources::table(t.info, &[one], include_object(q), now);
                table["metadata"] = json!({});
                table
            }
            Representation::PartialMetadata => crate::http::partial_metadata(&one),
            Representation::Object => one,
        });
    }
    Ok(match representation(headers) {
        Representation::Table => {
            let mut table = skiff_resources::table(t.info, &items, include_object(q), now);
            table["metadata"] = json!({});
            table
        }
        Representation::PartialMetadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": format!("meta.k8s.io/{}", crate::http::meta_version(headers)),
            "metadata": {},
            "items": items.iter().map(crate::http::partial_metadata).collect::<Vec<_>>(),
        }),
        Representation::Object => json!({
            "kind": format!("{}List", t.info.kind),
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {},
            "items": items,
        }),
    })
}
