//! The ClusterRole aggregation controller (kube-controller-manager's
//! `clusterrole-aggregation`): a ClusterRole with an `aggregationRule` gets as its `rules`
//! the rules of the ClusterRoles its `clusterRoleSelectors` select. This is how `admin`,
//! `edit` and `view` grow the permissions of roles labelled
//! `rbac.authorization.k8s.io/aggregate-to-<role>: "true"` (a CRD's, say).
//!
//! As in kube, which roles aggregate which is a graph nobody keeps: any ClusterRole
//! change enqueues every aggregated ClusterRole (there are few), and a role aggregating
//! an aggregated one (`admin` ← `edit` ← `view`) converges as each write is seen.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};

use crate::informer::Informer;
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::{is_not_found, key_of, selector_matches};
use crate::Informers;

/// The field manager of the controller's applies (kube's).
pub const FIELD_MANAGER: &str = "clusterrole-aggregation-controller";

/// Workers, as kube-controller-manager starts the controller with.
const WORKERS: usize = 5;

struct Ctx {
    client: Client,
    clusterroles: Arc<Informer<ClusterRole>>,
}

/// Starts the controller.
pub fn run(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    let roles = inf.clusterroles.clone();
    // Any role may be selected by any aggregated role, or be one: every change enqueues
    // every aggregated role (what kube's `enqueue` does).
    Triggers::new(&queue, &inf.clusterroles).watches(&inf.clusterroles, move |_, _| {
        roles
            .list()
            .iter()
            .filter(|r| r.aggregation_rule.is_some())
            .map(|r| key_of(r.as_ref()))
            .collect()
    });
    let ctx = Arc::new(Ctx {
        client,
        clusterroles: inf.clusterroles.clone(),
    });
    run_workers("clusterrole-aggregation", queue, WORKERS, move |name| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &name).await }
    });
}

/// The rules `role` should have: `None` if it has no `aggregationRule`, else, for each of
/// its selectors in order, the rules of the roles of `all` the selector selects (by name,
/// `role` itself left out), each rule once. Fails on a selector operator labels do not
/// know (kube's `LabelSelectorAsSelector` error; validation keeps such roles out).
pub fn aggregated_rules(
    role: &ClusterRole,
    all: &[Arc<ClusterRole>],
) -> anyhow::Result<Option<Vec<PolicyRule>>> {
    let Some(rule) = &role.aggregation_rule else {
        return Ok(None);
    };
    let me = role.metadata.name.as_deref();
    let no_labels = BTreeMap::new();
    let mut rules: Vec<PolicyRule> = Vec::new();
    for selector in rule.cluster_role_selectors.iter().flatten() {
        check_selector(selector)?;
        let mut picked: Vec<&ClusterRole> = all
            .iter()
            .map(Arc::as_ref)
            .filter(|r| r.metadata.name.as_deref() != me)
            .filter(|r| {
                selector_matches(selector, r.metadata.labels.as_ref().unwrap_or(&no_labels))
            })
            .collect();
        picked.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for r in picked {
            for rule in r.rules.iter().flatten().map(normalized) {
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        }
    }
    Ok(Some(rules))
}

/// Whether two rule lists are the same to kube (`equality.Semantic`: an absent list is an
/// empty one, in the rules and in each rule).
pub fn same_rules(a: &[PolicyRule], b: &[PolicyRule]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| normalized(x) == normalized(y))
}

/// `rule` with its empty lists absent: how kube compares rules, and how it writes them
/// (`omitempty`), so that equal rules are equal values here.
fn normalized(rule: &PolicyRule) -> PolicyRule {
    let some = |v: &Option<Vec<String>>| v.clone().filter(|v| !v.is_empty());
    PolicyRule {
        api_groups: some(&rule.api_groups),
        non_resource_urls: some(&rule.non_resource_urls),
        resource_names: some(&rule.resource_names),
        resources: some(&rule.resources),
        verbs: rule.verbs.clone(),
    }
}

/// Fails on a `matchExpressions` operator label selectors do not have.
fn check_selector(selector: &LabelSelector) -> anyhow::Result<()> {
    for req in selector.match_expressions.iter().flatten() {
        if !matches!(
            req.operator.as_str(),
            "In" | "NotIn" | "Exists" | "DoesNotExist"
        ) {
            anyhow::bail!("{:?} is not a valid label selector operator", req.operator);
        }
    }
    Ok(())
}

