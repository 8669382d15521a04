//! The watch verb: a chunked stream of `{"type": ..., "object": ...}` lines. Starts from
//! the current state (synthetic ADDED events, for an unset or `0` resourceVersion), or
//! replays retained changes after a given resourceVersion (an ERROR event with a 410
//! Status when they were compacted away), then follows live changes. Selector watches
//! turn "left the selection" into DELETED and "entered it" into ADDED, like the watch
//! cache. Supports bookmarks, `sendInitialEvents`, `timeoutSeconds`, Tables, and ends on
//! server shutdown or when fault injection closes all watches.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::Cluster;
use super::error::{ApiError, ApiResult};
use super::handlers::{Request, selectors};
use super::http::{Response, stream_response};
use super::objects::str_at;
use super::resources::ResourceInfo;
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{Change, EventType};
use super::table;

/// How often a watch that asked for bookmarks gets one: about once a minute, as from
/// kube-apiserver's watch cache, and once more shortly before the watch times out. (Every
/// second, as before, cost an operator with 4 000 watches a tenth of a core for bookmarks.)
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);
/// How long before its timeout a watch gets its last bookmark.
const BOOKMARK_BEFORE_TIMEOUT: Duration = Duration::from_secs(2);

struct Filter {
    key: String,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The event a watcher sees for a change, if any.
    fn event_for(&self, c: &Change) -> Option<EventType> {
        if *c.key != *self.key || self.ns.as_ref().is_some_and(|n| *n != c.namespace) {
            return None;
        }
        match c.kind {
            EventType::Added => self.matches(&c.object).then_some(EventType::Added),
            EventType::Deleted => self
                .matches(c.old.as_deref().unwrap_or(&c.object))
                .then_some(EventType::Deleted),
            EventType::Modified => {
                let now = self.matches(&c.object);
                let before = c.old.as_deref().is_some_and(|o| self.matches(o));
                match (before, now) {
                    (true, true) => Some(EventType::Modified),
                    (false, true) => Some(EventType::Added),
                    (true, false) => Some(EventType::Deleted),
                    (false, false) => None,
                }
            }
        }
    }
}

struct Encoder {
    info: ResourceInfo,
    table: bool,
    metadata_only: bool,
    include: String,
}

impl Encoder {
    fn object(&self, obj: &Value) -> Value {
        let mut o = if super::events::is_new_api(&self.info) {
            super::events::from_core(obj)
        } else {
            obj.clone()
        };
        if o.get("apiVersion").and_then(Value::as_str) != Some(self.info.api_version().as_str()) {
            o["apiVersion"] = json!(self.info.api_version());
        }
        if self.table {
            let rv = str_at(&o, "/metadata/resourceVersion")
                .unwrap_or("")
                .to_string();
            return table::table(&self.info, &[&o], &rv, None, &self.include);
        }
        if self.metadata_only {
            return super::handlers::partial(&o);
        }
        o
    }

