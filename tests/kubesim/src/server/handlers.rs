//! Request dispatch: parses the Kubernetes URL layout (`/api/v1/namespaces/NS/RES/NAME/SUB`,
//! `/apis/G/V/...`), authenticates the bearer token, applies injected faults and (when
//! enabled) RBAC, maps method + path to the Kubernetes verb, and answers with JSON objects,
//! lists, Tables or `Status` errors. Every request is recorded in the request log.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{HeaderMap, Method};
use serde::Serialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::http::{Response, error_response, json_response};
use super::objects::{DeleteOpts, PatchType, WriteCtx, str_at};
use super::resources::ResourceInfo;
use super::selectors::{FieldSelector, LabelSelector};
use super::ssa::Part;
use super::{Cluster, RequestRecord, discovery, table};

/// A parsed resource URL.
#[derive(Debug, Clone, Default)]
pub struct ResPath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub sub: Option<String>,
}

enum Route {
    Version,
    Health,
    Api,
    Apis,
    Group(String),
    GroupVersion(String, String),
    Resource(ResPath),
    OpenApiV3Root,
    OpenApiV3(String, String),
    NotFound,
}

fn parse_rest(group: &str, version: &str, rest: &[&str]) -> Route {
    let mut rp = ResPath {
        group: group.into(),
        version: version.into(),
        ..Default::default()
    };
    let namespaced_path = rest.first() == Some(&"namespaces")
        && rest.len() >= 3
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let rest = if namespaced_path {
        rp.namespace = Some(rest[1].to_string());
        &rest[2..]
    } else {
        rest
    };
    match rest {
        [res] => rp.resource = res.to_string(),
        [res, name] => {
            rp.resource = res.to_string();
            rp.name = Some(name.to_string());
        }
        [res, name, sub] => {
            rp.resource = res.to_string();
            rp.name = Some(name.to_string());
            rp.sub = Some(sub.to_string());
        }
        _ => return Route::NotFound,
    }
    Route::Resource(rp)
}

fn route(path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "readyz" | "livez", ..] => Route::Health,
        ["api"] => Route::Api,
        ["api", v] => Route::GroupVersion(String::new(), v.to_string()),
        ["api", v, rest @ ..] => parse_rest("", v, rest),
        ["apis"] => Route::Apis,
        ["apis", g] => Route::Group(g.to_string()),
        ["apis", g, v] => Route::GroupVersion(g.to_string(), v.to_string()),
        ["apis", g, v, rest @ ..] => parse_rest(g, v, rest),
        ["openapi", "v3"] => Route::OpenApiV3Root,
        ["openapi", "v3", "api", v] => Route::OpenApiV3(String::new(), v.to_string()),
        ["openapi", "v3", "apis", g, v] => Route::OpenApiV3(g.to_string(), v.to_string()),
        _ => Route::NotFound,
    }
}

/// System identities that are always authorized (the built-in controllers).
pub fn privileged(user: &str) -> bool {
    matches!(
        user,
        "kubesim:admin"
            | "system:unsecured"
            | "system:serviceaccount:kube-system:job-controller"
            | "system:serviceaccount:kube-system:kubelet"
    )
}

/// The user a bearer token stands for; `Err` for a token kubesim never issued.
pub fn authenticate(headers: &HeaderMap) -> Result<String, ApiError> {
    // client-go (kubectl) never sends bearer tokens over plain HTTP, so credential-less
    // requests are treated like kube-apiserver's old insecure local port: fully trusted.
    let Some(auth) = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok("system:unsecured".into());
    };
    let token = auth.strip_prefix("Bearer ").unwrap_or("").trim();
    if token == "kubesim:admin" {
        return Ok("kubesim:admin".into());
    }
    if let Some(rest) = token.strip_prefix("kubesim:serviceaccount:")
        && let Some((ns, name)) = rest.split_once(':')
        && !ns.is_empty()
        && !name.is_empty()
    {
        return Ok(format!("system:serviceaccount:{ns}:{name}"));
    }
    Err(ApiError::new(401, "Unauthorized", "Unauthorized"))
}

pub struct Request {
    pub method: Method,
    pub headers: HeaderMap,
    pub query: HashMap<String, String>,
    pub body: Bytes,
    pub user: String,
}

