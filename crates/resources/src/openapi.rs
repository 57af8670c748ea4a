//! OpenAPI v3 documents as kube-apiserver serves them at `/openapi/v3` and
//! `/openapi/v3/<api|apis/group>/<version>`.
//!
//! kubectl reads them for `--validate=strict` (it checks that the PATCH operation of the
//! kind accepts the `fieldValidation` query parameter, then lets the server validate), for
//! computing strategic merge patches in `kubectl apply` (the `x-kubernetes-patch-*`
//! extensions), and for `kubectl explain`. Documents are generated once per process.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};

use crate::discovery::subresource_info;
use crate::registry::{all_resources, resources, ResourceInfo};
use crate::schema::{closure, kind_schema_name, schemas, REF_PREFIX};

struct Documents {
    /// `api/v1`, `apis/apps/v1`... → (document, hash of its JSON, its JSON).
    docs: BTreeMap<String, (Value, String, Vec<u8>)>,
}

static DOCS: OnceLock<Documents> = OnceLock::new();

fn docs() -> &'static Documents {
    DOCS.get_or_init(|| {
        let mut gvs: Vec<(&str, &str)> = Vec::new();
        for r in resources() {
            if !gvs.contains(&(r.group, r.version)) {
                gvs.push((r.group, r.version));
            }
        }
        let mut docs = BTreeMap::new();
        for (g, v) in gvs {
            let doc = build_document(g, v);
            let bytes = serde_json::to_vec(&doc).unwrap_or_default();
            let hash: String = Sha512::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect();
            docs.insert(path_key(g, v), (doc, hash, bytes));
        }
        Documents { docs }
    })
}

/// `api/v1` for core, `apis/<group>/<version>` otherwise (the key in the v3 root).
pub fn path_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=..."}, ...}}`.
pub fn v3_root() -> Value {
    let mut paths = Map::new();
    for (key, (_, hash, _)) in &docs().docs {
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
        );
    }
    let mut gvs: Vec<(&str, &str)> = Vec::new();
    for r in all_resources().filter(|r| r.custom.is_some()) {
        if !gvs.contains(&(r.group, r.version)) {
            gvs.push((r.group, r.version));
        }
    }
    for (g, v) in gvs {
        if let Some(doc) = custom_document(g, v) {
            let bytes = serde_json::to_vec(&doc).unwrap_or_default();
            let hash: String = Sha512::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect();
            let key = path_key(g, v);
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
            );
        }
    }
    json!({ "paths": paths })
}

/// The document of one group-version (`""` group for core), or `None` if not served.
pub fn v3_document(group: &str, version: &str) -> Option<Value> {
    docs()
        .docs
        .get(&path_key(group, version))
        .map(|(d, _, _)| d.clone())
        .or_else(|| custom_document(group, version))
}

/// The schema name kube-apiserver gives a custom kind: the group reversed, the version,
/// the kind (`com.example.v1.Widget`).
fn custom_schema_name(r: &ResourceInfo) -> String {
    let rev: Vec<&str> = r.group.split('.').rev().collect();
    format!("{}.{}.{}", rev.join("."), r.version, r.kind)
}

