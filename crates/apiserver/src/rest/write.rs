//! The write path: create, update (PUT and the end of PATCH), delete — with defaults,
//! admission, validation, generation, graceful and finalizer-held deletion.

use rand::Rng;
use serde_json::{json, Value};
use skiff_resources::ResourceInfo;
use skiff_store::{Store, StoreError};

use crate::admission::{self, Operation};
use crate::authn::Identity;
use crate::conversion::{to_storage, to_version};
use crate::http::Query;
use crate::request::RequestInfo;
use crate::state::ApiState;
use crate::status::{ApiError, ApiResult};
use crate::storage::{decode, encode, key, meta_mut, meta_str, now_ts, storage_info};
use crate::strategy::{self, Strategy};

/// `fieldValidation` of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

/// Options of a write from the query string.
#[derive(Debug, Clone)]
pub(crate) struct WriteOpts {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    /// The field manager recorded in `metadata.managedFields`: `?fieldManager=`, else
    /// the User-Agent's prefix before `/` (as kube-apiserver derives it).
    pub manager: String,
    /// Whether `?fieldManager=` was given (server-side apply requires it).
    pub manager_given: bool,
    /// The subresource written (`status`, `scale`...), recorded with the manager.
    pub subresource: Option<String>,
    /// `?force=`: `None` when absent.
    pub force: Option<bool>,
    /// The caller already wrote `metadata.managedFields` (server-side apply).
    pub managed_fields_done: bool,
    /// Who writes (`None` for the server's own writes): admission plugins that judge
    /// the writer (NodeRestriction, RBAC's escalation check) ask.
    pub user: Option<Identity>,
}

impl WriteOpts {
    pub fn from_query(q: &Query) -> ApiResult<Self> {
        let field_validation = match q.get("fieldValidation") {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation must be one of Ignore, Warn, or Strict, got {other}"
                )))
            }
        };
        let dry_run = match q.get("dryRun") {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Invalid dryRun value: {other}; valid values are: All"
                )))
            }
        };
        let manager = q.get("fieldManager").unwrap_or("").to_string();
        if manager.chars().count() > 128 {
            return Err(field_manager_invalid(
                "fieldManager: Too long: may not be more than 128 bytes",
            ));
        }
        if manager.chars().any(|c| c.is_control()) {
            return Err(field_manager_invalid(&format!(
                "fieldManager: Invalid value: {manager:?}: must only contain printable characters"
            )));
        }
        let force = match q.get("force") {
            None => None,
            Some("true") | Some("1") => Some(true),
            Some("false") | Some("0") | Some("") => Some(false),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid boolean value for force: {other}"
                )))
            }
        };
        Ok(WriteOpts {
            dry_run,
            field_validation,
            manager_given: !manager.is_empty(),
            manager,
            subresource: None,
            force,
            managed_fields_done: false,
            user: None,
        })
    }

    /// The options of one request: the query plus the User-Agent (the manager's
    /// fallback) and the subresource written.
    pub fn from_request(
        q: &Query,
        headers: &http::HeaderMap,
        sub: Option<&str>,
    ) -> ApiResult<Self> {
        let mut o = Self::from_query(q)?;
        if o.manager.is_empty() {
            let ua = headers
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            // Printable characters only, at most 128 bytes (kube's prefixFromUserAgent).
            let mut m = String::new();
            for c in ua.split('/').next().unwrap_or("").chars() {
                if c.is_control() {
                    continue;
                }
                if m.len() + c.len_utf8() > 128 {
                    break;
                }
                m.push(c);
            }
            o.manager = m;
        }
        o.subresource = sub.map(str::to_string);
        Ok(o)
    }

    /// Everything default (used by the server's own writes).
    pub fn internal() -> Self {
        WriteOpts {
            dry_run: false,
            field_validation: FieldValidation::Ignore,
            manager: "kube-apiserver".into(),
            manager_given: true,
            subresource: None,
            force: None,
            managed_fields_done: false,
            user: None,
        }
    }

    /// Records this write's `Update` in `obj`'s `metadata.managedFields` (`live`:
    /// the stored object, None for a create). `sinfo` is the storage version's
    /// resource (whose schema names the fields), `info` the request's.
    fn record_update(
        &self,
        sinfo: &ResourceInfo,
        info: &ResourceInfo,
        live: Option<&Value>,
        obj: &mut Value,
    ) {
        if self.managed_fields_done {
            return;
        }
        let api_version = info.api_version();
        let time = now_ts();
        let sub = self
            .subresource
            .as_deref()
            .filter(|s| !matches!(*s, "binding" | "eviction" | "token"));
        skiff_resources::managedfields::record_update(
            sinfo,
            live,
            obj,
            &skiff_resources::managedfields::Operation {
                manager: &self.manager,
                api_version: &api_version,
                subresource: sub,
                time: &time,
            },
        );
    }
}