impl Request {
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query
            .get(k)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.q(k), Some("true" | "1"))
    }

    fn wants_table(&self) -> bool {
        self.headers
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=Table"))
    }

    /// `Accept: application/json;as=PartialObjectMetadata(List);g=meta.k8s.io;v=v1`
    /// (metadata-only gets, lists and watches).
    pub fn wants_metadata(&self) -> bool {
        self.headers
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=PartialObjectMetadata"))
    }

    /// Whether the client accepts aggregated discovery (apidiscovery.k8s.io/v2).
    fn wants_aggregated(&self) -> bool {
        self.headers
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.split(',').any(|m| m.trim() == discovery::AGGREGATED_V2))
    }

    fn content_type(&self) -> String {
        self.headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_string()
    }

    /// The body as JSON (or YAML, which kubectl uses for apply patches).
    fn json_body(&self) -> ApiResult<Value> {
        if self.body.is_empty() {
            return Ok(json!({}));
        }
        let ct = self.content_type();
        if ct.starts_with("application/vnd.kubernetes.protobuf") {
            return super::protobuf::decode(&self.body);
        }
        if ct.contains("protobuf") || ct.contains("cbor") {
            return Err(ApiError::unsupported_media_type(&ct));
        }
        if ct.contains("yaml") {
            let v: serde_yaml::Value = serde_yaml::from_slice(&self.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            return serde_json::to_value(v)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })
    }

    fn write_ctx(&self) -> WriteCtx {
        let manager = match self.q("fieldManager") {
            Some(m) => m.to_string(),
            None => {
                let ua = self
                    .headers
                    .get(hyper::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let prefix = ua.split('/').next().unwrap_or("").trim();
                if prefix.is_empty() {
                    "unknown".to_string()
                } else {
                    prefix.to_string()
                }
            }
        };
        WriteCtx {
            manager,
            dry_run: self.q("dryRun") == Some("All"),
            strict: self.q("fieldValidation") == Some("Strict"),
        }
    }
}

fn aggregated_response(v: &Value) -> Response {
    let mut r = json_response(200, v);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(discovery::AGGREGATED_V2),
    );
    r
}

/// The entry point for every HTTP request.
pub async fn handle(cluster: Arc<Cluster>, req: hyper::Request<Incoming>) -> Response {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error_response(&ApiError::bad_request(format!("reading body: {e}"))),
    };
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let mut record = RequestRecord {
        user: String::new(),
        verb: String::new(),
        group: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
        code: 0,
    };
    let user = match authenticate(&parts.headers) {
        Ok(u) => u,
        Err(e) => {
            record.code = e.code;
            record.verb = parts.method.as_str().to_lowercase();
            cluster.record(record);
            return error_response(&e);
        }
    };
    // Impersonation (`kubectl --as`): only the admin may act as someone else.
    let user = match parts
        .headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
    {
        Some(as_user) if privileged(&user) => as_user.to_string(),
        Some(as_user) => {
            let e = ApiError::forbidden(format!(
                "users \"{as_user}\" is forbidden: User \"{user}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
            ));
            record.user = user;
            record.code = 403;
            record.verb = "impersonate".into();
            cluster.record(record);
            return error_response(&e);
        }
        None => user,
    };
    record.user = user.clone();
    let latency = cluster.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let request = Request {
        method: parts.method.clone(),
        headers: parts.headers,
        query,
        body,
        user,
    };
    let response = match route(&path) {
        Route::Version => json_response(200, &discovery::version()),
        Route::Health => {
            let mut r = hyper::Response::new(super::http::full("ok"));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain"),
            );
            r
        }
        Route::Api if request.wants_aggregated() => {
            aggregated_response(&discovery::aggregated(&cluster.registry, true))
        }
        Route::Apis if request.wants_aggregated() => {
            aggregated_response(&discovery::aggregated(&cluster.registry, false))
        }
        Route::Api => json_response(200, &discovery::core_versions(&cluster.address)),
        Route::Apis => json_response(200, &discovery::group_list(&cluster.registry)),
        Route::Group(g) => match discovery::group(&cluster.registry, &g) {
            Some(v) => json_response(200, &v),
            None => page_not_found(),
        },
        Route::GroupVersion(g, v) => match discovery::resource_list(&cluster.registry, &g, &v) {
            Some(v) => json_response(200, &v),
            None if discovery::group(&cluster.registry, &g).is_none() => page_not_found(),
            None => error_response(&ApiError::no_route(&path)),
        },
        Route::NotFound => error_response(&ApiError::no_route(&path)),
        Route::OpenApiV3Root => json_response(200, &discovery::openapi_v3_root(&cluster.registry)),
        Route::OpenApiV3(g, v) => {
            match discovery::openapi_v3_group_version(&cluster.registry, &g, &v) {
                Some(doc) => json_response(200, &doc),
                None => error_response(&ApiError::no_route(&path)),
            }
        }
        Route::Resource(rp) => {
            record.group = rp.group.clone();
            record.resource = rp.resource.clone();
            record.subresource = rp.sub.clone().unwrap_or_default();
            record.namespace = rp.namespace.clone().unwrap_or_default();
            record.name = rp.name.clone().unwrap_or_default();
            let verb = verb_of(&request, &rp);
            record.verb = verb.to_string();
            match resource_request(&cluster, &request, &rp, verb, &path).await {
                Ok(r) => r,
                Err(e)
                    if e.code == 404
                        && !rp.group.is_empty()
                        && discovery::group(&cluster.registry, &rp.group).is_none() =>
                {
                    page_not_found()
                }
                Err(e) => error_response(&e),
            }
        }
    };
    if record.verb.is_empty() {
        record.verb = request.method.as_str().to_lowercase();
        record.resource = path;
    }
    record.code = response.status().as_u16();
    cluster.record(record);
    response
}