/// The document of a group-version served by CRDs: each kind's schema from its CRD (with
/// the standard `apiVersion`, `kind` and `metadata`), its list, and the paths kubectl
/// looks at (the PATCH operation accepting `fieldValidation`, for `--validate=strict`).
fn custom_document(group: &str, version: &str) -> Option<Value> {
    let rs: Vec<&'static ResourceInfo> = all_resources()
        .filter(|r| r.group == group && r.version == version && r.custom.is_some())
        .collect();
    if rs.is_empty() {
        return None;
    }
    let meta = "io.k8s.apimachinery.pkg.apis.meta.v1";
    let mut comps = Map::new();
    let mut paths = Map::new();
    for r in rs {
        let Some(c) = r.custom else { continue };
        let name = custom_schema_name(r);
        let mut schema = c.schema.clone();
        if let Some(o) = schema.as_object_mut() {
            let props = o.entry("properties").or_insert_with(|| json!({}));
            if let Some(p) = props.as_object_mut() {
                p.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"}));
                p.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"}));
                p.insert("metadata".into(), json!({"allOf": [schema_ref(&format!("{meta}.ObjectMeta"))], "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}));
            }
            o.insert(
                "x-kubernetes-group-version-kind".into(),
                gvk(r.group, r.version, r.kind),
            );
        }
        comps.insert(name.clone(), schema);
        comps.insert(
            format!("{name}List"),
            json!({"type": "object", "required": ["items"],
                   "description": format!("{} is a list of {}", c.list_kind, r.kind),
                   "properties": {
                       "apiVersion": {"type": "string"},
                       "items": {"type": "array", "items": schema_ref(&name)},
                       "kind": {"type": "string"},
                       "metadata": {"allOf": [schema_ref(&format!("{meta}.ListMeta"))]}},
                   "x-kubernetes-group-version-kind": gvk(r.group, r.version, &c.list_kind)}),
        );
        let coll = if r.namespaced {
            format!(
                "/apis/{group}/{version}/namespaces/{{namespace}}/{}",
                r.plural
            )
        } else {
            format!("/apis/{group}/{version}/{}", r.plural)
        };
        let ctx = OpCtx {
            tag: tag(group, version),
            gvk: gvk(r.group, r.version, r.kind),
            schema: &name,
        };
        let kind = r.kind;
        let gv = format!("{}{}", group_camel(group), capitalize(version));
        let ns_word = if r.namespaced { "Namespaced" } else { "" };
        paths.insert(
            coll.clone(),
            json!({"get": op(&ctx, "list", format!("list{gv}{ns_word}{kind}"),
                              format!("list objects of kind {kind}"), list_params(), None,
                              json!({"200": ok(&format!("{name}List"))})),
                   "post": op(&ctx, "post", format!("create{gv}{ns_word}{kind}"),
                              format!("create {} {kind}", article(kind)),
                              vec![dry_run(), field_manager(), field_validation()], Some(body_of(ctx.schema)),
                              json!({"200": ok(ctx.schema)}))}),
        );
        paths.insert(
            format!("{coll}/{{name}}"),
            json!({"get": op(&ctx, "get", format!("read{gv}{ns_word}{kind}"),
                             format!("read the specified {kind}"), vec![], None, json!({"200": ok(ctx.schema)})),
                   "put": op(&ctx, "put", format!("replace{gv}{ns_word}{kind}"),
                             format!("replace the specified {kind}"),
                             vec![dry_run(), field_manager(), field_validation()], Some(body_of(ctx.schema)),
                             json!({"200": ok(ctx.schema)})),
                   "patch": op(&ctx, "patch", format!("patch{gv}{ns_word}{kind}"),
                               format!("partially update the specified {kind}"),
                               vec![dry_run(), field_manager(), field_validation(),
                                    qparam("force", "boolean", "Force is going to \"force\" Apply requests.")],
                               Some(patch_body()), json!({"200": ok(ctx.schema)}))}),
        );
    }
    let roots: Vec<String> = ["ObjectMeta", "ListMeta", "Status", "Patch", "DeleteOptions"]
        .iter()
        .map(|t| format!("{meta}.{t}"))
        .collect();
    let root_refs: Vec<&str> = roots.iter().map(String::as_str).collect();
    for n in closure(&root_refs) {
        if let Some(s) = schemas().components.get(&n) {
            comps.insert(n, s.clone());
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": comps},
    }))
}

/// The document of one group-version already serialized as JSON (computed once; saves
/// the server from serializing about a megabyte per request).
pub fn v3_document_json(group: &str, version: &str) -> Option<&'static [u8]> {
    docs()
        .docs
        .get(&path_key(group, version))
        .map(|(_, _, b)| b.as_slice())
}

/// The hash of a group-version's document (what `v3_root` puts after `?hash=`); the
/// server may answer requests carrying it with long-lived cache headers.
pub fn v3_document_hash(group: &str, version: &str) -> Option<&'static str> {
    docs()
        .docs
        .get(&path_key(group, version))
        .map(|(_, h, _)| h.as_str())
}

/// `rbac.authorization.k8s.io` → `RbacAuthorization`, `""` → `Core`.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    let base = group.trim_end_matches(".k8s.io").trim_end_matches(".io");
    base.split('.')
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn tag(group: &str, version: &str) -> String {
    let g = group_camel(group);
    let mut c = g.chars();
    let lower = match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    };
    format!("{lower}_{version}")
}

