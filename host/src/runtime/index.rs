//! Which QuarksJobs a ConfigMap or Secret concerns, without a scan: an index from
//! `(namespace, kind, name)` (and, for versioned secrets, `(namespace, prefix)`) to the
//! QuarksJobs whose pod template references it, and from a namespace to its QuarksJobs. It is
//! kept current by the QuarksJob watch's events (see [`QuarksJobIndex::observe`]), so a change of
//! a ConfigMap or Secret costs a hash lookup, whatever the number of QuarksJobs.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::crd::QuarksJob;
use crate::names::versioned;
use crate::reconcile::references::{ConfigKind, referenced_config};

/// What a QuarksJob is found by.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Key {
    /// A referenced ConfigMap or Secret, by name.
    Named(String, ConfigKind, String),
    /// Any version of a versioned secret the template references (`<prefix>-v<N>`).
    VersionedPrefix(String, String),
    /// Every QuarksJob of the namespace.
    Namespace(String),
}

#[derive(Default)]
struct Inner {
    by_key: HashMap<Key, HashSet<ObjectRef<QuarksJob>>>,
    /// Each QuarksJob's keys, with the generation they were read at (a spec that did not
    /// change is not decoded again: most watch events are status writes).
    by_qjob: HashMap<ObjectRef<QuarksJob>, (Option<i64>, Vec<Key>)>,
    /// The QuarksJobs seen since the watch began a re-list (`Init`).
    relisted: Option<HashSet<ObjectRef<QuarksJob>>>,
}

/// The QuarksJobs by what they reference and by namespace.
#[derive(Default)]
pub struct QuarksJobIndex {
    inner: Mutex<Inner>,
}

fn keys_of(qjob: &QuarksJob) -> Vec<Key> {
    let namespace = qjob.namespace().unwrap_or_default();
    let mut keys = vec![Key::Namespace(namespace.clone())];
    let pod = qjob.spec.template.pod_spec().unwrap_or_else(|error| {
        tracing::warn!(%error, "a cached QuarksJob's template does not decode: indexed by namespace only");
        None
    });
    if let Some(pod) = pod {
        for reference in referenced_config(&pod) {
            if reference.kind == ConfigKind::Secret
                && let Some(v) = versioned::parse_versioned_name(&reference.name)
            {
                keys.push(Key::VersionedPrefix(namespace.clone(), v.prefix));
            }
            keys.push(Key::Named(
                namespace.clone(),
                reference.kind,
                reference.name,
            ));
        }
    }
    let mut unique = Vec::with_capacity(keys.len());
    for key in keys {
        if !unique.contains(&key) {
            unique.push(key);
        }
    }
    unique
}

impl Inner {
    fn remove(&mut self, reference: &ObjectRef<QuarksJob>) {
        for key in self.by_qjob.remove(reference).unwrap_or_default().1 {
            if let Some(set) = self.by_key.get_mut(&key) {
                set.remove(reference);
                if set.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
    }

    fn insert(&mut self, qjob: &QuarksJob) {
        let reference = ObjectRef::from_obj(qjob);
        let generation = qjob.metadata.generation;
        let indexed = self.by_qjob.get_key_value(&reference);
        // A generation is never reused for another spec of the same object; a re-created
        // namesake (another uid) starts at 1 again.
        let unchanged = indexed.is_some_and(|(indexed, (at, _))| {
            indexed.extra.uid == reference.extra.uid && generation.is_some() && *at == generation
        });
        if unchanged {
            return;
        }
        let keys = keys_of(qjob);
        if indexed.is_some_and(|(_, (_, indexed))| *indexed == keys) {
            // The same keys: only what they were read at is new (the map keeps its key on
            // `insert`, hence remove first, for the uid).
            self.by_qjob.remove(&reference);
            self.by_qjob.insert(reference, (generation, keys));
            return;
        }
        self.remove(&reference);
        for key in &keys {
            self.by_key
                .entry(key.clone())
                .or_default()
                .insert(reference.clone());
        }
        self.by_qjob.insert(reference, (generation, keys));
    }

    fn get(&self, key: &Key) -> impl Iterator<Item = &ObjectRef<QuarksJob>> {
        self.by_key.get(key).into_iter().flatten()
    }
}

impl QuarksJobIndex {
    /// Follows the QuarksJob watch (before its events reach the controller).
    pub fn observe(&self, event: &watcher::Event<QuarksJob>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            watcher::Event::Apply(qjob) => inner.insert(qjob),
            watcher::Event::Delete(qjob) => inner.remove(&ObjectRef::from_obj(qjob)),
            watcher::Event::Init => inner.relisted = Some(HashSet::new()),
            watcher::Event::InitApply(qjob) => {
                inner.insert(qjob);
                if let Some(seen) = inner.relisted.as_mut() {
                    seen.insert(ObjectRef::from_obj(qjob));
                }
            }
            watcher::Event::InitDone => {
                let seen = inner.relisted.take().unwrap_or_default();
                let gone: Vec<ObjectRef<QuarksJob>> = inner
                    .by_qjob
                    .keys()
                    .filter(|r| !seen.contains(*r))
                    .cloned()
                    .collect();
                for reference in gone {
                    inner.remove(&reference);
                }
            }
        }
    }

    /// The QuarksJobs of a namespace.
    pub fn in_namespace(&self, namespace: &str) -> Vec<ObjectRef<QuarksJob>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .get(&Key::Namespace(namespace.to_owned()))
            .cloned()
            .collect()
    }