/// 422 for invalid `PatchOptions`/`CreateOptions` field manager values.
pub(crate) fn field_manager_invalid(detail: &str) -> ApiError {
    let (field, rest) = detail.split_once(": ").unwrap_or(("fieldManager", detail));
    let reason = if rest.starts_with("Too long") {
        "FieldValueTooLong"
    } else if rest.starts_with("Required") {
        "FieldValueRequired"
    } else if rest.starts_with("Forbidden") {
        "FieldValueForbidden"
    } else {
        "FieldValueInvalid"
    };
    ApiError::invalid(
        "meta.k8s.io",
        "PatchOptions",
        "",
        vec![(field.to_string(), reason.to_string(), detail.to_string())],
    )
}

/// Which part of the object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpdateMode {
    /// The main resource: everything but status (for kinds with a status subresource).
    Main,
    /// The `status` subresource: only status.
    Status,
    /// The namespace `finalize` subresource: only `spec.finalizers`.
    Finalize,
    /// The pod `ephemeralcontainers` subresource: only `spec.ephemeralContainers`.
    EphemeralContainers,
    /// The CertificateSigningRequest `approval` subresource: only `status.conditions`.
    Approval,
}

impl UpdateMode {
    pub fn from_sub(sub: Option<&str>) -> Self {
        match sub {
            Some("status") => UpdateMode::Status,
            Some("finalize") => UpdateMode::Finalize,
            Some("ephemeralcontainers") => UpdateMode::EphemeralContainers,
            Some("approval") => UpdateMode::Approval,
            _ => UpdateMode::Main,
        }
    }
}

/// Decodes a create or update body into its kind, as kube-apiserver's decoder does
/// before anything else: a wrongly typed field is a 400 with Go's message; undeclared
/// fields are dropped, and per `fieldValidation` refused (Strict) or reported (Warn).
pub(crate) fn decode_request(
    info: &ResourceInfo,
    obj: Value,
    opts: &WriteOpts,
) -> ApiResult<(Value, Vec<String>)> {
    let cannot = |why: &str| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {why}",
            kind = info.kind,
            version = info.version,
        ))
    };
    let d = skiff_resources::decode::decode(info, obj).map_err(|e| cannot(&e.0))?;
    let warnings = unknown_field_warnings(&d.unknown, opts).map_err(|e| cannot(&e))?;
    Ok((d.object, warnings))
}

/// Decodes the result of a patch into its kind: kube-apiserver's patcher reports a
/// patched object that does not decode as an invalid `patch` (422).
pub(crate) fn decode_patched(
    info: &ResourceInfo,
    obj: Value,
    opts: &WriteOpts,
) -> ApiResult<(Value, Vec<String>)> {
    let d = match skiff_resources::decode::decode(info, obj.clone()) {
        Ok(d) => d,
        Err(e) => {
            return Err(ApiError::invalid(
                "",
                "",
                "",
                vec![(
                    "patch".into(),
                    "FieldValueInvalid".into(),
                    format!("patch: Invalid value: {:?}: {}", obj.to_string(), e.0),
                )],
            ))
        }
    };
    let warnings = unknown_field_warnings(&d.unknown, opts).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}",
            kind = info.kind,
            version = info.version,
        ))
    })?;
    Ok((d.object, warnings))
}

