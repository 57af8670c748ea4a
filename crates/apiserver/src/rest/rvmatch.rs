//! `resourceVersion` / `resourceVersionMatch` of a LIST, as kube-apiserver validates and
//! serves them: `Exact` gives the collection as of that revision while the store still
//! has its history (410 `Expired` after compaction), `NotOlderThan` (and a bare
//! resourceVersion) the latest state, which is never older than the one asked for.

use serde_json::{json, Value};
use skiff_store::{KeyValue, Store, StoreError};

use crate::conversion::filtered;
use crate::http::Query;
use crate::request::RequestInfo;
use crate::selectors::Filter;
use crate::state::ApiState;
use crate::status::{ApiError, ApiResult};
use crate::storage::prefix;

/// The objects of a collection at one revision.
pub(crate) struct Snapshot {
    /// The stored objects (values as stored, `mod_revision` their resourceVersion).
    pub kvs: Vec<KeyValue>,
    /// The revision the snapshot is at.
    pub rev: i64,
}

impl Snapshot {
    /// The snapshot's objects in the request's version, filtered, with their keys.
    pub fn objects(
        &self,
        store: &dyn skiff_store::Store,
        t: &RequestInfo,
        filter: &Filter,
    ) -> ApiResult<(Vec<(String, Value)>, i64)> {
        Ok((filtered(store, t, &self.kvs, filter)?, self.rev))
    }
}

