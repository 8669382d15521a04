//! The object store: JSON objects keyed by storage key (`plural.group`), namespace and
//! name, one global monotonically increasing resourceVersion (like etcd's revision), a
//! bounded window of past change events for watch replay, and broadcast channels feeding
//! live watchers, one per storage key and namespace (and one per key for cluster-wide watches),
//! so that a change wakes only the watches that can see it: an operator watching each of
//! hundreds of namespaces must not make every change cost hundreds of wake-ups. Every change goes through [`Store::mutate`], whose closure runs under the
//! store lock so read-modify-write is atomic. This module knows nothing of HTTP or of
//! per-kind semantics; it only stamps `metadata.resourceVersion`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

use super::error::{ApiError, ApiResult};
use super::objects::str_at;

/// Watch event types, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: EventType,
    pub key: Arc<str>,
    pub namespace: String,
    pub name: String,
    /// The object after the change (for DELETED: the last state, with the deletion's rv).
    pub object: Arc<Value>,
    /// The object before the change (MODIFIED/DELETED), so selector watches can tell
    /// "left the selection" from "changed inside it".
    pub old: Option<Arc<Value>>,
}

/// What a [`Store::mutate`] closure decides.
pub enum Mutation {
    /// Store this object (create or replace); the store stamps its resourceVersion.
    Put(Value),
    /// Remove the object.
    Delete,
    /// Leave everything as it is (the result is the current object).
    Keep,
}

/// The result of a mutation: the object now stored (or the deleted object), and what happened.
#[derive(Debug, Clone)]
pub struct Mutated {
    pub object: Arc<Value>,
    pub kind: Option<EventType>,
}

type Objects = BTreeMap<(String, String), Arc<Value>>;

/// Where an object lives: storage key, namespace, name.
pub type ObjectRef = (Arc<str>, String, String);

struct Inner {
    rv: u64,
    objects: HashMap<Arc<str>, Objects>,
    window: VecDeque<Arc<Change>>,
    window_cap: usize,
    /// Changes with rv <= this are no longer replayable (like etcd compaction).
    compacted: u64,
    /// uid → where the object lives.
    uids: HashMap<String, ObjectRef>,
    /// owner uid → dependents that name it in ownerReferences.
    dependents: HashMap<String, HashSet<ObjectRef>>,
    /// The live channels of the watches, by storage key.
    shards: HashMap<Arc<str>, KeyShards>,
}

/// Live watchers that fall further behind their channel than this catch up from the window
/// (or, past it, get 410 and re-list). A cluster-wide watch sees every change of its resource
/// and there are few of them: as deep as the single channel they replace. A namespace's
/// channel sees only that namespace's changes, and there may be thousands.
const CLUSTER_WIDE_CAPACITY: usize = 16_384;
const NAMESPACE_CAPACITY: usize = 512;

/// The live channels of one storage key's watches.
#[derive(Default)]
struct KeyShards {
    cluster_wide: Option<broadcast::Sender<Arc<Change>>>,
    by_namespace: HashMap<String, broadcast::Sender<Arc<Change>>>,
}

impl KeyShards {
    fn subscribe(&mut self, ns: Option<&str>) -> broadcast::Receiver<Arc<Change>> {
        let sender = match ns {
            None => self
                .cluster_wide
                .get_or_insert_with(|| broadcast::channel(CLUSTER_WIDE_CAPACITY).0),
            Some(ns) => self
                .by_namespace
                .entry(ns.to_owned())
                .or_insert_with(|| broadcast::channel(NAMESPACE_CAPACITY).0),
        };
        sender.subscribe()
    }

    /// Sends `change` to the watches of its namespace and the cluster-wide ones; drops the
    /// channels nobody listens to any more.
    fn send(&mut self, change: &Arc<Change>) {
        if let Some(tx) = &self.cluster_wide
            && tx.send(change.clone()).is_err()
        {
            self.cluster_wide = None;
        }
        if let Some(tx) = self.by_namespace.get(&change.namespace)
            && tx.send(change.clone()).is_err()
        {
            self.by_namespace.remove(&change.namespace);
        }
    }