/// Decodes a subresource body (`Scale`, `Binding`, `Eviction`, `TokenRequest`) into its
/// kind; undeclared fields are dropped.
pub(crate) fn decode_sub(group: &str, version: &str, kind: &str, obj: Value) -> ApiResult<Value> {
    skiff_resources::decode::decode_kind(group, version, kind, obj)
        .map(|d| d.object)
        .map_err(|e| {
            ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: {}",
                e.0
            ))
        })
}

/// The unknown fields of a body per `fieldValidation`: the strict decoding error for
/// Strict, one warning each for Warn, nothing for Ignore.
fn unknown_field_warnings(unknown: &[String], opts: &WriteOpts) -> Result<Vec<String>, String> {
    if opts.field_validation == FieldValidation::Ignore || unknown.is_empty() {
        return Ok(Vec::new());
    }
    let msgs: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{}\"", f.trim_start_matches('.')))
        .collect();
    match opts.field_validation {
        FieldValidation::Strict => Err(format!("strict decoding error: {}", msgs.join(", "))),
        _ => Ok(msgs),
    }
}

/// The last guard before storage: the object must deserialize with its `k8s-openapi`
/// type, or no typed client could read it back (422 naming serde's complaint).
fn check_typed(sinfo: &ResourceInfo, name: &str, obj: &Value) -> ApiResult<()> {
    skiff_resources::decode::check_typed(sinfo.group, sinfo.version, sinfo.kind, obj).map_err(|e| {
        ApiError::invalid(
            sinfo.group,
            sinfo.kind,
            name,
            vec![(String::new(), "FieldValueInvalid".into(), e)],
        )
    })
}

/// Name suffix alphabet of generateName (kube's utilrand: no vowels, no confusable digits).
const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generated_name(base: &str) -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| NAME_CHARS[rng.random_range(0..NAME_CHARS.len())] as char)
        .collect();
    // Names are at most 63 characters where they become labels or DNS names.
    let base: String = base.chars().take(58).collect();
    format!("{base}{suffix}")
}

/// Fields that count as the object's "spec" for `metadata.generation`: everything but
/// metadata and status.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