/// kube-apiserver's `ValidateListOptions` (422 `ListOptions.meta.k8s.io "" is invalid`).
fn validate(q: &Query) -> ApiResult<()> {
    let Some(m) = q.get("resourceVersionMatch").filter(|m| !m.is_empty()) else {
        return Ok(());
    };
    let rv = q.get("resourceVersion").unwrap_or("");
    let mut errs: Vec<(String, String, String)> = Vec::new();
    let forbidden = |msg: &str| {
        (
            "resourceVersionMatch".to_string(),
            "FieldValueForbidden".to_string(),
            format!("resourceVersionMatch: Forbidden: {msg}"),
        )
    };
    if rv.is_empty() {
        errs.push(forbidden(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    if q.get("continue").is_some_and(|c| !c.is_empty()) {
        errs.push(forbidden(
            "resourceVersionMatch is forbidden when continue is provided",
        ));
    }
    if m != "Exact" && m != "NotOlderThan" {
        errs.push((
            "resourceVersionMatch".into(),
            "FieldValueNotSupported".into(),
            format!(
                "resourceVersionMatch: Unsupported value: \"{m}\": supported values: \"Exact\", \"NotOlderThan\", \"\""
            ),
        ));
    }
    if m == "Exact" && rv == "0" {
        errs.push(forbidden(
            "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("meta.k8s.io", "ListOptions", "", errs))
    }
}

/// 504 for a revision the store has not reached (kube's TooLargeResourceVersion).
fn too_large(asked: i64, current: i64, retry: bool) -> ApiError {
    let mut d = json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]});
    if retry {
        d["retryAfterSeconds"] = json!(1);
    }
    ApiError::new(
        504,
        "Timeout",
        format!("Timeout: Too large resource version: {asked}, current: {current}"),
    )
    .with_details(d)
}

fn expired() -> ApiError {
    ApiError::gone("The resourceVersion for the provided list is too old.")
}

/// Validates the LIST's resourceVersion options; for `Exact` returns the collection at
/// that revision, otherwise `None` (serve the latest state).
pub(crate) async fn snapshot(
    state: &ApiState,
    t: &RequestInfo,
    q: &Query,
) -> ApiResult<Option<Snapshot>> {
    validate(q)?;
    let rv = match q.get("resourceVersion").filter(|s| !s.is_empty()) {
        None => return Ok(None),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|r| *r >= 0)
            .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {s}")))?,
    };
    let is_exact = match q.get("resourceVersionMatch").unwrap_or("") {
        "Exact" => true,
        // Legacy: a paginated list at a resourceVersion reads that revision exactly.
        "" => rv > 0 && q.int("limit").is_some_and(|l| l > 0),
        _ => false,
    };
    // A continue token carries its own revision.
    if !is_exact || q.get("continue").is_some_and(|c| !c.is_empty()) {
        // "0": any state will do (informers' first list); no store round trip.
        if rv == 0 {
            return Ok(None);
        }
        let cur = state.store.current_revision()?;
        if rv > cur {
            return Err(too_large(rv, cur, true));
        }
        return Ok(None);
    }
    let pfx = prefix(t.info, t.namespace.as_deref());
    exact(&*state.store, &pfx, rv).await.map(Some)
}

/// The keys under `pfx` as of revision `rv`.
async fn exact(store: &dyn Store, pfx: &str, rv: i64) -> ApiResult<Snapshot> {
    let (kvs, cur) = store.list(pfx)?;
    if rv == cur {
        return Ok(Snapshot { kvs, rev: cur });
    }
    if rv > cur {
        return Err(too_large(rv, cur, false));
    }
    // The store reads the prefix as it was (etcd at the revision, SQLite by rewinding its
    // history); compacted state is 410 as in kube-apiserver.
    match store.list_at(pfx, rv) {
        Ok(kvs) => Ok(Snapshot { kvs, rev: rv }),
        Err(StoreError::TooOld { .. }) => Err(expired()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        Query::parse(Some(s))
    }

    #[test]
    fn list_options_are_validated_as_kube_does() {
        let e = validate(&q("resourceVersionMatch=Exact")).expect_err("invalid");
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
        );
        let e = validate(&q("resourceVersion=0&resourceVersionMatch=Exact")).expect_err("0");
        assert!(e.message.ends_with(
            "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""
        ));
        let e = validate(&q("resourceVersion=5&resourceVersionMatch=Newest")).expect_err("bad");
        assert!(e.message.contains(
            "resourceVersionMatch: Unsupported value: \"Newest\": supported values: \"Exact\", \"NotOlderThan\", \"\""
        ));
        assert!(validate(&q("resourceVersion=5&resourceVersionMatch=NotOlderThan")).is_ok());
    }

    #[tokio::test]
    async fn exact_lists_come_from_history_until_it_is_compacted() {
        let dir = tempfile::Builder::new()
            .prefix(&format!("skt-{}-rvmatch-", std::process::id()))
            .tempdir()
            .expect("temp dir");
        let store = skiff_store::SqliteStore::open(&dir.path().join("state.db")).expect("store");
        let a1 = store.create("/registry/x/a", b"{\"v\":1}").expect("create");
        let b1 = store.create("/registry/x/b", b"{\"v\":1}").expect("create");
        let a2 = store
            .update("/registry/x/a", b"{\"v\":2}", None)
            .expect("update");
        let at_b1 = exact(&store, "/registry/x/", b1).await.expect("exact");
        let got: Vec<(&str, &[u8], i64)> = at_b1
            .kvs
            .iter()
            .map(|k| (k.key.as_str(), k.value.as_slice(), k.mod_revision))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/registry/x/a", &b"{\"v\":1}"[..], a1),
                ("/registry/x/b", &b"{\"v\":1}"[..], b1)
            ]
        );
        assert_eq!(
            exact(&store, "/registry/x/", a2).await.expect("now").rev,
            a2
        );
        store.compact(b1).expect("compact");
        let e = exact(&store, "/registry/x/", a1)
            .await
            .err()
            .expect("expired");
        assert_eq!(
            (e.code, e.reason, e.message.as_str()),
            (
                410,
                "Expired",
                "The resourceVersion for the provided list is too old."
            )
        );
        let e = exact(&store, "/registry/x/", a2 + 5)
            .await
            .err()
            .expect("future");
        assert_eq!(e.code, 504);
    }

    #[test]
    fn too_large_is_a_timeout_with_its_cause() {
        // (Clients retry 504s, so the e2e tests do not ask for one.)
        let e = too_large(100, 42, true);
        assert_eq!(
            (e.code, e.reason, e.message.as_str()),
            (
                504,
                "Timeout",
                "Timeout: Too large resource version: 100, current: 42"
            )
        );
        assert_eq!(
            e.details.expect("details")["causes"][0]["reason"],
            "ResourceVersionTooLarge"
        );
    }
}
