//! The write pipeline every verb shares: create (with generateName, uid, defaults), update,
//! patch (merge, JSON, strategic, apply), delete (preconditions, propagation policy,
//! finalizers, graceful pod deletion) and the status subresource split. Each write runs as
//! one atomic [`Store::mutate`] closure; no-op writes keep the resourceVersion, like
//! kube-apiserver. Used by the HTTP handlers and by the in-process controllers (GC,
//! namespace, CRD).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Cluster;
use super::crd;
use super::error::{ApiError, ApiResult, Cause};
use super::events;
use super::kinds;
use super::meta::{self, NameRule};
use super::patch;
use super::resources::ResourceInfo;
use super::shape::Shape;
use super::ssa::{self, Part};
use super::store::{Mutated, Mutation, rv_of};

/// Who writes and how.
#[derive(Debug, Clone)]
pub struct WriteCtx {
    /// The field manager (`fieldManager` or derived from the User-Agent).
    pub manager: String,
    pub dry_run: bool,
    /// `fieldValidation=Strict`: unknown fields of custom resources are a 400, not pruned.
    pub strict: bool,
}

impl WriteCtx {
    pub fn system(manager: &str) -> Self {
        WriteCtx {
            manager: manager.to_string(),
            dry_run: false,
            strict: false,
        }
    }
}

/// The supported patch types, by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> ApiResult<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchType::Apply),
            _ => Err(ApiError::unsupported_media_type(ct)),
        }
    }
}

/// DeleteOptions that matter here.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub propagation: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

impl DeleteOpts {
    /// Reads a DeleteOptions body (may be empty) plus query overrides.
    pub fn from_body(body: &Value) -> Self {
        let mut o = DeleteOpts {
            propagation: body
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(String::from),
            grace_period_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64),
            precondition_uid: str_at(body, "/preconditions/uid").map(String::from),
            precondition_rv: str_at(body, "/preconditions/resourceVersion").map(String::from),
            dry_run: body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty()),
        };
        if o.propagation.is_none() {
            match body.get("orphanDependents").and_then(Value::as_bool) {
                Some(true) => o.propagation = Some("Orphan".into()),
                Some(false) => o.propagation = Some("Background".into()),
                None => {}
            }
        }
        o
    }
}

/// The outcome of a delete: the object (deleted, or now terminating) and whether it is gone.
pub struct Deleted {
    pub object: Arc<Value>,
    pub gone: bool,
}

/// `obj` as a JSON object (replacing a non-object), then its `metadata` map.
pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let root = ensure_object(obj);
    ensure_object(
        root.entry("metadata")
            .or_insert_with(|| Value::Object(Map::new())),
    )
}

fn ensure_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        // Just replaced by an object above.
        _ => unreachable!("value was made an object"),
    }
}

/// The string at a JSON pointer in `v`, if there is one there.
pub fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a terminating object must stay: finalizers left, a pod's grace period running,
/// or a namespace whose content is still being deleted.
pub fn pending_finalization(info: &ResourceInfo, obj: &Value) -> bool {
    !finalizers(obj).is_empty()
        || obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            > 0
        || (info.group.is_empty()
            && info.plural == "namespaces"
            && obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty()))
}

/// The object with `metadata.resourceVersion` and managedFields timestamps removed, to
/// recognise no-op writes.
fn comparable(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(m) = c.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        if let Some(Value::Array(mf)) = m.get_mut("managedFields") {
            for e in mf.iter_mut().filter_map(Value::as_object_mut) {
                e.remove("time");
            }
        }
    }
    c
}

/// The spec-ish content whose change bumps `metadata.generation`.
fn generation_content(v: &Value, info: &ResourceInfo) -> Value {
    let mut c = v.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("metadata");
        if info.has_status() {
            m.remove("status");
        }
    }
    c
}