/// kube-apiserver's answer for a path under no served API group: not a Status but the
/// plain-text 404 of its catch-all handler.
fn page_not_found() -> Response {
    let mut r = hyper::Response::new(super::http::full("404 page not found\n"));
    *r.status_mut() = hyper::StatusCode::NOT_FOUND;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn verb_of(req: &Request, rp: &ResPath) -> &'static str {
    match (&req.method, rp.name.is_some()) {
        (&Method::GET, false) if req.flag("watch") => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) if req.flag("watch") => "watch",
        (&Method::GET, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    }
}

#[derive(Serialize)]
struct ListOut<'a> {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
    metadata: Value,
    items: Vec<&'a Value>,
}

/// The object as seen through the requested version (versions of a CRD share storage).
fn present(info: &ResourceInfo, obj: &Arc<Value>) -> Arc<Value> {
    if super::events::is_new_api(info) {
        return Arc::new(super::events::from_core(obj));
    }
    let av = info.api_version();
    if obj.get("apiVersion").and_then(Value::as_str) == Some(av.as_str()) {
        return obj.clone();
    }
    let mut o = obj.as_ref().clone();
    o["apiVersion"] = json!(av);
    Arc::new(o)
}

/// The metadata-only form of an object.
pub fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

fn object_response(req: &Request, info: &ResourceInfo, code: u16, obj: &Arc<Value>) -> Response {
    let obj = present(info, obj);
    if req.wants_metadata() {
        return json_response(code, &partial(&obj));
    }
    if req.wants_table() {
        let rv = str_at(&obj, "/metadata/resourceVersion")
            .unwrap_or("")
            .to_string();
        let t = table::table(
            info,
            &[obj.as_ref()],
            &rv,
            None,
            req.q("includeObject").unwrap_or("Metadata"),
        );
        return json_response(code, &t);
    }
    json_response(code, &obj)
}