    fn line(&self, ty: &str, object: Value) -> Bytes {
        let mut v = serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
        v.push(b'\n');
        Bytes::from(v)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        self.line("BOOKMARK", json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": meta}))
    }

    fn error(&self, e: &ApiError) -> Bytes {
        self.line("ERROR", e.to_status())
    }
}

pub fn serve(
    cluster: &Arc<Cluster>,
    req: &Request,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: Option<&str>,
) -> ApiResult<Response> {
    let (labels, mut fields) = selectors(req, info)?;
    if let Some(n) = name {
        fields = FieldSelector::parse(&format!("metadata.name={n}"), &info.plural)?;
    }
    let filter = Filter {
        key: info.storage_key(),
        ns: ns.map(String::from),
        labels,
        fields,
    };
    let bookmarks = matches!(req.q("allowWatchBookmarks"), Some("true" | "1"));
    let send_initial = match req.q("sendInitialEvents") {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    let timeout = match req.q("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t}")))?,
        ),
        None => Duration::from_secs(1800),
    };
    let enc = Encoder {
        info: info.clone(),
        table: req
            .headers
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=Table")),
        metadata_only: req.wants_metadata(),
        include: req.q("includeObject").unwrap_or("Metadata").to_string(),
    };
    let rv = req.q("resourceVersion");
    let (tx, out) = mpsc::channel::<Bytes>(256);

    // Decide the start point synchronously so the subscription precedes the response.
    let start = match (rv, send_initial) {
        (None | Some("0"), None | Some(true)) | (_, Some(true)) => {
            let (items, ws) = cluster.store.watch_now(&filter.key, filter.ns.as_deref());
            Ok((items, ws))
        }
        (None | Some("0"), Some(false)) => Ok((
            Vec::new(),
            cluster.store.watch_now(&filter.key, filter.ns.as_deref()).1,
        )),
        (Some(rv), _) => {
            let n: u64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv}")))?;
            cluster
                .store
                .watch_from(n, &filter.key, filter.ns.as_deref())
                .map(|ws| (Vec::new(), ws))
        }
    };
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let (initial, ws) = match start {
            Ok(x) => x,
            Err(e) => {
                let _ = tx.send(enc.error(&e)).await;
                return;
            }
        };
        let mut last = ws.rv;
        for obj in initial.iter().filter(|o| filter.matches(o)) {
            if tx.send(enc.line("ADDED", enc.object(obj))).await.is_err() {
                return;
            }
        }
        if send_initial == Some(true) && tx.send(enc.bookmark(last, true)).await.is_err() {
            return;
        }
        for c in &ws.replay {
            if !emit(&tx, &enc, &filter, c, &mut last).await {
                return;
            }
        }
        let mut rx = ws.rx;
        let mut closer = cluster.faults.watch_closer();
        closer.borrow_and_update();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let last_bookmark_at = deadline.deadline().checked_sub(BOOKMARK_BEFORE_TIMEOUT);
        let next_bookmark = |now: tokio::time::Instant| {
            let regular = now + BOOKMARK_EVERY;
            match last_bookmark_at {
                Some(last) if last > now => regular.min(last),
                _ => regular,
            }
        };
        let tick = tokio::time::sleep_until(next_bookmark(tokio::time::Instant::now()));
        tokio::pin!(tick);
        loop {
            tokio::select! {
                () = cluster.shutdown.cancelled() => break,
                () = &mut deadline => break,
                _ = closer.changed() => break,
                () = tx.closed() => break,
                () = &mut tick, if bookmarks => {
                    // As kube-apiserver's watch cache does, a bookmark carries the store's
                    // resource version, not the watch's last event's (which, for a quiet
                    // namespace, falls out of the window, and the client's next watch from
                    // it gets 410 and lists again). Changes are put on the channels under
                    // the store's lock, so with none waiting here, every change up to the
                    // version read before looking has been handled.
                    let current = cluster.store.current_rv();
                    let rv = if rx.is_empty() { last.max(current) } else { last };
                    if tx.send(enc.bookmark(rv, false)).await.is_err() {
                        break;
                    }
                    tick.as_mut().reset(next_bookmark(tokio::time::Instant::now()));
                }
                r = rx.recv() => match r {
                    Ok(c) => {
                        // A custom resource's watches end with its CRD, as in Kubernetes.
                        if c.kind == EventType::Deleted
                            && &*c.key == "customresourcedefinitions.apiextensions.k8s.io"
                            && enc.info.crd.as_ref().is_some_and(|d| d.crd_name == c.name)
                        {
                            break;
                        }
                        if !emit(&tx, &enc, &filter, &c, &mut last).await {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Fell behind the live channel: catch up from the retained window.
                        match cluster.store.changes_since(last) {
                            Ok(changes) => {
                                let mut ok = true;
                                for c in &changes {
                                    if !emit(&tx, &enc, &filter, c, &mut last).await {
                                        ok = false;
                                        break;
                                    }
                                }
                                if !ok {
                                    break;
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(enc.error(&e)).await;
                                break;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        }
    });
    Ok(stream_response("application/json", out))
}

/// Sends the event for one change if the watcher should see it; false when the client is gone.
async fn emit(
    tx: &mpsc::Sender<Bytes>,
    enc: &Encoder,
    filter: &Filter,
    c: &Arc<Change>,
    last: &mut u64,
) -> bool {
    if c.rv <= *last {
        return true;
    }
    *last = c.rv;
    let Some(ty) = filter.event_for(c) else {
        return true;
    };
    tx.send(enc.line(ty.as_str(), enc.object(&c.object)))
        .await
        .is_ok()
}