fn qparam(name: &str, ty: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description,
           "schema": {"type": ty, "uniqueItems": true}})
}

fn dry_run() -> Value {
    qparam("dryRun", "string", "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed")
}
fn field_manager() -> Value {
    qparam("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.")
}
fn field_validation() -> Value {
    qparam("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.")
}

fn list_params() -> Vec<Value> {
    vec![
        qparam("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion."),
        qparam("continue", "string", "The continue option should be set when retrieving more results from the server."),
        qparam("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
        qparam("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
        qparam("limit", "integer", "limit is a maximum number of responses to return for a list call."),
        qparam("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
        qparam("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
        qparam("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
        qparam("timeoutSeconds", "integer", "Timeout for the list/watch call."),
        qparam("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        dry_run(),
        qparam("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."),
        qparam("ignoreStoreReadErrorWithClusterBreakingPotential", "boolean", "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error."),
        qparam("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7."),
        qparam("propagationPolicy", "string", "Whether and how garbage collection will be performed."),
    ]
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("{REF_PREFIX}{name}")})
}

fn content(name: &str) -> Value {
    let s = schema_ref(name);
    json!({"application/json": {"schema": s.clone()}, "application/yaml": {"schema": s.clone()},
           "application/vnd.kubernetes.protobuf": {"schema": s}})
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

struct OpCtx<'a> {
    tag: String,
    gvk: Value,
    schema: &'a str,
}

fn op(
    ctx: &OpCtx<'_>,
    action: &str,
    op_id: String,
    description: String,
    params: Vec<Value>,
    body: Option<Value>,
    responses: Value,
) -> Value {
    let mut o = Map::new();
    o.insert("tags".into(), json!([ctx.tag]));
    o.insert("description".into(), json!(description));
    o.insert("operationId".into(), json!(op_id));
    if !params.is_empty() {
        o.insert("parameters".into(), Value::Array(params));
    }
    if let Some(b) = body {
        o.insert("requestBody".into(), b);
    }
    o.insert("responses".into(), responses);
    o.insert("x-kubernetes-action".into(), json!(action));
    o.insert("x-kubernetes-group-version-kind".into(), ctx.gvk.clone());
    Value::Object(o)
}

fn ok(schema: &str) -> Value {
    json!({"description": "OK", "content": content(schema)})
}

fn body_of(schema: &str) -> Value {
    json!({"content": {"*/*": {"schema": schema_ref(schema)}}, "required": true})
}

fn patch_body() -> Value {
    let p = schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.Patch");
    json!({"content": {
        "application/apply-patch+yaml": {"schema": p.clone()},
        "application/json-patch+json": {"schema": p.clone()},
        "application/merge-patch+json": {"schema": p.clone()},
        "application/strategic-merge-patch+json": {"schema": p},
    }, "required": true})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "description": description, "required": true,
           "schema": {"type": "string", "uniqueItems": true}})
}

fn pretty() -> Value {
    qparam("pretty", "string", "If 'true', then the output is pretty printed. Defaults to 'false' unless the user agent is a browser or the command-line tool kubectl.")
}

/// Paths and operations of one resource (collection, item, subresources).
fn resource_paths(r: &ResourceInfo, paths: &mut Map<String, Value>, roots: &mut Vec<String>) {
    let Some(schema) = kind_schema_name(r.group, r.version, r.kind) else {
        return;
    };
    roots.push(schema.to_string());
    let list_schema = format!("{schema}List");
    let has_list = schemas().components.contains_key(&list_schema);
    if has_list {
        roots.push(list_schema.clone());
    }
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let gv = format!("{}{}", group_camel(r.group), capitalize(r.version));
    let ns_word = if r.namespaced { "Namespaced" } else { "" };
    let coll = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    };
    let ctx = OpCtx {
        tag: tag(r.group, r.version),
        gvk: gvk(r.group, r.version, r.kind),
        schema,
    };
    let kind = r.kind;
    let mut common = vec![];
    if r.namespaced {
        common.push(path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        ));
    }
    common.push(pretty());

    // Collection.
    let mut c = Map::new();
    c.insert("parameters".into(), Value::Array(common.clone()));
    if r.has_verb("list") && has_list {
        c.insert(
            "get".into(),
            op(
                &ctx,
                "list",
                format!("list{gv}{ns_word}{kind}"),
                format!("list or watch objects of kind {kind}"),
                list_params(),
                None,
                json!({"200": ok(&list_schema), "401": {"description": "Unauthorized"}}),
            ),
        );
    }
    if r.has_verb("create") {
        c.insert(
            "post".into(),
            op(&ctx, "post", format!("create{gv}{ns_word}{kind}"), format!("create {article} {kind}", article = article(kind)),
               vec![dry_run(), field_manager(), field_validation()], Some(body_of(ctx.schema)),
               json!({"200": ok(ctx.schema), "201": {"description": "Created", "content": content(ctx.schema)},
                      "202": {"description": "Accepted", "content": content(ctx.schema)},
                      "401": {"description": "Unauthorized"}})),
        );
    }
    if r.has_verb("deletecollection") {
        let mut params = delete_params();
        params.extend(list_params());
        c.insert(
            "delete".into(),
            op(&ctx, "deletecollection", format!("deleteCollection{gv}{ns_word}{kind}"),
               format!("delete collection of {kind}"), params,
               Some(body_of("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")),
               json!({"200": ok("io.k8s.apimachinery.pkg.apis.meta.v1.Status"), "401": {"description": "Unauthorized"}})),
        );
    }
    paths.insert(coll.clone(), Value::Object(c));

    if r.namespaced && r.has_verb("list") && has_list {
        let mut all = Map::new();
        all.insert("parameters".into(), json!([pretty()]));
        all.insert(
            "get".into(),
            op(
                &ctx,
                "list",
                format!("list{gv}{kind}ForAllNamespaces"),
                format!("list or watch objects of kind {kind}"),
                list_params(),
                None,
                json!({"200": ok(&list_schema), "401": {"description": "Unauthorized"}}),
            ),
        );
        paths.insert(format!("{base}/{}", r.plural), Value::Object(all));
    }

    // Item.
    if r.has_verb("get") {
        let mut item_params = vec![path_param("name", &format!("name of the {kind}"))];
        item_params.extend(common.iter().cloned());
        let mut i = Map::new();
        i.insert("parameters".into(), Value::Array(item_params.clone()));
        i.insert(
            "get".into(),
            op(
                &ctx,
                "get",
                format!("read{gv}{ns_word}{kind}"),
                format!("read the specified {kind}"),
                vec![],
                None,
                json!({"200": ok(ctx.schema), "401": {"description": "Unauthorized"}}),
            ),
        );
        if r.has_verb("update") {
            i.insert("put".into(), op(&ctx, "put", format!("replace{gv}{ns_word}{kind}"),
                format!("replace the specified {kind}"), vec![dry_run(), field_manager(), field_validation()],
                Some(body_of(ctx.schema)),
                json!({"200": ok(ctx.schema), "201": {"description": "Created", "content": content(ctx.schema)},
                       "401": {"description": "Unauthorized"}})));
        }
        if r.has_verb("delete") {
            i.insert("delete".into(), op(&ctx, "delete", format!("delete{gv}{ns_word}{kind}"),
                format!("delete {article} {kind}", article = article(kind)), delete_params(),
                Some(body_of("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")),
                json!({"200": ok(ctx.schema), "202": {"description": "Accepted", "content": content(ctx.schema)},
                       "401": {"description": "Unauthorized"}})));
        }
        if r.has_verb("patch") {
            i.insert("patch".into(), op(&ctx, "patch", format!("patch{gv}{ns_word}{kind}"),
                format!("partially update the specified {kind}"),
                vec![dry_run(), field_manager(), field_validation(),
                     qparam("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.")],
                Some(patch_body()),
                json!({"200": ok(ctx.schema), "201": {"description": "Created", "content": content(ctx.schema)},
                       "401": {"description": "Unauthorized"}})));
        }
        let item = format!("{coll}/{{name}}");
        paths.insert(item.clone(), Value::Object(i));

        for sub in r.subresources {
            let info = subresource_info(r, sub);
            let (g, v) = if info.group.is_empty() {
                (r.group, r.version)
            } else {
                (info.group, info.version)
            };
            let Some(sub_schema) = kind_schema_name(g, v, info.kind) else {
                continue;
            };
            roots.push(sub_schema.to_string());
            let sctx = OpCtx {
                tag: ctx.tag.clone(),
                gvk: gvk(g, v, info.kind),
                schema: sub_schema,
            };
            let suffix = capitalize(sub);
            let mut s = Map::new();
            s.insert("parameters".into(), Value::Array(item_params.clone()));
            let verbs = info.verbs;
            if *sub == "log" {
                s.insert("get".into(), op(&sctx, "get", format!("read{gv}{ns_word}{kind}Log"),
                    format!("read log of the specified {kind}"), vec![], None,
                    json!({"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
                           "401": {"description": "Unauthorized"}})));
            } else {
                if verbs.contains(&"get") {
                    s.insert(
                        "get".into(),
                        op(
                            &sctx,
                            "get",
                            format!("read{gv}{ns_word}{kind}{suffix}"),
                            format!("read {sub} of the specified {kind}"),
                            vec![],
                            None,
                            json!({"200": ok(sub_schema), "401": {"description": "Unauthorized"}}),
                        ),
                    );
                }
                if verbs.contains(&"update") {
                    s.insert("put".into(), op(&sctx, "put", format!("replace{gv}{ns_word}{kind}{suffix}"),
                        format!("replace {sub} of the specified {kind}"),
                        vec![dry_run(), field_manager(), field_validation()], Some(body_of(sub_schema)),
                        json!({"200": ok(sub_schema), "201": {"description": "Created", "content": content(sub_schema)},
                               "401": {"description": "Unauthorized"}})));
                }
                if verbs.contains(&"patch") {
                    s.insert("patch".into(), op(&sctx, "patch", format!("patch{gv}{ns_word}{kind}{suffix}"),
                        format!("partially update {sub} of the specified {kind}"),
                        vec![dry_run(), field_manager(), field_validation(),
                             qparam("force", "boolean", "Force is going to \"force\" Apply requests.")],
                        Some(patch_body()),
                        json!({"200": ok(sub_schema), "201": {"description": "Created", "content": content(sub_schema)},
                               "401": {"description": "Unauthorized"}})));
                }
                if verbs == ["create"] {
                    s.insert("post".into(), op(&sctx, "post", format!("create{gv}{ns_word}{kind}{suffix}"),
                        format!("create {sub} of {article} {kind}", article = article(kind)),
                        vec![dry_run(), field_manager(), field_validation()], Some(body_of(sub_schema)),
                        json!({"200": ok(sub_schema), "201": {"description": "Created", "content": content(sub_schema)},
                               "202": {"description": "Accepted", "content": content(sub_schema)},
                               "401": {"description": "Unauthorized"}})));
                }
            }
            if s.len() > 1 {
                paths.insert(format!("{item}/{sub}"), Value::Object(s));
            }
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn article(kind: &str) -> &'static str {
    match kind.chars().next() {
        Some('A' | 'E' | 'I' | 'O' | 'U') => "an",
        _ => "a",
    }
}

fn build_document(group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    let mut roots: Vec<String> = vec![
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList".into(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions".into(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status".into(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent".into(),
    ];
    let base = if group.is_empty() {
        format!("/api/{version}/")
    } else {
        format!("/apis/{group}/{version}/")
    };
    let ctx_tag = tag(group, version);
    paths.insert(
        base,
        json!({"get": {"tags": [ctx_tag], "description": "get available resources",
                       "operationId": format!("get{}{}APIResources", group_camel(group), capitalize(version)),
                       "responses": {"200": ok("io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList"),
                                     "401": {"description": "Unauthorized"}}}}),
    );
    for r in resources()
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resource_paths(r, &mut paths, &mut roots);
    }
    let root_refs: Vec<&str> = roots.iter().map(String::as_str).collect();
    let mut comps = Map::new();
    for name in closure(&root_refs) {
        if let Some(s) = schemas().components.get(&name) {
            comps.insert(name, s.clone());
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": skiff_api::defaults::KUBERNETES_VERSION},
        "paths": paths,
        "components": {
            "schemas": comps,
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
        },
        "security": [{"BearerToken": []}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_lists_every_group_version_with_a_hash() {
        let root = v3_root();
        let url = root["paths"]["apis/apps/v1beta1"]["serverRelativeURL"]
            .as_str()
            .expect("apps/v1beta1");
        assert!(url.starts_with("/openapi/v3/apis/apps/v1beta1?hash="));
        assert!(root["paths"]["api/v1"].is_object());
    }

    /// kubectl's `--validate=strict` check: some PATCH operation carries the kind's GVK
    /// and accepts `fieldValidation` in the query.
    fn supports_field_validation(doc: &Value, group: &str, version: &str, kind: &str) -> bool {
        doc["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .any(|(_, p)| {
                let op = &p["patch"];
                op["x-kubernetes-group-version-kind"] == gvk(group, version, kind)
                    && op["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|q| q["name"] == "fieldValidation" && q["in"] == "query")
            })
    }

    #[test]
    fn every_patchable_kind_supports_field_validation() {
        for r in resources().iter().filter(|r| r.has_verb("patch")) {
            let doc = v3_document(r.group, r.version).expect("document");
            assert!(
                supports_field_validation(&doc, r.group, r.version, r.kind),
                "{}/{} {}",
                r.group,
                r.version,
                r.kind
            );
        }
    }

    #[test]
    fn documents_carry_their_kinds_schemas_and_resolve_refs() {
        let doc = v3_document("apps", "v1beta1").expect("apps/v1beta1");
        assert_eq!(doc["openapi"], "3.0.0");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let dep = &schemas["io.k8s.api.apps.v1beta1.Deployment"];
        assert_eq!(
            dep["x-kubernetes-group-version-kind"][0],
            json!({"group": "apps", "kind": "Deployment", "version": "v1beta1"})
        );
        let text = serde_json::to_string(&doc).expect("serialize");
        let mut refs = Vec::new();
        crate::schema::tests_support::refs(&doc, &mut refs);
        for r in refs {
            assert!(schemas.contains_key(&r), "dangling {r}");
        }
        assert!(text.contains("\"/apis/apps/v1beta1/namespaces/{namespace}/deployments/{name}\""));
        let core = v3_document("", "v1").expect("core");
        assert!(
            core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"].is_object()
        );
        assert!(v3_document("nope", "v1").is_none());
    }

    #[test]
    fn v1beta2_document_has_the_v1_shape_under_its_own_gvk() {
        let doc = v3_document("apps", "v1beta2").expect("apps/v1beta2");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let dep = &schemas["io.k8s.api.apps.v1beta2.Deployment"];
        assert_eq!(
            dep["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1beta2"}])
        );
        assert!(dep["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("DEPRECATED")));
        let spec = &schemas["io.k8s.api.apps.v1beta2.DeploymentSpec"];
        assert!(spec["required"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("selector"))));
        assert!(spec["properties"].get("rollbackTo").is_none());
        let mut refs = Vec::new();
        crate::schema::tests_support::refs(&doc, &mut refs);
        for r in refs {
            assert!(schemas.contains_key(&r), "dangling {r}");
        }
        assert!(
            doc["paths"]["/apis/apps/v1beta2/namespaces/{namespace}/deployments/{name}/scale"]
                .is_object()
        );
        assert!(v3_root()["paths"]["apis/apps/v1beta2"].is_object());
    }

    #[test]
    fn serialized_documents_match() {
        let bytes = v3_document_json("", "v1").expect("core");
        let parsed: Value = serde_json::from_slice(bytes).expect("json");
        assert_eq!(Some(parsed), v3_document("", "v1"));
        let d = v3_document("apps", "v1beta1").expect("beta");
        let strategy = &d["components"]["schemas"]["io.k8s.api.apps.v1beta1.DeploymentSpec"]
            ["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    }

    #[test]
    fn operation_ids_follow_kubernetes() {
        assert_eq!(
            group_camel("rbac.authorization.k8s.io"),
            "RbacAuthorization"
        );
        assert_eq!(
            tag("rbac.authorization.k8s.io", "v1"),
            "rbacAuthorization_v1"
        );
        assert_eq!(tag("", "v1"), "core_v1");
        let doc = v3_document("apps", "v1").expect("apps/v1");
        assert_eq!(
            doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["get"]["operationId"],
            "listAppsV1NamespacedDeployment"
        );
    }
}