async fn resource_request(
    cluster: &Arc<Cluster>,
    req: &Request,
    rp: &ResPath,
    verb: &str,
    path: &str,
) -> ApiResult<Response> {
    let info = cluster
        .registry
        .get(&rp.group, &rp.version, &rp.resource)
        .ok_or_else(|| ApiError::no_route(path))?;
    let delay = cluster.faults.delay_for(&req.user, verb, &info.plural);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(code) =
        cluster
            .faults
            .take_failure(verb, &info.plural, rp.sub.as_deref().unwrap_or(""))
    {
        let name = rp.name.as_deref().unwrap_or("");
        let e = match code {
            409 => ApiError::modified(&info.group, &info.plural, name),
            503 => ApiError::unavailable("injected fault: service unavailable"),
            410 => ApiError::gone("injected fault: too old resource version"),
            429 => {
                let mut e =
                    ApiError::new(429, "TooManyRequests", "injected fault: too many requests");
                e.details.retry_after_seconds = Some(1);
                e
            }
            c => ApiError::new(
                c,
                "InternalError",
                format!("Internal error occurred: injected fault ({c})"),
            ),
        };
        return Err(e);
    }
    if !info.namespaced && rp.namespace.is_some() {
        return Err(ApiError::no_route(path));
    }
    if info.namespaced && rp.namespace.is_none() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::no_route(path));
    }
    if let Some(sub) = &rp.sub
        && !info.subresources.iter().any(|s| s == sub)
    {
        return Err(ApiError::no_route(path));
    }
    if super::resources::is_review(&info.group, &info.plural) && verb != "create" {
        return Err(ApiError::method_not_allowed(verb));
    }
    // Everyone may ask what they themselves may do (system:basic-user in Kubernetes).
    if cluster.enforce_rbac && info.plural != "selfsubjectaccessreviews" {
        // As kube-apiserver: a list/watch whose field selector requires `metadata.name=<name>`
        // is authorized as a request for that name (resourceNames).
        let selected_name = matches!(verb, "list" | "watch")
            .then(|| req.q("fieldSelector"))
            .flatten()
            .and_then(|f| {
                f.split(',').find_map(|term| {
                    term.strip_prefix("metadata.name==")
                        .or_else(|| term.strip_prefix("metadata.name="))
                })
            });
        super::rbac::authorize(
            cluster,
            &req.user,
            verb,
            &info.group,
            &info.plural,
            rp.sub.as_deref().unwrap_or(""),
            rp.namespace.as_deref().unwrap_or(""),
            selected_name.or(rp.name.as_deref()).unwrap_or(""),
        )?;
    }
    let ns = rp.namespace.clone().unwrap_or_default();
    let name = rp.name.clone().unwrap_or_default();
    let part = match rp.sub.as_deref() {
        Some("status") => Part::Status,
        _ if info.has_status() => Part::Main,
        _ => Part::All,
    };
    match verb {
        "get" if rp.sub.as_deref() == Some("log") => {
            super::podlog::serve(cluster, req, &ns, &name).await
        }
        "get" => {
            let obj = cluster.get_object(&info, &ns, &name)?;
            Ok(object_response(req, &info, 200, &obj))
        }
        "list" => list(cluster, req, &info, rp.namespace.as_deref()),
        "watch" => super::watch::serve(
            cluster,
            req,
            &info,
            rp.namespace.as_deref(),
            rp.name.as_deref(),
        ),
        "create" if super::resources::is_review(&info.group, &info.plural) => {
            let body = req.json_body()?;
            Ok(json_response(
                201,
                &super::rbac::review(cluster, &info.kind, &req.user, &ns, body),
            ))
        }
        "create" if rp.sub.as_deref() == Some("binding") => bind(cluster, req, &info, &ns, &name),
        "create" if info.plural == "serviceaccounts" && rp.sub.as_deref() == Some("token") => {
            super::tokens::create(cluster, &ns, &name, req.json_body()?)
        }
        "create" if rp.sub.is_some() => Err(ApiError::method_not_allowed("create")),
        "create" => {
            let body = req.json_body()?;
            let obj = cluster.create(&info, &ns, body, &req.write_ctx())?;
            Ok(object_response(req, &info, 201, &obj))
        }
        "update" => {
            let body = req.json_body()?;
            let obj = cluster.update(&info, &ns, &name, part, body, &req.write_ctx())?;
            Ok(object_response(req, &info, 200, &obj))
        }
        "patch" => {
            let ty = PatchType::from_content_type(&req.content_type())?;
            let body = req.json_body()?;
            let force = req.flag("force");
            if force && ty != PatchType::Apply {
                return Err(ApiError::bad_request(
                    "force may not be specified for non-apply patch",
                ));
            }
            let (obj, created) =
                cluster.patch(&info, &ns, &name, part, ty, &body, force, &req.write_ctx())?;
            Ok(object_response(
                req,
                &info,
                if created { 201 } else { 200 },
                &obj,
            ))
        }
        "delete" => {
            let opts = delete_opts(req)?;
            let d = cluster.delete(&info, &ns, &name, &opts)?;
            if d.gone && !super::kinds::returns_deleted_object(&info) {
                return Ok(json_response(200, &deleted_status(&info, &d.object)));
            }
            Ok(object_response(req, &info, 200, &d.object))
        }
        "deletecollection" => {
            let opts = delete_opts(req)?;
            let (items, _) = select(cluster, req, &info, rp.namespace.as_deref())?;
            let mut deleted = Vec::new();
            for obj in items {
                let ons = str_at(&obj, "/metadata/namespace").unwrap_or("");
                let on = str_at(&obj, "/metadata/name").unwrap_or("");
                match cluster.delete(&info, ons, on, &opts) {
                    Ok(d) => deleted.push(d.object),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let out = ListOut {
                kind: info.list_kind(),
                api_version: info.api_version(),
                metadata: json!({"resourceVersion": cluster.store.current_rv().to_string()}),
                items: deleted.iter().map(|a| a.as_ref()).collect(),
            };
            Ok(json_response(
                200,
                &serde_json::to_value(&out).map_err(|e| ApiError::internal(e.to_string()))?,
            ))
        }
        _ => Err(ApiError::method_not_allowed(req.method.as_str())),
    }
}

/// What kube-apiserver answers for an object removed at once: a `Status` naming it.
fn deleted_status(info: &ResourceInfo, obj: &Value) -> Value {
    let mut details = json!({
        "name": obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
        "kind": info.plural,
        "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
    });
    if !info.group.is_empty() {
        details["group"] = json!(info.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

fn delete_opts(req: &Request) -> ApiResult<DeleteOpts> {
    let body = req.json_body()?;
    let mut opts = DeleteOpts::from_body(&body);
    if let Some(p) = req.q("propagationPolicy") {
        opts.propagation = Some(p.to_string());
    }
    if let Some(g) = req.q("gracePeriodSeconds") {
        opts.grace_period_seconds = Some(
            g.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g}")))?,
        );
    }
    if req.q("dryRun") == Some("All") {
        opts.dry_run = true;
    }
    if opts.propagation.is_none()
        && let Some(o) = req.q("orphanDependents")
    {
        opts.propagation = Some(if o == "true" {
            "Orphan".into()
        } else {
            "Background".into()
        });
    }
    Ok(opts)
}

/// The `pods/binding` subresource: what the scheduler calls to put a pod on a node.
fn bind(
    cluster: &Cluster,
    req: &Request,
    info: &ResourceInfo,
    ns: &str,
    name: &str,
) -> ApiResult<Response> {
    let body = req.json_body()?;
    let node = str_at(&body, "/target/name").unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            name,
            vec![super::error::Cause::new(
                "FieldValueRequired",
                "target.name",
                "Required value",
            )],
        ));
    }
    let ctx = req.write_ctx();
    cluster.modify(info, ns, name, Part::All, &ctx, |cur| {
        if let Some(existing) = str_at(cur, "/spec/nodeName").filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict("", "pods/binding", name, &format!("pod {name} is already assigned to node \"{existing}\"")));
        }
        let mut new = cur.clone();
        new["spec"]["nodeName"] = json!(node);
        if let Some(conds) = new.pointer_mut("/status").and_then(Value::as_object_mut) {
            conds.insert("conditions".into(), json!([{"type": "PodScheduled", "status": "True", "lastTransitionTime": super::meta::now()}]));
        }
        Ok((new, false))
    })?;
    Ok(json_response(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// Parses the selectors of a list/watch request.
pub fn selectors(req: &Request, info: &ResourceInfo) -> ApiResult<(LabelSelector, FieldSelector)> {
    let ls = LabelSelector::parse(req.q("labelSelector").unwrap_or(""))?;
    let mut fields = req.q("fieldSelector").unwrap_or("").to_string();
    if super::events::is_new_api(info) {
        fields = super::events::field_selector_to_core(&fields);
    }
    let fs = FieldSelector::parse(&fields, &info.plural)?;
    Ok((ls, fs))
}

/// Continue tokens: base64 JSON of the list's rv and the last returned key.
fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"rv": rv, "ns": ns, "name": name}).to_string())
}

