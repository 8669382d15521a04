//! Publishing Events (`events.k8s.io/v1`), a repeated one folded into a series as
//! kube-runtime's `Recorder` does: the same Event (type, reason, action, the object and field it
//! is about, the related object) again within [`SERIES_WINDOW`] patches the first one's
//! `series` (count, last observed) instead of creating another object.
//!
//! Written here rather than using `kube::runtime::events::Recorder` because of its cost at
//! scale: it keeps every Event it published in the last 6 minutes, whole, and scans all of them
//! on every publish under one lock — quadratic in the Events per 6 minutes (a run publishes at
//! least one), and about 1 KiB of memory per Event. This keeps what a series needs (the Event's
//! name, the count, when it was last seen) under a hash of the key, about 100 bytes, and prunes
//! expired entries when the map has doubled (O(1) per Event, amortised). Its input types are
//! kube-runtime's (`Event`, `EventType`, `Reporter`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
pub use kube::runtime::events::{Event, EventType, Reporter};

/// How long a repeated Event joins the series of the first (kube-runtime's window).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// Series are not pruned before there are this many.
const PRUNED_FROM: usize = 1024;

pub struct Recorder {
    client: kube::Client,
    reporter: Reporter,
    series: Mutex<SeriesCache>,
}

/// What publishing an Event takes.
#[derive(Debug, PartialEq, Eq)]
enum Publication {
    /// A new Event object of this name.
    Create { name: String },
    /// Event `name` repeated: its series now counts `count`.
    Repeat { name: String, count: i32 },
}

/// The Events of the last [`SERIES_WINDOW`] by a hash of their key.
struct SeriesCache {
    by_key: HashMap<u64, Seen>,
    prune_at: usize,
}

struct Seen {
    name: String,
    /// Occurrences, the first included.
    count: i32,
    last: Instant,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache {
            by_key: HashMap::new(),
            prune_at: PRUNED_FROM,
        }
    }
}

impl SeriesCache {
    /// Records an Event with `key` at `now`; `new_name` names it when it starts a series.
    fn publish(
        &mut self,
        key: u64,
        now: Instant,
        new_name: impl FnOnce() -> String,
    ) -> Publication {
        if self.by_key.len() >= self.prune_at {
            self.by_key
                .retain(|_, seen| now.duration_since(seen.last) < SERIES_WINDOW);
            self.prune_at = (2 * self.by_key.len()).max(PRUNED_FROM);
        }
        match self.by_key.get_mut(&key) {
            Some(seen) if now.duration_since(seen.last) < SERIES_WINDOW => {
                seen.count = seen.count.saturating_add(1);
                seen.last = now;
                Publication::Repeat {
                    name: seen.name.clone(),
                    count: seen.count,
                }
            }
            _ => {
                let name = new_name();
                self.by_key.insert(
                    key,
                    Seen {
                        name: name.clone(),
                        count: 1,
                        last: now,
                    },
                );
                Publication::Create { name }
            }
        }
    }

    /// Starts the series of `key` anew as Event `name` (the old one is gone from the API
    /// server).
    fn restart(&mut self, key: u64, name: String, now: Instant) {
        let seen = Seen {
            name,
            count: 1,
            last: now,
        };
        self.by_key.insert(key, seen);
    }
}

/// What makes two Events the same, hashed: type, reason, action, reporter, the object (with
/// its field path: Events about different output files stay apart) and the related object.
fn series_key(reporter: &Reporter, event: &Event, regarding: &ObjectReference) -> u64 {
    fn reference(r: &ObjectReference, hasher: &mut impl Hasher) {
        (
            &r.api_version,
            &r.kind,
            &r.namespace,
            &r.name,
            &r.uid,
            &r.field_path,
        )
            .hash(hasher);
    }
    let mut hasher = std::hash::DefaultHasher::new();
    (event.type_, &event.reason, &event.action).hash(&mut hasher);
    (&reporter.controller, &reporter.instance).hash(&mut hasher);
    reference(regarding, &mut hasher);
    if let Some(related) = &event.secondary {
        reference(related, &mut hasher);
    }
    hasher.finish()
}