/// Creates an object; returns it in storage version and any warnings.
pub(crate) async fn create_object(
    state: &ApiState,
    info: &'static ResourceInfo,
    ns: Option<&str>,
    obj: Value,
    opts: &WriteOpts,
) -> ApiResult<(Value, Vec<String>)> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be an object",
        ));
    }
    if info.custom.is_some_and(|c| c.terminating) {
        // kube-apiserver's answer while a deleted CRD's objects are being removed.
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "create not allowed while custom resource definition is terminating",
        ));
    }
    let (mut obj, mut warnings) = decode_request(info, obj, opts)?;
    obj["apiVersion"] = json!(info.api_version());
    obj["kind"] = json!(info.kind);
    let mut obj = to_storage(state.store.as_ref(), info, obj)?;
    // Defaults, admission and validation see the object as stored.
    let sinfo = storage_info(info);
    let strategy = strategy::for_resource(sinfo);
    let meta = meta_mut(&mut obj);
    if info.namespaced {
        let ns =
            ns.ok_or_else(|| ApiError::bad_request("the namespace of the object is required"))?;
        match meta.get("namespace").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            _ => {
                meta.insert("namespace".into(), json!(ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let name_given = meta
        .get("name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let name = match name_given {
        Some(n) => n,
        None => match meta.get("generateName").and_then(Value::as_str) {
            Some(g) if !g.is_empty() => generated_name(g),
            _ => String::new(),
        },
    };
    meta.insert("name".into(), json!(name));
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now_ts()));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("selfLink");
    if strategy.has_generation() {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    // Status is not the client's to set on create (kube-apiserver's strategies reset it),
    // unless the strategy keeps it.
    if info.has_subresource("status") && !strategy.keeps_status_on_create() {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    // Fields the registry sets after the field manager has run in kube-apiserver: owned
    // only when the client set them.
    let allocated_by_registry: Vec<&str> = strategy
        .registry_set_fields()
        .iter()
        .copied()
        .filter(|f| obj.pointer(&format!("/spec/{f}")).is_none())
        .collect();
    skiff_resources::default_object(sinfo, &mut obj);
    if allocated_by_registry.is_empty() {
        opts.record_update(sinfo, info, None, &mut obj);
    } else {
        let mut seen = obj.clone();
        if let Some(spec) = seen.get_mut("spec").and_then(Value::as_object_mut) {
            for f in &allocated_by_registry {
                spec.remove(*f);
            }
        }
        opts.record_update(sinfo, info, None, &mut seen);
        if let Some(mf) = seen.pointer("/metadata/managedFields") {
            meta_mut(&mut obj).insert("managedFields".into(), mf.clone());
        }
    }
    let _guards = state.admission.lock(sinfo).await;
    let attrs = admission::Attributes {
        info: sinfo,
        requested: info,
        operation: Operation::Create,
        namespace: ns.filter(|_| info.namespaced),
        name: &name,
        subresource: opts.subresource.as_deref(),
        user: opts.user.as_ref(),
    };
    let unadmitted = obj.clone();
    // Admission's warnings of the last attempt (a retry admits again).
    let mut admission_warnings;
    for attempt in 1.. {
        strategy.prepare_for_create(&mut obj);
        state.admission.admit(&attrs, &mut obj, None)?;
        admission_warnings = state
            .webhooks
            .admit(&attrs, &mut obj, None, opts.dry_run)
            .await?;
        let errs = strategy.validate(sinfo, &obj, None);
        if !errs.is_empty() {
            return Err(strategy::invalid(info, &name, errs));
        }
        admission_warnings.append(&mut state.admission.validate(&attrs, &obj, None)?);
        admission_warnings.append(
            &mut state
                .webhooks
                .validate(&attrs, Some(&obj), None, opts.dry_run)
                .await?,
        );
        check_typed(sinfo, &name, &obj)?;
        if opts.dry_run {
            warnings.append(&mut admission_warnings);
            return Ok((obj, warnings));
        }
        match state.admission.reserve(sinfo, &obj, None) {
            Ok(()) => {
                warnings.append(&mut admission_warnings);
                break;
            }
            // Another server reserved a value this one allocated, between the two:
            // allocate again (admission now sees that reservation). A value the client
            // asked for fails in admission with the same "already allocated".
            Err(_) if attempt < 3 => obj = unadmitted.clone(),
            Err(e) => return Err(e),
        }
    }
    let k = key(info, ns, &name);
    match state.store.create(&k, &encode(&obj)) {
        Ok(rev) => {
            meta_mut(&mut obj).insert("resourceVersion".into(), json!(rev.to_string()));
            Ok((obj, warnings))
        }
        Err(StoreError::AlreadyExists(_)) => {
            Err(ApiError::already_exists(info.group, info.plural, &name))
        }
        Err(e) => Err(e.into()),
    }
}

/// PUT: replaces an object (optimistic concurrency on `metadata.resourceVersion`).
pub(crate) async fn put(
    state: &ApiState,
    t: &RequestInfo,
    name: &str,
    obj: Value,
    mode: UpdateMode,
    opts: &WriteOpts,
) -> ApiResult<(Value, Vec<String>)> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be an object",
        ));
    }
    if let Some(n) = meta_str(&obj, "name") {
        if n != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
    }
    let precondition = match meta_str(&obj, "resourceVersion").filter(|s| !s.is_empty()) {
        Some(rv) => Some(
            rv.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?,
        ),
        None => None,
    };
    let (obj, mut warnings) = decode_request(t.info, obj, opts)?;
    let (out, mut admission_warnings) = update_object_with_warnings(
        state,
        t.info,
        t.namespace.as_deref(),
        name,
        obj,
        mode,
        precondition,
        opts,
    )
    .await?;
    warnings.append(&mut admission_warnings);
    Ok((out, warnings))
}