    /// The QuarksJobs whose pod template references ConfigMap/Secret `name` in `namespace`:
    /// by name, or (a Secret) as another version of a versioned secret it references.
    pub fn referencing(
        &self,
        namespace: &str,
        kind: ConfigKind,
        name: &str,
    ) -> Vec<ObjectRef<QuarksJob>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut found: HashSet<ObjectRef<QuarksJob>> = inner
            .get(&Key::Named(namespace.to_owned(), kind, name.to_owned()))
            .cloned()
            .collect();
        if kind == ConfigKind::Secret
            && let Some(v) = versioned::parse_versioned_name(name)
        {
            found.extend(
                inner
                    .get(&Key::VersionedPrefix(namespace.to_owned(), v.prefix))
                    .cloned(),
            );
        }
        found.into_iter().collect()
    }

    /// How many QuarksJobs are indexed.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_qjob
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qjob(namespace: &str, name: &str, env: serde_json::Value) -> QuarksJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "quarks.cloudfoundry.org/v1alpha1", "kind": "QuarksJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"trigger": {"strategy": "once"}, "template": {"spec": {"template": {"spec": {
                "containers": [{"name": "c", "image": "busybox", "env": env}]
            }}}}},
        }))
        .unwrap()
    }

    fn from_secret(name: &str) -> serde_json::Value {
        serde_json::json!([{"name": "A", "valueFrom": {"secretKeyRef": {"name": name, "key": "k"}}}])
    }

    fn from_config_map(name: &str) -> serde_json::Value {
        serde_json::json!([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": name, "key": "k"}}}])
    }

    fn names(refs: Vec<ObjectRef<QuarksJob>>) -> Vec<String> {
        let mut names: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    #[test]
    fn finds_the_referencing_quarks_jobs_by_name_kind_namespace_and_version() {
        let index = QuarksJobIndex::default();
        index.observe(&watcher::Event::Apply(qjob("a", "s", from_secret("creds"))));
        index.observe(&watcher::Event::Apply(qjob(
            "a",
            "c",
            from_config_map("creds"),
        )));
        index.observe(&watcher::Event::Apply(qjob("a", "v", from_secret("pw-v3"))));
        index.observe(&watcher::Event::Apply(qjob("b", "s", from_secret("creds"))));
        assert_eq!(
            names(index.referencing("a", ConfigKind::Secret, "creds")),
            ["s"]
        );
        assert_eq!(
            names(index.referencing("a", ConfigKind::ConfigMap, "creds")),
            ["c"]
        );
        // A new version of the versioned secret concerns its referencer.
        assert_eq!(
            names(index.referencing("a", ConfigKind::Secret, "pw-v4")),
            ["v"]
        );
        assert!(
            index
                .referencing("a", ConfigKind::Secret, "other")
                .is_empty()
        );
        assert_eq!(names(index.in_namespace("a")), ["c", "s", "v"]);
    }

    #[test]
    fn follows_changes_deletions_and_relists() {
        let index = QuarksJobIndex::default();
        index.observe(&watcher::Event::Apply(qjob("a", "q", from_secret("one"))));
        // The template now references another Secret: the old entry goes.
        index.observe(&watcher::Event::Apply(qjob("a", "q", from_secret("two"))));
        assert!(index.referencing("a", ConfigKind::Secret, "one").is_empty());
        assert_eq!(
            names(index.referencing("a", ConfigKind::Secret, "two")),
            ["q"]
        );
        index.observe(&watcher::Event::Apply(qjob("a", "r", from_secret("two"))));
        index.observe(&watcher::Event::Delete(qjob("a", "r", from_secret("two"))));
        assert_eq!(
            names(index.referencing("a", ConfigKind::Secret, "two")),
            ["q"]
        );
        // A re-list without `q` (deleted while the watch was down) forgets it.
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(qjob(
            "a",
            "p",
            from_secret("two"),
        )));
        index.observe(&watcher::Event::InitDone);
        assert_eq!(
            names(index.referencing("a", ConfigKind::Secret, "two")),
            ["p"]
        );
        assert_eq!(index.len(), 1);
    }

    fn at(mut qjob: QuarksJob, uid: &str, generation: i64) -> QuarksJob {
        qjob.metadata.uid = Some(uid.to_owned());
        qjob.metadata.generation = Some(generation);
        qjob
    }

    #[test]
    fn a_template_is_read_again_only_when_the_generation_or_the_object_changed() {
        let index = QuarksJobIndex::default();
        let observe = |q: QuarksJob| index.observe(&watcher::Event::Apply(q));
        observe(at(qjob("a", "q", from_secret("one")), "u1", 1));
        // The API server moves the generation with every spec change; at the same one, the
        // spec is the same (a status write's event), and the template is not decoded again.
        observe(at(qjob("a", "q", from_secret("unseen")), "u1", 1));
        assert_eq!(
            names(index.referencing("a", ConfigKind::Secret, "one")),
            ["q"]
        );
        observe(at(qjob("a", "q", from_secret("two")), "u1", 2));
        assert!(index.referencing("a", ConfigKind::Secret, "one").is_empty());
        assert_eq!(
            names(index.referencing("a", ConfigKind::Secret, "two")),
            ["q"]
        );
        // A namesake re-created (its deletion unseen) starts at generation 2 again, too.
        observe(at(qjob("a", "q", from_secret("three")), "u2", 2));
        assert!(index.referencing("a", ConfigKind::Secret, "two").is_empty());
        assert_eq!(
            names(index.referencing("a", ConfigKind::Secret, "three")),
            ["q"]
        );
        // With the same keys, the new object's generation is remembered all the same.
        observe(at(qjob("a", "q", from_secret("three")), "u3", 1));
        observe(at(qjob("a", "q", from_secret("four")), "u3", 2));
        assert_eq!(
            names(index.referencing("a", ConfigKind::Secret, "four")),
            ["q"]
        );
    }
}
