//! Prometheus metrics of the operator. Names follow controller-runtime's where one exists, so
//! existing dashboards work; labels never name individual objects.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub controller: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub world: &'static str,
    /// The module's digest (`sha256:…`): bounded by the number of distinct modules in use.
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyErrorLabels {
    pub world: &'static str,
    pub code: &'static str,
    /// The module's digest, or `unresolved` when the selection named nothing usable.
    pub policy: String,
}

/// `rest_client_requests_total`: every API request of the operator by method and code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The response's status code, or `error` when no response came (connection failures).
    pub code: String,
}

pub type RequestCounter = Family<RequestLabels, Counter>;

pub const CONTROLLER: &str = "quarksjob";

pub struct Metrics {
    pub registry: Registry,
    pub reconcile_total: Family<ReconcileLabels, Counter>,
    pub reconcile_errors_total: Family<ControllerLabels, Counter>,
    pub reconcile_time_seconds: Family<ControllerLabels, Histogram>,
    pub runs_started_total: Counter,
    pub runs_succeeded_total: Counter,
    pub runs_failed_total: Counter,
    pub policy_call_seconds: Family<PolicyLabels, Histogram>,
    pub policy_errors_total: Family<PolicyErrorLabels, Counter>,
    pub rest_client_requests_total: RequestCounter,
    /// `quarks_job_namespaces_unbound`: labelled namespaces the operator has no rights in.
    pub namespaces_unbound: Gauge,
    /// `quarks_job_namespaces_watched`: namespaces whose ConfigMaps, Secrets and Jobs are
    /// watched (the monitored ones).
    pub namespaces_watched: Gauge,
    /// `quarks_job_config_events_total`: ConfigMap/Secret watch events (monitored namespaces
    /// only: nothing else is watched).
    pub config_events_total: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconcile_total = Family::<ReconcileLabels, Counter>::default();
        let reconcile_errors_total = Family::<ControllerLabels, Counter>::default();
        let reconcile_time_seconds =
            Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            });
        let policy_call_seconds = Family::<PolicyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_005, 2.0, 18))
        });
        let policy_errors_total = Family::<PolicyErrorLabels, Counter>::default();
        let runs_started_total = Counter::default();
        let runs_succeeded_total = Counter::default();
        let runs_failed_total = Counter::default();
        registry.register(
            "controller_runtime_reconcile",
            "Reconciliations per controller and result",
            reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Reconciliation errors per controller",
            reconcile_errors_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Time per reconciliation",
            reconcile_time_seconds.clone(),
        );
        registry.register(
            "quarks_job_runs_started",
            "Jobs started for QuarksJobs",
            runs_started_total.clone(),
        );
        registry.register(
            "quarks_job_runs_succeeded",
            "Runs whose Job succeeded",
            runs_succeeded_total.clone(),
        );
        registry.register(
            "quarks_job_runs_failed",
            "Runs whose Job failed",
            runs_failed_total.clone(),
        );
        registry.register(
            "quarks_job_policy_call_seconds",
            "Time per policy call, by world and policy digest (its count is the number of calls)",
            policy_call_seconds.clone(),
        );
        registry.register(
            "quarks_job_policy_errors",
            "Policy call failures, by world and error code",
            policy_errors_total.clone(),
        );
        let rest_client_requests_total = RequestCounter::default();
        registry.register(
            "rest_client_requests",
            "API requests of the operator, by HTTP method and response code",
            rest_client_requests_total.clone(),
        );
        let namespaces_unbound = Gauge::default();
        registry.register(
            "quarks_job_namespaces_unbound",
            "Namespaces labelled for this operator where it lacks rights (no RoleBinding to its namespace ClusterRole)",
            namespaces_unbound.clone(),
        );
        let namespaces_watched = Gauge::default();
        registry.register(
            "quarks_job_namespaces_watched",
            "Monitored namespaces whose ConfigMaps, Secrets and Jobs are watched",
            namespaces_watched.clone(),
        );
        let config_events_total = Counter::default();
        registry.register(
            "quarks_job_config_events",
            "ConfigMap and Secret watch events received (from monitored namespaces only)",
            config_events_total.clone(),
        );
        Metrics {
            registry,
            namespaces_unbound,
            namespaces_watched,
            config_events_total,
            rest_client_requests_total,
            reconcile_total,
            reconcile_errors_total,
            reconcile_time_seconds,
            runs_started_total,
            runs_succeeded_total,
            runs_failed_total,
            policy_call_seconds,
            policy_errors_total,
        }
    }
}

impl Metrics {
    pub fn observe_reconcile(&self, took: Duration, ok: bool) {
        let controller = CONTROLLER;
        self.reconcile_time_seconds
            .get_or_create(&ControllerLabels { controller })
            .observe(took.as_secs_f64());
        let result = if ok { "success" } else { "error" };
        self.reconcile_total
            .get_or_create(&ReconcileLabels { controller, result })
            .inc();
        if !ok {
            self.reconcile_errors_total
                .get_or_create(&ControllerLabels { controller })
                .inc();
        }
    }

    /// The text exposition format served at /metrics.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