/// Replaces the stored object with `new` (request version), keeping what the mode does
/// not allow to change. `precondition` is the resourceVersion the client based it on.
/// [`update_object_with_warnings`] without admission's warnings, for writers that have
/// no client to show them to.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn update_object(
    state: &ApiState,
    info: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    new: Value,
    mode: UpdateMode,
    precondition: Option<i64>,
    opts: &WriteOpts,
) -> ApiResult<Value> {
    update_object_with_warnings(state, info, ns, name, new, mode, precondition, opts)
        .await
        .map(|(obj, _)| obj)
}

/// Replaces the stored object with `new` (request version), keeping what the mode does
/// not allow to change. `precondition` is the resourceVersion the client based it on.
/// Returns the object and admission's warnings.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn update_object_with_warnings(
    state: &ApiState,
    info: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    new: Value,
    mode: UpdateMode,
    precondition: Option<i64>,
    opts: &WriteOpts,
) -> ApiResult<(Value, Vec<String>)> {
    let sinfo = storage_info(info);
    let strategy = strategy::for_resource(sinfo);
    let _guards = state.admission.lock(sinfo).await;
    let k = key(info, ns, name);
    let kv = state
        .store
        .get(&k)?
        .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))?;
    if let Some(p) = precondition {
        if p != kv.mod_revision {
            return Err(ApiError::conflict(info.group, info.plural, name));
        }
    }
    let old = decode(&kv)?;
    let mut new = new;
    new["apiVersion"] = json!(info.api_version());
    new["kind"] = json!(info.kind);
    let new = to_storage(state.store.as_ref(), info, new)?;
    let mut obj = match mode {
        UpdateMode::Main => {
            let mut n = new;
            if info.has_subresource("status") {
                match old.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        if let Some(m) = n.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            n
        }
        UpdateMode::Status => {
            let mut n = old.clone();
            match new.get("status") {
                Some(s) => n["status"] = s.clone(),
                None => {
                    if let Some(m) = n.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            n
        }
        UpdateMode::Approval => {
            let mut n = old.clone();
            let conds = new
                .pointer("/status/conditions")
                .cloned()
                .unwrap_or(json!([]));
            if !n.get("status").is_some_and(Value::is_object) {
                n["status"] = json!({});
            }
            n["status"]["conditions"] = conds;
            n
        }
        UpdateMode::EphemeralContainers => {
            let mut n = old.clone();
            let ecs = new
                .pointer("/spec/ephemeralContainers")
                .cloned()
                .unwrap_or(json!([]));
            if !n.get("spec").is_some_and(Value::is_object) {
                n["spec"] = json!({});
            }
            n["spec"]["ephemeralContainers"] = ecs;
            n
        }
        UpdateMode::Finalize => {
            let mut n = old.clone();
            let fins = new
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            if !n.get("spec").is_some_and(Value::is_object) {
                n["spec"] = json!({});
            }
            n["spec"]["finalizers"] = fins;
            n
        }
    };
    // System metadata is the server's.
    {
        let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
        let m = meta_mut(&mut obj);
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
        ] {
            match old_meta.get(f) {
                Some(v) => {
                    m.insert(f.into(), v.clone());
                }
                None => {
                    m.remove(f);
                }
            }
        }
        m.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
        if !strategy.has_generation() {
            m.remove("generation");
        } else {
            let g = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            m.insert("generation".into(), json!(g));
        }
    }
    skiff_resources::default_object(sinfo, &mut obj);
    opts.record_update(sinfo, info, Some(&old), &mut obj);
    let attrs = admission::Attributes {
        info: sinfo,
        requested: info,
        operation: Operation::Update,
        namespace: ns.filter(|_| info.namespaced),
        name,
        subresource: opts.subresource.as_deref(),
        user: opts.user.as_ref(),
    };
    strategy.prepare_for_update(&mut obj, &old);
    state.admission.admit(&attrs, &mut obj, Some(&old))?;
    let mut warnings = state
        .webhooks
        .admit(&attrs, &mut obj, Some(&old), opts.dry_run)
        .await?;
    if strategy.has_generation() && spec_part(&obj) != spec_part(&old) {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        meta_mut(&mut obj).insert("generation".into(), json!(g + 1));
    }
    let errs = match mode {
        // The subresource has its own rules (kube's EphemeralContainersStrategy), not
        // a pod update's.
        UpdateMode::EphemeralContainers => strategy::from_resources(
            skiff_resources::validate_ephemeral_containers_update(sinfo, &obj, &old),
        ),
        _ => strategy.validate(sinfo, &obj, Some(&old)),
    };
    if !errs.is_empty() {
        return Err(strategy::invalid(info, name, errs));
    }
    warnings.append(&mut state.admission.validate(&attrs, &obj, Some(&old))?);
    warnings.append(
        &mut state
            .webhooks
            .validate(&attrs, Some(&obj), Some(&old), opts.dry_run)
            .await?,
    );
    check_typed(sinfo, name, &obj)?;
    if obj == old {
        // No change: no write, no new resourceVersion (as kube-apiserver).
        return Ok((obj, warnings));
    }
    if opts.dry_run {
        return Ok((obj, warnings));
    }
    state.admission.reserve(sinfo, &obj, Some(&old))?;
    if obj.pointer("/metadata/deletionTimestamp").is_some() && finalizers_done(strategy, &obj) {
        let rev = match state.store.delete(&k, Some(kv.mod_revision)) {
            Ok((_, rev)) => rev,
            Err(StoreError::Conflict { .. }) => {
                return Err(ApiError::conflict(info.group, info.plural, name))
            }
            Err(StoreError::NotFound(_)) => {
                return Err(ApiError::not_found(info.group, info.plural, name))
            }
            Err(e) => return Err(e.into()),
        };
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rev.to_string()));
        return Ok((obj, warnings));
    }
    match state.store.update(&k, &encode(&obj), Some(kv.mod_revision)) {
        Ok(rev) => {
            meta_mut(&mut obj).insert("resourceVersion".into(), json!(rev.to_string()));
            Ok((obj, warnings))
        }
        Err(StoreError::Conflict { .. }) => Err(ApiError::conflict(info.group, info.plural, name)),
        Err(StoreError::NotFound(_)) => Err(ApiError::not_found(info.group, info.plural, name)),
        Err(e) => Err(e.into()),
    }
}