impl Recorder {
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        Recorder {
            client,
            reporter,
            series: Mutex::default(),
        }
    }

    /// Publishes `event` about `regarding` (in its namespace, `default` for cluster-scoped
    /// objects): a new Event object, or the series of the same Event published shortly before.
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = series_key(&self.reporter, event, regarding);
        let now = Timestamp::now();
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let new_name = || {
            let about = regarding.name.as_deref();
            let about = about.unwrap_or(&self.reporter.controller);
            format!("{about}.{:x}", now.as_nanosecond())
        };
        // (The lock is not held across the requests.)
        let publication = self.lock().publish(key, Instant::now(), new_name);
        let name = match publication {
            Publication::Create { name } => name,
            Publication::Repeat { name, count } => {
                let series = serde_json::json!({
                    "series": {"count": count, "lastObservedTime": MicroTime(now)},
                });
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                    .await
                {
                    Ok(_) => return Ok(()),
                    // Expired on the server (Events live an hour by default): start anew.
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        let name = new_name();
                        self.lock().restart(key, name.clone(), Instant::now());
                        name
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        api.create(
            &PostParams::default(),
            &self.event(event, regarding, name, now),
        )
        .await?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SeriesCache> {
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Event object, as kube-runtime's Recorder fills it.
    fn event(
        &self,
        event: &Event,
        regarding: &ObjectReference,
        name: String,
        now: Timestamp,
    ) -> K8sEvent {
        K8sEvent {
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            note: event.note.clone(),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(name),
                ..Default::default()
            },
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> impl FnOnce() -> String + '_ {
        move || n.to_owned()
    }

    #[test]
    fn the_same_event_again_within_the_window_repeats_the_series() {
        let mut cache = SeriesCache::default();
        let t0 = Instant::now();
        assert_eq!(
            cache.publish(1, t0, name("a")),
            Publication::Create { name: "a".into() }
        );
        assert_eq!(
            cache.publish(1, t0 + Duration::from_secs(60), name("b")),
            Publication::Repeat {
                name: "a".into(),
                count: 2
            }
        );
        assert_eq!(
            cache.publish(2, t0, name("c")),
            Publication::Create { name: "c".into() },
            "another key, another Event"
        );
        // The window counts from the last occurrence.
        assert_eq!(
            cache.publish(1, t0 + Duration::from_secs(60) + SERIES_WINDOW, name("d")),
            Publication::Create { name: "d".into() }
        );
        cache.restart(2, "e".into(), t0);
        assert_eq!(
            cache.publish(2, t0, name("f")),
            Publication::Repeat {
                name: "e".into(),
                count: 2
            },
            "a restarted series counts from one"
        );
    }

    #[test]
    fn expired_series_are_pruned_so_the_cache_stays_bounded() {
        let mut cache = SeriesCache::default();
        let t0 = Instant::now();
        for key in 0..(10 * PRUNED_FROM as u64) {
            // One Event per 100 ms: at most a window's worth (3 600) stays.
            let at = t0 + Duration::from_millis(100 * key);
            cache.publish(key, at, || key.to_string());
        }
        let window_worth = (SERIES_WINDOW.as_millis() / 100) as usize;
        assert!(
            cache.by_key.len() <= 2 * window_worth,
            "{} series kept",
            cache.by_key.len()
        );
    }

    #[test]
    fn the_key_tells_field_paths_and_related_objects_apart() {
        let reporter = Reporter {
            controller: "quarks-job".into(),
            instance: None,
        };
        let event = |related: Option<&str>| Event {
            type_: EventType::Warning,
            reason: "OutputRejected".into(),
            note: Some("x".into()),
            action: "Output".into(),
            secondary: related.map(|name| ObjectReference {
                name: Some(name.into()),
                ..Default::default()
            }),
        };
        let about = |field: Option<&str>| ObjectReference {
            name: Some("q".into()),
            field_path: field.map(str::to_owned),
            ..Default::default()
        };
        let key = |e: &Event, r: &ObjectReference| series_key(&reporter, e, r);
        assert_eq!(
            key(&event(None), &about(None)),
            key(&event(None), &about(None))
        );
        assert_ne!(
            key(&event(None), &about(Some("a"))),
            key(&event(None), &about(Some("b")))
        );
        assert_ne!(
            key(&event(Some("s1")), &about(None)),
            key(&event(Some("s2")), &about(None))
        );
        let mut noted = event(None);
        noted.note = Some("another note".into());
        assert_eq!(
            key(&noted, &about(None)),
            key(&event(None), &about(None)),
            "the note is not part of the key (a series keeps the first note)"
        );
    }
}