    /// Sends `change` to every watch of this key.
    fn send_to_all(&mut self, change: &Arc<Change>) {
        if let Some(tx) = &self.cluster_wide {
            let _ = tx.send(change.clone());
        }
        for tx in self.by_namespace.values() {
            let _ = tx.send(change.clone());
        }
    }
}

/// Custom resources' watches end with their CRD: its deletion reaches every watch.
const CRDS: &str = "customresourcedefinitions.apiextensions.k8s.io";

impl Inner {
    /// A receiver of the live changes of `key` in `ns` (`None`: all namespaces).
    fn subscribe(&mut self, key: &str, ns: Option<&str>) -> broadcast::Receiver<Arc<Change>> {
        self.shards.entry(Arc::from(key)).or_default().subscribe(ns)
    }
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    inner: Mutex<Inner>,
    /// Every change (the garbage collector's feed).
    tx: broadcast::Sender<Arc<Change>>,
}

/// A snapshot for starting a watch: either replay from the window or the current state.
pub struct WatchStart {
    pub replay: Vec<Arc<Change>>,
    pub rx: broadcast::Receiver<Arc<Change>>,
    pub rv: u64,
}

pub fn rv_of(obj: &Value) -> u64 {
    str_at(obj, "/metadata/resourceVersion")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn uid_of(obj: &Value) -> Option<String> {
    str_at(obj, "/metadata/uid").map(String::from)
}

impl Store {
    pub fn new(window_cap: usize) -> Self {
        // The garbage collector's feed; further behind than this, it resyncs.
        let (tx, _) = broadcast::channel(16_384);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: HashMap::new(),
                window: VecDeque::new(),
                window_cap,
                compacted: 1,
                uids: HashMap::new(),
                dependents: HashMap::new(),
                shards: HashMap::new(),
            }),
            tx,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied mutation (the closure
        // runs before anything is written), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, key: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        let inner = self.lock();
        inner
            .objects
            .get(key)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    pub fn by_uid(&self, uid: &str) -> Option<(ObjectRef, Arc<Value>)> {
        let inner = self.lock();
        let r = inner.uids.get(uid)?.clone();
        let obj = inner
            .objects
            .get(&r.0)?
            .get(&(r.1.clone(), r.2.clone()))?
            .clone();
        Some((r, obj))
    }

    pub fn dependents_of(&self, uid: &str) -> Vec<ObjectRef> {
        let inner = self.lock();
        inner
            .dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Objects of `key` (in `ns`, or everywhere with `None`), in key order, starting after
    /// `after` (namespace, name) for paging, and the rv of the snapshot.
    pub fn list(
        &self,
        key: &str,
        ns: Option<&str>,
        after: Option<&(String, String)>,
    ) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        let Some(objects) = inner.objects.get(key) else {
            return (Vec::new(), inner.rv);
        };
        let items = list_range(objects, ns, after)
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rv)
    }

    /// The objects of `key` (in `ns`, or everywhere) as they were at resourceVersion `rv`,
    /// rebuilt by undoing the retained changes after it: exact lists and consistent
    /// continue pages. 410 when `rv` is older than the retained window; 504 when it is
    /// in the future.
    pub fn list_at(&self, key: &str, ns: Option<&str>, rv: u64) -> ApiResult<Vec<Arc<Value>>> {
        let inner = self.lock();
        if rv < inner.compacted {
            return Err(too_old(rv, inner.compacted));
        }
        if rv > inner.rv {
            return Err(ApiError::timeout(format!(
                "Too large resource version: {rv}, current: {}",
                inner.rv
            )));
        }
        let mut state: BTreeMap<(String, String), Arc<Value>> = inner
            .objects
            .get(key)
            .map(|o| {
                list_range(o, ns, None)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for c in inner.window.iter().rev().take_while(|c| c.rv > rv) {
            if *c.key != *key || ns.is_some_and(|n| n != c.namespace) {
                continue;
            }
            let k = (c.namespace.clone(), c.name.clone());
            match (c.kind, &c.old) {
                (EventType::Added, _) => {
                    state.remove(&k);
                }
                (_, Some(old)) => {
                    state.insert(k, old.clone());
                }
                (_, None) => {}
            }
        }
        Ok(state.into_values().collect())
    }

    /// Every namespace-scoped object in `ns`, across all resources (for namespace deletion).
    pub fn all_in_namespace(&self, ns: &str) -> Vec<ObjectRef> {
        let inner = self.lock();
        let mut out = Vec::new();
        for (key, objects) in &inner.objects {
            for ((n, name), _) in list_range(objects, Some(ns), None) {
                out.push((key.clone(), n.clone(), name.clone()));
            }
        }
        out
    }

    /// Every stored object for which `pred` holds (the controllers' periodic resync).
    pub fn scan(&self, pred: impl Fn(&Value) -> bool) -> Vec<Arc<Value>> {
        let inner = self.lock();
        inner
            .objects
            .values()
            .flat_map(|o| o.values())
            .filter(|v| pred(v))
            .cloned()
            .collect()
    }

    pub fn count(&self, key: &str) -> usize {
        self.lock().objects.get(key).map_or(0, BTreeMap::len)
    }

    /// Atomically reads the current object and applies the closure's decision.
    pub fn mutate<F>(&self, key: &str, ns: &str, name: &str, f: F) -> ApiResult<Mutated>
    where
        F: FnOnce(Option<&Arc<Value>>) -> ApiResult<Mutation>,
    {
        let mut inner = self.lock();
        let k = (ns.to_string(), name.to_string());
        let current = inner.objects.get(key).and_then(|o| o.get(&k)).cloned();
        let decision = f(current.as_ref())?;
        let key_arc: Arc<str> = match inner.objects.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Arc::from(key),
        };
        match decision {
            Mutation::Keep => match current {
                Some(obj) => Ok(Mutated {
                    object: obj,
                    kind: None,
                }),
                None => Err(ApiError::internal(format!(
                    "no object {key} {ns}/{name} to keep"
                ))),
            },
            Mutation::Put(mut obj) => {
                inner.rv += 1;
                let rv = inner.rv;
                if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
                }
                let obj = Arc::new(obj);
                let objref: ObjectRef = (key_arc.clone(), ns.to_string(), name.to_string());
                if let Some(old) = &current {
                    for o in owner_uids(old) {
                        if let Some(set) = inner.dependents.get_mut(&o) {
                            set.remove(&objref);
                            if set.is_empty() {
                                inner.dependents.remove(&o);
                            }
                        }
                    }
                }
                for o in owner_uids(&obj) {
                    inner
                        .dependents
                        .entry(o)
                        .or_default()
                        .insert(objref.clone());
                }
                if let Some(uid) = uid_of(&obj) {
                    inner.uids.insert(uid, objref);
                }
                inner
                    .objects
                    .entry(key_arc.clone())
                    .or_default()
                    .insert(k, obj.clone());
                let kind = if current.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                self.record(
                    &mut inner,
                    Change {
                        rv,
                        kind,
                        key: key_arc,
                        namespace: ns.into(),
                        name: name.into(),
                        object: obj.clone(),
                        old: current,
                    },
                );
                Ok(Mutated {
                    object: obj,
                    kind: Some(kind),
                })
            }
            Mutation::Delete => {
                let Some(old) = current else {
                    return Err(ApiError::internal(format!(
                        "no object {key} {ns}/{name} to delete"
                    )));
                };
                inner.rv += 1;
                let rv = inner.rv;
                if let Some(o) = inner.objects.get_mut(key) {
                    o.remove(&k);
                }
                let objref: ObjectRef = (key_arc.clone(), ns.to_string(), name.to_string());
                for o in owner_uids(&old) {
                    if let Some(set) = inner.dependents.get_mut(&o) {
                        set.remove(&objref);
                        if set.is_empty() {
                            inner.dependents.remove(&o);
                        }
                    }
                }
                if let Some(uid) = uid_of(&old) {
                    inner.uids.remove(&uid);
                }
                // The DELETED event carries the deletion's resourceVersion, as in Kubernetes.
                let mut last = (*old).clone();
                if let Some(meta) = last.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
                }
                let last = Arc::new(last);
                self.record(
                    &mut inner,
                    Change {
                        rv,
                        kind: EventType::Deleted,
                        key: key_arc,
                        namespace: ns.into(),
                        name: name.into(),
                        object: last.clone(),
                        old: Some(old),
                    },
                );
                Ok(Mutated {
                    object: last,
                    kind: Some(EventType::Deleted),
                })
            }
        }
    }

    fn record(&self, inner: &mut Inner, change: Change) {
        let change = Arc::new(change);
        inner.window.push_back(change.clone());
        while inner.window.len() > inner.window_cap {
            if let Some(old) = inner.window.pop_front() {
                inner.compacted = old.rv;
            }
        }
        // Sent under the lock so a watcher that subscribed under the lock sees no gap.
        if &*change.key == CRDS && change.kind == EventType::Deleted {
            for shards in inner.shards.values_mut() {
                shards.send_to_all(&change);
            }
        } else if let Some(shards) = inner.shards.get_mut(&change.key) {
            shards.send(&change);
        }
        let _ = self.tx.send(change);
    }

    /// Forgets all past events (like an etcd compaction).
    /// The version counter moves past every version handed out so far, so that any watch
    /// or continue token from before the call answers 410 (a test fault: it forces every
    /// client to re-list).
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.window.clear();
        inner.rv += 1;
        inner.compacted = inner.rv;
    }

    /// Starts a watch of `key` (in `ns`, or cluster-wide) from `from_rv`: the retained changes
    /// after it, then live changes. 410 Gone when changes after `from_rv` were already
    /// compacted away.
    pub fn watch_from(&self, from_rv: u64, key: &str, ns: Option<&str>) -> ApiResult<WatchStart> {
        let mut inner = self.lock();
        if from_rv < inner.compacted {
            return Err(too_old(from_rv, inner.compacted));
        }
        let replay = inner
            .window
            .iter()
            .filter(|c| c.rv > from_rv)
            .cloned()
            .collect();
        Ok(WatchStart {
            replay,
            rx: inner.subscribe(key, ns),
            rv: from_rv,
        })
    }

    /// Starts a watch at "now" with the current objects of `key` as the initial state.
    pub fn watch_now(&self, key: &str, ns: Option<&str>) -> (Vec<Arc<Value>>, WatchStart) {
        let mut inner = self.lock();
        let items = inner
            .objects
            .get(key)
            .map(|o| list_range(o, ns, None).map(|(_, v)| v.clone()).collect())
            .unwrap_or_default();
        (
            items,
            WatchStart {
                replay: Vec::new(),
                rx: inner.subscribe(key, ns),
                rv: inner.rv,
            },
        )
    }

    /// The retained changes after `rv` (for a watcher that lagged behind the channel).
    pub fn changes_since(&self, rv: u64) -> ApiResult<Vec<Arc<Change>>> {
        let inner = self.lock();
        if rv < inner.compacted {
            return Err(too_old(rv, inner.compacted));
        }
        Ok(inner.window.iter().filter(|c| c.rv > rv).cloned().collect())
    }

    /// A receiver of all future changes (the garbage collector's feed).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }
}

fn too_old(rv: u64, compacted: u64) -> ApiError {
    ApiError::gone(format!("too old resource version: {rv} ({compacted})"))
}

/// Objects in key order, optionally one namespace, optionally after a key.
type Entries<'a> = Box<dyn Iterator<Item = (&'a (String, String), &'a Arc<Value>)> + 'a>;

fn list_range<'a>(
    objects: &'a Objects,
    ns: Option<&str>,
    after: Option<&(String, String)>,
) -> Entries<'a> {
    use std::ops::Bound;
    let lower = match after {
        Some(a) => Bound::Excluded(a.clone()),
        None => match ns {
            Some(n) => Bound::Included((n.to_string(), String::new())),
            None => Bound::Unbounded,
        },
    };
    let iter = objects.range((lower, Bound::Unbounded));
    match ns {
        Some(n) => {
            let n = n.to_string();
            Box::new(iter.take_while(move |((ons, _), _)| *ons == n))
        }
        None => Box::new(iter),
    }
}