fn decode_continue(token: &str) -> ApiResult<(u64, String, String)> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok((
        v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?,
        v.get("ns")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        v.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    ))
}

fn object_key(o: &Value) -> (String, String) {
    let ns = str_at(o, "/metadata/namespace").unwrap_or("").to_string();
    let name = str_at(o, "/metadata/name").unwrap_or("").to_string();
    (ns, name)
}

/// All objects matching the request's selectors (no paging).
fn select(
    cluster: &Cluster,
    req: &Request,
    info: &ResourceInfo,
    ns: Option<&str>,
) -> ApiResult<(Vec<Arc<Value>>, u64)> {
    let (ls, fs) = selectors(req, info)?;
    let (items, rv) = cluster.store.list(&info.storage_key(), ns, None);
    Ok((
        items
            .into_iter()
            .filter(|o| ls.matches(o) && fs.matches(o))
            .collect(),
        rv,
    ))
}

fn list(
    cluster: &Cluster,
    req: &Request,
    info: &ResourceInfo,
    ns: Option<&str>,
) -> ApiResult<Response> {
    let (ls, fs) = selectors(req, info)?;
    let limit: usize = match req.q("limit") {
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l}")))?
            .max(0) as usize,
        None => 0,
    };
    let key = info.storage_key();
    // Exact lists and continue pages are served from the snapshot at their version.
    let (items, rv) = match (
        req.q("continue"),
        req.q("resourceVersion"),
        req.q("resourceVersionMatch"),
    ) {
        (Some(tok), _, _) => {
            let (rv, cns, cname) = decode_continue(tok)?;
            let all = cluster.store.list_at(&key, ns, rv).map_err(|e| {
                if e.code == 410 {
                    ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
                } else {
                    e
                }
            })?;
            let after = (cns, cname);
            let rest: Vec<Arc<Value>> = all.into_iter().filter(|o| object_key(o) > after).collect();
            (rest, rv)
        }
        (None, Some(rv), Some("Exact")) => {
            let n: u64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv}")))?;
            (cluster.store.list_at(&key, ns, n)?, n)
        }
        _ => cluster.store.list(&key, ns, None),
    };
    let mut out: Vec<Arc<Value>> = Vec::new();
    let mut cont = None;
    let mut remaining = 0usize;
    let unfiltered = ls.is_empty() && fs.is_empty();
    for obj in items.iter() {
        if !(ls.matches(obj) && fs.matches(obj)) {
            continue;
        }
        if limit > 0 && out.len() == limit {
            if cont.is_none()
                && let Some(last) = out.last()
            {
                let lns = str_at(last, "/metadata/namespace").unwrap_or("");
                let lname = str_at(last, "/metadata/name").unwrap_or("");
                cont = Some(encode_continue(rv, lns, lname));
            }
            remaining += 1;
            if !unfiltered {
                break;
            }
            continue;
        }
        out.push(present(info, obj));
    }
    let rv_s = rv.to_string();
    if req.wants_table() {
        let refs: Vec<&Value> = out.iter().map(|a| a.as_ref()).collect();
        let t = table::table(
            info,
            &refs,
            &rv_s,
            cont.as_deref(),
            req.q("includeObject").unwrap_or("Metadata"),
        );
        return Ok(json_response(200, &t));
    }
    let mut meta = json!({"resourceVersion": rv_s});
    if let Some(c) = &cont {
        meta["continue"] = json!(c);
        if unfiltered {
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    if req.wants_metadata() {
        let items: Vec<Value> = out.iter().map(|o| partial(o)).collect();
        return Ok(json_response(
            200,
            &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items}),
        ));
    }
    let body = ListOut {
        kind: info.list_kind(),
        api_version: info.api_version(),
        metadata: meta,
        items: out.iter().map(|a| a.as_ref()).collect(),
    };
    let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut r = hyper::Response::new(super::http::full(bytes));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