impl Cluster {
    pub(crate) fn shape<'a>(&self, info: &'a ResourceInfo) -> Shape<'a> {
        match &info.crd {
            Some(c) => Shape::custom(c.schema.as_ref()),
            None => Shape::builtin(),
        }
    }

    pub fn get_object(&self, info: &ResourceInfo, ns: &str, name: &str) -> ApiResult<Arc<Value>> {
        self.store
            .get(&info.storage_key(), ns, name)
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))
    }

    /// Namespaced objects need their namespace; a terminating one takes no new objects.
    fn check_namespace(&self, info: &ResourceInfo, ns: &str) -> ApiResult<()> {
        if !info.namespaced {
            return Ok(());
        }
        match self.store.get("namespaces", "", ns) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                Err(ApiError::forbidden(format!(
                    "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    super::error::qualified(&info.group, &info.plural),
                    "",
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// Checks apiVersion/kind and namespace of a request body against the URL.
    fn check_body(
        &self,
        info: &ResourceInfo,
        ns: &str,
        body: &Value,
        name: Option<&str>,
    ) -> ApiResult<()> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        if let Some(kind) = body.get("kind").and_then(Value::as_str)
            && kind != info.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                info.kind
            )));
        }
        if let Some(av) = body.get("apiVersion").and_then(Value::as_str)
            && av != info.api_version()
            && av != info.storage_api_version()
        {
            // A different served version of the same group-resource is fine (no conversion needed).
            let group = av.rsplit_once('/').map_or("", |(g, _)| g);
            if group != info.group {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({})",
                    info.api_version()
                )));
            }
        }
        if let Some(bns) = str_at(body, "/metadata/namespace")
            && info.namespaced
            && !bns.is_empty()
            && bns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if let (Some(n), Some(bn)) = (name, str_at(body, "/metadata/name"))
            && !bn.is_empty()
            && n != bn
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({bn}) does not match the name on the URL ({n})"
            )));
        }
        Ok(())
    }

    /// Validation and schema handling common to create and update.
    fn validate_write(
        &self,
        info: &ResourceInfo,
        obj: &mut Value,
        ctx: &WriteCtx,
    ) -> ApiResult<()> {
        let name = str_at(obj, "/metadata/name").unwrap_or("").to_string();
        let mut causes: Vec<Cause> = Vec::new();
        causes.extend(meta::validate_labels(obj));
        causes.extend(kinds::normalize(info, obj));
        if let Some(c) = &info.crd
            && let Some(schema) = &c.schema
        {
            let pruned = crd::prune_and_default(schema, obj);
            if ctx.strict && !pruned.is_empty() {
                let list: Vec<String> = pruned
                    .iter()
                    .map(|p| format!("unknown field \"{p}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
            causes.extend(crd::validate_object(schema, obj));
        }
        if info.plural == "customresourcedefinitions" && info.group == "apiextensions.k8s.io" {
            causes.extend(crd::validate(obj));
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(&info.group, &info.kind, &name, causes))
        }
    }

    /// Create. `body` is the object as sent.
    pub fn create(
        &self,
        info: &ResourceInfo,
        ns: &str,
        mut body: Value,
        ctx: &WriteCtx,
    ) -> ApiResult<Arc<Value>> {
        self.check_body(info, ns, &body, None)?;
        self.check_namespace(info, ns)?;
        if events::is_new_api(info) {
            body = events::to_core(&body);
        }
        let obj = body
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("object expected"))?;
        obj.insert("apiVersion".into(), json!(info.storage_api_version()));
        obj.insert("kind".into(), json!(info.kind));
        let meta = meta_mut(&mut body);
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty()
            && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
        {
            let prefix: String = prefix.chars().take(58).collect();
            name = format!("{prefix}{}", meta::random_suffix());
        }
        if let Some(cause) = meta::validate_name(&name, meta::name_rule(&info.plural)) {
            return Err(ApiError::invalid(
                &info.group,
                &info.kind,
                &name,
                vec![cause],
            ));
        }
        meta.insert("name".into(), json!(name));
        if info.namespaced {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        if meta.contains_key("resourceVersion")
            && meta
                .get("resourceVersion")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        for k in [
            "uid",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(k);
        }
        meta.insert("uid".into(), json!(meta::new_uid()));
        meta.insert("creationTimestamp".into(), json!(meta::now()));
        if info.has_generation {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        kinds::default_on_create(info, &mut body);
        self.validate_write(info, &mut body, ctx)?;
        if info.plural == "customresourcedefinitions" {
            let status = crd::status(&body, &meta::now());
            if let Some(m) = body.as_object_mut() {
                m.insert("status".into(), status);
            }
        }
        if info.plural == "customresourcedefinitions" || info.crd.is_some() {
            // Status of a custom resource with a status subresource is not settable on create.
            if info.crd.is_some()
                && info.has_status()
                && let Some(m) = body.as_object_mut()
            {
                m.remove("status");
            }
        }
        let part = if info.has_status() {
            Part::Main
        } else {
            Part::All
        };
        let shape = self.shape(info);
        ssa::track_update(
            None,
            &mut body,
            &ctx.manager,
            &info.api_version(),
            &meta::now(),
            &shape,
            part,
        );
        self.put_new(info, ns, &name, body, ctx)
    }

    fn put_new(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        body: Value,
        ctx: &WriteCtx,
    ) -> ApiResult<Arc<Value>> {
        if ctx.dry_run {
            if self.store.get(&info.storage_key(), ns, name).is_some() {
                return Err(ApiError::already_exists(&info.group, &info.plural, name));
            }
            return Ok(Arc::new(body));
        }
        let res = self.store.mutate(&info.storage_key(), ns, name, |cur| {
            if cur.is_some() {
                return Err(ApiError::already_exists(&info.group, &info.plural, name));
            }
            Ok(Mutation::Put(body))
        })?;
        self.after_write(info, &res);
        Ok(res.object)
    }

    /// Finishes an update of an existing object (inside the store closure).
    fn finish_update(
        &self,
        info: &ResourceInfo,
        old: &Value,
        mut new: Value,
        part: Part,
        ctx: &WriteCtx,
        tracked: bool,
    ) -> ApiResult<Mutation> {
        let name = str_at(old, "/metadata/name").unwrap_or("").to_string();
        if let Some(rv) = str_at(&new, "/metadata/resourceVersion")
            && !rv.is_empty()
            && rv != str_at(old, "/metadata/resourceVersion").unwrap_or("")
        {
            return Err(ApiError::modified(&info.group, &info.plural, &name));
        }
        if !new.is_object() {
            return Err(ApiError::bad_request("object expected"));
        }
        if let Some(m) = new.as_object_mut() {
            m.insert("apiVersion".into(), json!(info.storage_api_version()));
            m.insert("kind".into(), json!(info.kind));
        }
        let new_managed = new.pointer("/metadata/managedFields").cloned();
        match part {
            Part::Status => {
                // Only status changes through the status subresource.
                let status = new.get("status").cloned();
                let mut merged = old.clone();
                if let Some(m) = merged.as_object_mut() {
                    match status {
                        Some(s) => m.insert("status".into(), s),
                        None => m.remove("status"),
                    };
                }
                if tracked && let Some(mf) = new_managed.clone() {
                    meta_mut(&mut merged).insert("managedFields".into(), mf);
                }
                new = merged;
            }
            Part::Main => {
                // Status is ignored on the main resource when a status subresource exists.
                if let Some(m) = new.as_object_mut() {
                    match old.get("status") {
                        Some(s) => m.insert("status".into(), s.clone()),
                        None => m.remove("status"),
                    };
                }
            }
            Part::All => {}
        }
        {
            let old_meta = old
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let meta = meta_mut(&mut new);
            for k in [
                "uid",
                "creationTimestamp",
                "name",
                "namespace",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                match old_meta.get(k) {
                    Some(v) => meta.insert(k.to_string(), v.clone()),
                    None => meta.remove(k),
                };
            }
            if !tracked {
                // Clients may rewrite managedFields (kubectl does, to move client-side
                // apply ownership to server-side apply); otherwise the stored ones stay.
                let incoming = meta.get("managedFields").cloned();
                let base = match incoming {
                    Some(v) if Some(&v) != old_meta.get("managedFields") => Some(v),
                    _ => old_meta.get("managedFields").cloned(),
                };
                match base {
                    Some(v) => meta.insert("managedFields".into(), v),
                    None => meta.remove("managedFields"),
                };
            }
        }
        self.validate_write(info, &mut new, ctx)?;
        if part != Part::Status {
            let causes = kinds::validate_update(info, old, &new);
            if !causes.is_empty() {
                return Err(ApiError::invalid(&info.group, &info.kind, &name, causes));
            }
        }
        if info.plural == "customresourcedefinitions"
            && info.group == "apiextensions.k8s.io"
            && part != Part::Status
        {
            let status = crd::status(&new, &meta::now());
            if let Some(m) = new.as_object_mut() {
                m.insert("status".into(), status);
            }
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            let before = finalizers(old);
            if finalizers(&new).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid(
                    &info.group,
                    &info.kind,
                    &name,
                    vec![Cause::new(
                        "FieldValueForbidden",
                        "metadata.finalizers",
                        "Forbidden: no new finalizers can be added if the object is being deleted",
                    )],
                ));
            }
        }
        if info.has_generation && generation_content(old, info) != generation_content(&new, info) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        if !tracked {
            let shape = self.shape(info);
            ssa::track_update(
                Some(old),
                &mut new,
                &ctx.manager,
                &info.api_version(),
                &meta::now(),
                &shape,
                part,
            );
        }
        if comparable(old) == comparable(&new) {
            return Ok(Mutation::Keep);
        }
        if new.pointer("/metadata/deletionTimestamp").is_some() && !pending_finalization(info, &new)
        {
            return Ok(Mutation::Delete);
        }
        Ok(Mutation::Put(new))
    }

    fn after_write(&self, info: &ResourceInfo, res: &Mutated) {
        if info.plural == "customresourcedefinitions" && info.group == "apiextensions.k8s.io" {
            self.crd_changed(
                &res.object,
                res.kind == Some(super::store::EventType::Deleted),
            );
        }
    }

    /// Runs an update-like closure: `f` maps the current object to the desired one.
    pub fn modify<F>(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        part: Part,
        ctx: &WriteCtx,
        f: F,
    ) -> ApiResult<Arc<Value>>
    where
        F: FnOnce(&Value) -> ApiResult<(Value, bool)>,
    {
        let key = info.storage_key();
        if ctx.dry_run {
            let cur = self.get_object(info, ns, name)?;
            let (new, tracked) = f(&cur)?;
            return match self.finish_update(info, &cur, new, part, ctx, tracked)? {
                Mutation::Put(v) => Ok(Arc::new(v)),
                _ => Ok(cur),
            };
        }
        let res = self.store.mutate(&key, ns, name, |cur| {
            let cur = cur.ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))?;
            let (new, tracked) = f(cur)?;
            self.finish_update(info, cur, new, part, ctx, tracked)
        })?;
        self.after_write(info, &res);
        Ok(res.object)
    }

    /// PUT.
    pub fn update(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        part: Part,
        body: Value,
        ctx: &WriteCtx,
    ) -> ApiResult<Arc<Value>> {
        self.check_body(info, ns, &body, Some(name))?;
        let body = if events::is_new_api(info) {
            events::to_core(&body)
        } else {
            body
        };
        self.modify(info, ns, name, part, ctx, |_| Ok((body, false)))
    }

    /// PATCH; returns the object and whether it was created (apply of a missing object).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        part: Part,
        ty: PatchType,
        body: &Value,
        force: bool,
        ctx: &WriteCtx,
    ) -> ApiResult<(Arc<Value>, bool)> {
        if ty == PatchType::Strategic && info.crd.is_some() {
            return Err(ApiError::unsupported_media_type(
                "application/strategic-merge-patch+json is not supported for custom resources",
            ));
        }
        if ty == PatchType::Apply {
            return self.apply(info, ns, name, part, body, force, ctx);
        }
        let new_events = events::is_new_api(info);
        let obj = self.modify(info, ns, name, part, ctx, |cur| {
            // Patches apply to the object as this API version shows it.
            let mut new = if new_events {
                events::from_core(cur)
            } else {
                cur.clone()
            };
            match ty {
                PatchType::Merge => patch::merge_patch(&mut new, body),
                PatchType::Json => patch::json_patch(&mut new, body)?,
                PatchType::Strategic => patch::strategic_merge(&mut new, body)?,
                PatchType::Apply => {}
            }
            // A resourceVersion in the patch is a precondition; without one the patch
            // applies to whatever is current.
            let sent_rv = body.pointer("/metadata/resourceVersion").is_some();
            if !sent_rv {
                let rv = cur
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null);
                meta_mut(&mut new).insert("resourceVersion".into(), rv);
            }
            if new_events {
                new = events::to_core(&new);
            }
            Ok((new, false))
        })?;
        Ok((obj, false))
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        part: Part,
        body: &Value,
        force: bool,
        ctx: &WriteCtx,
    ) -> ApiResult<(Arc<Value>, bool)> {
        if ctx.manager.is_empty() {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        self.check_body(info, ns, body, Some(name))?;
        if body.get("apiVersion").is_none() || body.get("kind").is_none() {
            return Err(ApiError::bad_request(
                "apiVersion and kind must be set in an apply patch",
            ));
        }
        let converted;
        let body = if events::is_new_api(info) {
            converted = events::to_core(body);
            &converted
        } else {
            body
        };
        let shape = self.shape(info);
        let now = meta::now();
        let req = ssa::ApplyRequest {
            manager: &ctx.manager,
            force,
            part,
            api_version: &info.api_version(),
            now: &now,
            shape,
        };
        if self.store.get(&info.storage_key(), ns, name).is_none() && part != Part::Status {
            let empty = json!({"metadata": {}});
            let mut created = ssa::apply(&empty, body, &req)?;
            meta_mut(&mut created).insert("name".into(), json!(name));
            let managed = created.pointer("/metadata/managedFields").cloned();
            match self.create_tracked(info, ns, created, managed, ctx) {
                Ok(obj) => return Ok((obj, true)),
                // Lost a race with a concurrent create: apply to the winner instead.
                Err(e) if e.code == 409 && e.reason == "AlreadyExists" => {}
                Err(e) => return Err(e),
            }
        }
        let obj = self.modify(info, ns, name, part, ctx, |cur| {
            let new = ssa::apply(cur, body, &req)?;
            Ok((new, true))
        })?;
        Ok((obj, false))
    }

    /// Create with managedFields already computed (server-side apply of a new object).
    fn create_tracked(
        &self,
        info: &ResourceInfo,
        ns: &str,
        body: Value,
        managed: Option<Value>,
        ctx: &WriteCtx,
    ) -> ApiResult<Arc<Value>> {
        let mut obj = self
            .create(
                info,
                ns,
                body,
                &WriteCtx {
                    dry_run: true,
                    ..ctx.clone()
                },
            )?
            .as_ref()
            .clone();
        if let Some(mf) = managed {
            // Apply managed fields, but keep only status-free ownership on the main resource.
            meta_mut(&mut obj).insert("managedFields".into(), mf);
        }
        let name = str_at(&obj, "/metadata/name").unwrap_or("").to_string();
        self.put_new(info, ns, &name, obj, ctx)
    }

    /// DELETE of one object.
    pub fn delete(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<Deleted> {
        let policy = opts
            .propagation
            .clone()
            .unwrap_or_else(|| kinds::default_propagation(info).to_string());
        if !matches!(policy.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                vec![Cause::new(
                    "FieldValueNotSupported",
                    "propagationPolicy",
                    format!(
                        "Unsupported value: \"{policy}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                    ),
                )],
            ));
        }
        let key = info.storage_key();
        let mut gone = false;
        let mut decide = |cur: Option<&Arc<Value>>| -> ApiResult<Mutation> {
            let cur = cur.ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))?;
            if let Some(uid) = &opts.precondition_uid
                && str_at(cur, "/metadata/uid") != Some(uid.as_str())
            {
                return Err(ApiError::conflict(
                    &info.group,
                    &info.plural,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        str_at(cur, "/metadata/uid").unwrap_or("")
                    ),
                ));
            }
            if let Some(rv) = &opts.precondition_rv
                && str_at(cur, "/metadata/resourceVersion") != Some(rv.as_str())
            {
                return Err(ApiError::conflict(
                    &info.group,
                    &info.plural,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        str_at(cur, "/metadata/resourceVersion").unwrap_or("")
                    ),
                ));
            }
            let mut obj = cur.as_ref().clone();
            let deleting = cur.pointer("/metadata/deletionTimestamp").is_some();
            let mut fins = finalizers(cur);
            let is_pod = info.group.is_empty() && info.plural == "pods";
            let grace = if is_pod && kinds::pod_needs_graceful_delete(cur) {
                opts.grace_period_seconds
                    .or_else(|| {
                        cur.pointer("/metadata/deletionGracePeriodSeconds")
                            .and_then(Value::as_i64)
                    })
                    .or_else(|| {
                        cur.pointer("/spec/terminationGracePeriodSeconds")
                            .and_then(Value::as_i64)
                    })
                    .unwrap_or(30)
                    .max(0)
            } else {
                0
            };
            if !deleting {
                match policy.as_str() {
                    "Foreground" => fins.push("foregroundDeletion".into()),
                    "Orphan" => fins.push("orphan".into()),
                    _ => {}
                }
            } else if policy == "Orphan" && !fins.iter().any(|f| f == "orphan") && !fins.is_empty()
            {
                fins.push("orphan".into());
            }
            let namespace_pending = info.group.is_empty()
                && info.plural == "namespaces"
                && obj
                    .pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
            if fins.is_empty() && grace == 0 && !namespace_pending {
                gone = true;
                return Ok(Mutation::Delete);
            }
            let meta = meta_mut(&mut obj);
            if !deleting {
                meta.insert("deletionTimestamp".into(), json!(meta::now_plus(grace)));
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            } else if is_pod {
                // A shorter grace period replaces a longer one (kubelet's final grace-0 delete).
                let cur_grace = meta
                    .get("deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if grace >= cur_grace {
                    if fins.is_empty() && grace == 0 {
                        gone = true;
                        return Ok(Mutation::Delete);
                    }
                    return Ok(Mutation::Keep);
                }
                meta.insert("deletionTimestamp".into(), json!(meta::now_plus(grace)));
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if fins.is_empty() {
                meta.remove("finalizers");
            } else {
                meta.insert("finalizers".into(), json!(fins));
            }
            if namespace_pending && let Some(m) = obj.as_object_mut() {
                m.insert("status".into(), json!({"phase": "Terminating"}));
            }
            if comparable(cur) == comparable(&obj) {
                return Ok(Mutation::Keep);
            }
            Ok(Mutation::Put(obj))
        };
        if opts.dry_run {
            let cur = self.store.get(&key, ns, name);
            return match decide(cur.as_ref())? {
                Mutation::Put(v) => Ok(Deleted {
                    object: Arc::new(v),
                    gone: false,
                }),
                _ => Ok(Deleted {
                    object: self.get_object(info, ns, name)?,
                    gone,
                }),
            };
        }
        let res = self.store.mutate(&key, ns, name, decide)?;
        self.after_write(info, &res);
        Ok(Deleted {
            object: res.object,
            gone,
        })
    }

    /// Removes one finalizer (controllers' own bookkeeping: GC, namespaces).
    pub fn remove_finalizer(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        finalizer: &str,
    ) -> ApiResult<Arc<Value>> {
        let ctx = WriteCtx::system("kubesim-controller");
        self.modify(info, ns, name, Part::All, &ctx, |cur| {
            let mut new = cur.clone();
            let fins: Vec<String> = finalizers(cur)
                .into_iter()
                .filter(|f| f != finalizer)
                .collect();
            let meta = meta_mut(&mut new);
            if fins.is_empty() {
                meta.remove("finalizers");
            } else {
                meta.insert("finalizers".into(), json!(fins));
            }
            Ok((new, true))
        })
    }

    /// The resource a stored object belongs to, from its apiVersion and kind.
    pub fn info_for(&self, obj: &Value) -> Option<Arc<ResourceInfo>> {
        let av = str_at(obj, "/apiVersion")?;
        let kind = str_at(obj, "/kind")?;
        let (group, version) = av.rsplit_once('/').unwrap_or(("", av));
        self.registry.by_kind(group, version, kind)
    }

    /// The current rv check used by update paths that need it outside a closure.
    pub fn rv(obj: &Value) -> u64 {
        rv_of(obj)
    }

    /// Checks a name the way create does (used by the binding subresource and others).
    pub fn valid_name(info: &ResourceInfo, name: &str) -> bool {
        meta::validate_name(
            name,
            if info.plural == "namespaces" {
                NameRule::Label
            } else {
                meta::name_rule(&info.plural)
            },
        )
        .is_none()
    }
}