async fn sync(ctx: &Ctx, name: &str) -> anyhow::Result<Option<Duration>> {
    ctx.clusterroles.wait_ready().await;
    let Some(role) = ctx.clusterroles.store().get(&ObjectRef::new(name)) else {
        return Ok(None);
    };
    let Some(want) = aggregated_rules(&role, &ctx.clusterroles.list())
        .with_context(|| format!("aggregating clusterrole {name}"))?
    else {
        return Ok(None);
    };
    if same_rules(role.rules.as_deref().unwrap_or_default(), &want) {
        return Ok(None);
    }
    let api: Api<ClusterRole> = Api::all(ctx.client.clone());
    // Server-side apply of the rules alone, forced, as kube does: the controller owns
    // `rules` and nothing else of the role. With no rules, none are named (kube's apply
    // configuration omits an empty list), which drops those it applied before.
    let mut body = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
    });
    if !want.is_empty() {
        body["rules"] = serde_json::to_value(&want)?;
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let result = match api.patch(name, &params, &Patch::Apply(&body)).await {
        // A server without server-side apply: replace the role with new rules instead.
        Err(kube::Error::Api(s)) if s.code == 415 => {
            let mut updated = role.as_ref().clone();
            updated.rules = (!want.is_empty()).then_some(want);
            api.replace(name, &PostParams::default(), &updated)
                .await
                .map(|_| ())
        }
        r => r.map(|_| ()),
    };
    match result {
        Ok(()) => Ok(None),
        // Deleted meanwhile: its delete event enqueues whatever depended on it.
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("writing the rules of clusterrole {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use skiff_testkit::fakeapi::{FakeApi, Reply};

    use crate::testing::{informer, writes_but_events};

    const ROLES: &str = "/apis/rbac.authorization.k8s.io/v1/clusterroles";

    /// A role as JSON: `name`, `labels`, `rules` (JSON), and `selectors` as its
    /// aggregationRule's clusterRoleSelectors when given.
    fn role_json(name: &str, labels: Value, rules: Value, selectors: Option<Value>) -> Value {
        let mut v = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels, "resourceVersion": "5"},
            "rules": rules,
        });
        if let Some(s) = selectors {
            v["aggregationRule"] = json!({"clusterRoleSelectors": s});
        }
        v
    }

    fn role(name: &str, labels: Value, rules: Value, selectors: Option<Value>) -> Arc<ClusterRole> {
        Arc::new(serde_json::from_value(role_json(name, labels, rules, selectors)).expect("role"))
    }

    /// A rule granting `verbs` on `resources` of API group `group`.
    fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> Value {
        json!({"apiGroups": [group], "resources": resources, "verbs": verbs})
    }

    fn rules(v: Value) -> Vec<PolicyRule> {
        serde_json::from_value(v).expect("rules")
    }

    #[test]
    fn a_role_without_aggregation_rule_is_left_alone() {
        let plain = role(
            "plain",
            json!({}),
            json!([rule("", &["pods"], &["get"])]),
            None,
        );
        assert_eq!(
            aggregated_rules(&plain, std::slice::from_ref(&plain)).expect("ok"),
            None
        );
    }

    #[test]
    fn union_by_selector_then_name_each_rule_once_without_itself() {
        let get_pods = rule("", &["pods"], &["get"]);
        let list_widgets = rule("example.com", &["widgets"], &["list"]);
        let watch_gadgets = rule("example.com", &["gadgets"], &["watch"]);
        let agg = role(
            "agg",
            // Labelled as its own selectors select: it is still not its own source.
            json!({"a": "true", "tier": "x"}),
            json!([rule("", &["secrets"], &["*"])]),
            Some(json!([
                {"matchLabels": {"a": "true"}},
                {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["x", "y"]},
                                      {"key": "skip", "operator": "DoesNotExist"}]}
            ])),
        );
        let all = vec![
            agg.clone(),
            role(
                "b",
                json!({"a": "true"}),
                json!([list_widgets.clone(), get_pods.clone()]),
                None,
            ),
            // Sorted before `b` within the first selector; its rule repeats one of `b`'s
            // in kube's semantic sense (an empty resourceNames is none).
            role(
                "a",
                json!({"a": "true"}),
                json!([{"apiGroups": ["example.com"], "resources": ["widgets"], "resourceNames": [], "verbs": ["list"]}]),
                None,
            ),
            role(
                "c",
                json!({"tier": "y"}),
                json!([watch_gadgets.clone(), get_pods.clone()]),
                None,
            ),
            role(
                "d",
                json!({"tier": "y", "skip": "1"}),
                json!([rule("", &["nodes"], &["get"])]),
                None,
            ),
            role(
                "e",
                json!({"tier": "z"}),
                json!([rule("", &["services"], &["get"])]),
                None,
            ),
        ];
        let got = aggregated_rules(&agg, &all)
            .expect("ok")
            .expect("aggregated");
        assert_eq!(got, rules(json!([list_widgets, get_pods, watch_gadgets])));
    }

    #[test]
    fn an_empty_selector_selects_every_other_role_and_none_selects_nothing() {
        let everything = role("all", json!({}), json!([]), Some(json!([{}])));
        let nothing = role("none", json!({}), json!([]), Some(json!([])));
        let all = vec![
            everything.clone(),
            nothing.clone(),
            role("x", json!({}), json!([rule("", &["pods"], &["get"])]), None),
        ];
        assert_eq!(
            aggregated_rules(&everything, &all).expect("ok"),
            Some(rules(json!([rule("", &["pods"], &["get"])])))
        );
        assert_eq!(aggregated_rules(&nothing, &all).expect("ok"), Some(vec![]));
    }

    #[test]
    fn an_unknown_operator_is_an_error() {
        let bad = role(
            "bad",
            json!({}),
            json!([]),
            Some(json!([{"matchExpressions": [{"key": "k", "operator": "Near"}]}])),
        );
        assert!(aggregated_rules(&bad, std::slice::from_ref(&bad)).is_err());
    }

    #[test]
    fn rules_compare_as_kube_compares_them() {
        let a = rules(
            json!([{"apiGroups": [""], "resources": ["pods"], "resourceNames": [], "verbs": ["get"]}]),
        );
        let b = rules(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]));
        assert!(same_rules(&a, &b));
        assert!(!same_rules(
            &a,
            &rules(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]))
        ));
        assert!(!same_rules(&a, &[]));
    }

    /// The default `view` (selecting `aggregate-to-view`) and a CRD's role labelled into it.
    fn view_and_widgets(view_rules: Value) -> Vec<Value> {
        vec![
            role_json(
                "view",
                json!({"kubernetes.io/bootstrapping": "rbac-defaults"}),
                view_rules,
                Some(
                    json!([{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]),
                ),
            ),
            role_json(
                "widgets-view",
                json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"}),
                json!([rule(
                    "widgets.example.com",
                    &["widgets"],
                    &["get", "list", "watch"]
                )]),
                None,
            ),
        ]
    }

    async fn ctx(fake: &FakeApi, roles: Vec<Value>) -> Ctx {
        Ctx {
            client: fake.client(),
            clusterroles: informer(fake, roles).await,
        }
    }

    #[tokio::test]
    async fn sync_applies_the_aggregated_rules_as_kube_does() {
        let fake = FakeApi::new();
        fake.on("PATCH", &format!("{ROLES}/view"), |r| {
            Reply::ok(r.body.clone().unwrap_or_default())
        });
        let ctx = ctx(&fake, view_and_widgets(json!([]))).await;
        fake.clear();

        sync(&ctx, "view").await.expect("sync");

        let writes = writes_but_events(&fake);
        assert_eq!(writes.len(), 1, "{writes:#?}");
        let w = &writes[0];
        assert_eq!(w.line(), format!("PATCH {ROLES}/view"));
        assert_eq!(
            w.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        assert_eq!(w.param("fieldManager"), Some(FIELD_MANAGER));
        assert_eq!(w.param("force"), Some("true"));
        assert_eq!(
            w.body,
            Some(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "view"},
                "rules": [rule("widgets.example.com", &["widgets"], &["get", "list", "watch"])],
            }))
        );
    }

    #[tokio::test]
    async fn sync_writes_nothing_when_the_rules_are_already_there() {
        let fake = FakeApi::new();
        let have = json!([{"apiGroups": ["widgets.example.com"], "resources": ["widgets"],
                           "resourceNames": [], "verbs": ["get", "list", "watch"]}]);
        let ctx = ctx(&fake, view_and_widgets(have)).await;
        fake.clear();

        sync(&ctx, "view").await.expect("sync view");
        sync(&ctx, "widgets-view").await.expect("sync a plain role");
        sync(&ctx, "gone").await.expect("sync a role not cached");

        assert_eq!(writes_but_events(&fake), vec![]);
    }

    #[tokio::test]
    async fn sync_replaces_the_role_when_the_server_cannot_apply() {
        let fake = FakeApi::new();
        fake.reply(
            "PATCH",
            &format!("{ROLES}/view"),
            Reply::status(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format",
            ),
        );
        fake.on("PUT", &format!("{ROLES}/view"), |r| {
            Reply::ok(r.body.clone().unwrap_or_default())
        });
        let ctx = ctx(
            &fake,
            view_and_widgets(json!([rule("", &["pods"], &["get"])])),
        )
        .await;
        fake.clear();

        sync(&ctx, "view").await.expect("sync");

        let writes = writes_but_events(&fake);
        let lines: Vec<String> = writes.iter().map(|r| r.line()).collect();
        assert_eq!(
            lines,
            [format!("PATCH {ROLES}/view"), format!("PUT {ROLES}/view")]
        );
        let put = writes[1].body.as_ref().expect("role");
        assert_eq!(
            put["metadata"]["resourceVersion"], "5",
            "replaces the version it read"
        );
        assert_eq!(
            put["rules"],
            json!([rule(
                "widgets.example.com",
                &["widgets"],
                &["get", "list", "watch"]
            )])
        );
        assert!(
            put.get("aggregationRule").is_some(),
            "the rest of the role is kept"
        );
    }
}