/// No finalizers left: none in `metadata.finalizers` and none of the kind's own.
fn finalizers_done(strategy: &dyn Strategy, obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty())
        && !strategy.finalizers_pending(obj)
}

/// DELETE of one object. Returns the HTTP code and the body (the object).
pub(crate) async fn delete_object(
    state: &ApiState,
    info: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    dopts: &Value,
    q: &Query,
    opts: &WriteOpts,
) -> ApiResult<(u16, Value)> {
    let sinfo = storage_info(info);
    let strategy = strategy::for_resource(sinfo);
    let _guards = state.admission.lock(sinfo).await;
    let k = key(info, ns, name);
    let kv = state
        .store
        .get(&k)?
        .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))?;
    let old = decode(&kv)?;
    // Validating admission of deletes (NodeRestriction: a node deletes only its pods).
    let attrs = admission::Attributes {
        info: sinfo,
        requested: info,
        operation: Operation::Delete,
        namespace: ns.filter(|_| info.namespaced),
        name,
        subresource: opts.subresource.as_deref(),
        user: opts.user.as_ref(),
    };
    state.admission.validate_delete(&attrs, &old)?;
    let dry_run = opts.dry_run
        || dopts
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    state
        .webhooks
        .validate(&attrs, None, Some(&old), dry_run)
        .await?;
    if let Some(uid) = dopts.pointer("/preconditions/uid").and_then(Value::as_str) {
        if Some(uid) != meta_str(&old, "uid") {
            return Err(ApiError::conflict_msg(
                info.group,
                info.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid").unwrap_or("")
                ),
            ));
        }
    }
    if let Some(rv) = dopts
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
    {
        if rv != kv.mod_revision.to_string() {
            return Err(ApiError::conflict_msg(info.group, info.plural, name, &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                kv.mod_revision
            )));
        }
    }
    let grace = dopts
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| q.int("gracePeriodSeconds"));
    let policy = dopts
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| q.get("propagationPolicy").map(str::to_string))
        .or_else(
            || match dopts.get("orphanDependents").and_then(Value::as_bool) {
                Some(true) => Some("Orphan".into()),
                _ => None,
            },
        );

    let mut obj = old.clone();
    let mut finalizers: Vec<Value> = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match policy.as_deref() {
        Some("Foreground") if !finalizers.contains(&json!("foregroundDeletion")) => {
            finalizers.push(json!("foregroundDeletion"))
        }
        Some("Orphan") if !finalizers.contains(&json!("orphan")) => {
            finalizers.push(json!("orphan"))
        }
        _ => {}
    }
    let already = obj.pointer("/metadata/deletionTimestamp").is_some();
    // Graceful deletion (scheduled pods wait for their node to stop them).
    let graceful = strategy.grace_period(&obj, grace);
    if strategy.deletes_in_two_phases() || graceful.is_some() || !finalizers.is_empty() {
        let m = meta_mut(&mut obj);
        if !finalizers.is_empty() {
            m.insert("finalizers".into(), json!(finalizers));
        }
        let g = graceful.unwrap_or(0);
        let changed_grace = m.get("deletionGracePeriodSeconds").and_then(Value::as_i64) != Some(g);
        if !already || changed_grace {
            let ts = (chrono::Utc::now() + chrono::Duration::seconds(g))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            m.insert("deletionTimestamp".into(), json!(ts));
            m.insert("deletionGracePeriodSeconds".into(), json!(g));
        }
        strategy.prepare_for_delete(&mut obj);
        let hold = graceful.is_some() || !finalizers_done(strategy, &obj);
        if hold {
            if obj == old || dry_run {
                return Ok((200, to_version(state.store.as_ref(), info, obj)?));
            }
            return match state.store.update(&k, &encode(&obj), Some(kv.mod_revision)) {
                Ok(rev) => {
                    meta_mut(&mut obj).insert("resourceVersion".into(), json!(rev.to_string()));
                    Ok((200, to_version(state.store.as_ref(), info, obj)?))
                }
                Err(StoreError::Conflict { .. }) => {
                    Err(ApiError::conflict(info.group, info.plural, name))
                }
                Err(e) => Err(e.into()),
            };
        }
    }
    if dry_run {
        return Ok((200, to_version(state.store.as_ref(), info, old)?));
    }
    match state.store.delete(&k, Some(kv.mod_revision)) {
        Ok(_) => {}
        Err(StoreError::Conflict { .. }) => {
            return Err(ApiError::conflict(info.group, info.plural, name))
        }
        Err(StoreError::NotFound(_)) => {
            return Err(ApiError::not_found(info.group, info.plural, name))
        }
        Err(e) => return Err(e.into()),
    }
    state.admission.release(sinfo, &old);
    Ok((200, to_version(state.store.as_ref(), info, old)?))
}
