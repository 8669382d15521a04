//! The namespaces this operator acts in: those labelled
//! `quarks.cloudfoundry.org/monitored=<monitored-id>` (tracked live by a label-selected watch,
//! so a namespace labelled later is picked up without a restart) *and* where it has rights: a
//! RoleBinding there to its namespace ClusterRole (`--namespace-cluster-role`). A labelled
//! namespace whose watches are refused (403) is *unbound*: a Warning Event on the Namespace,
//! `quarks_job_namespaces_unbound`, and `Ready=False, NamespaceNotBound` on its QuarksJobs with
//! the command that binds it. Once the RoleBinding exists the watches start and the namespace is
//! acted in ([`crate::reconcile::context::MonitoredNamespaces`] is the reconciles' view).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use crate::crd::QuarksJob;
use crate::metrics::Metrics;
use crate::names::MONITORED_LABEL;
use crate::reconcile::context::{Context, MonitoredNamespaces};
use crate::reconcile::status::{ConditionType, condition, set_condition};
use crate::reconcile::{self, ReconcileError};

/// The label selector for the namespaces of one operator.
pub fn monitored_selector(monitored_id: &str) -> String {
    format!("{MONITORED_LABEL}={monitored_id}")
}

/// The condition reason of a QuarksJob in a labelled namespace the operator has no rights in.
pub const NOT_BOUND: &str = "NamespaceNotBound";

/// Where the operator stands in one monitored namespace.
#[derive(Clone, Debug, PartialEq)]
pub enum Access {
    /// Watches started, not all listed yet.
    Pending,
    /// Every watch listed: the operator acts here.
    Bound,
    /// A watch was refused; the message says what and how to bind.
    Unbound(String),
}

/// The monitored namespaces' [`Access`], the reconciles' view of it and its metrics.
pub struct NamespaceAccess {
    states: Mutex<HashMap<String, Access>>,
    acting: MonitoredNamespaces,
    metrics: Arc<Metrics>,
    /// `--namespace-cluster-role`, `--operator-namespace`, `--service-account`.
    cluster_role: String,
    operator_namespace: String,
    service_account: String,
}

impl NamespaceAccess {
    pub fn new(
        acting: MonitoredNamespaces,
        metrics: Arc<Metrics>,
        config: &super::OperatorConfig,
    ) -> Self {
        NamespaceAccess {
            states: Mutex::default(),
            acting,
            metrics,
            cluster_role: config.namespace_cluster_role.clone(),
            operator_namespace: config.operator_namespace.clone(),
            service_account: config.service_account.clone(),
        }
    }

    /// Sets the access of `namespace` (`None`: no longer monitored). Returns whether it changed.
    pub fn set(&self, namespace: &str, access: Option<Access>) -> bool {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let changed = match &access {
            Some(a) => states.insert(namespace.to_owned(), a.clone()).as_ref() != Some(a),
            None => states.remove(namespace).is_some(),
        };
        self.acting
            .set(namespace, access.as_ref() == Some(&Access::Bound));
        let unbound = states
            .values()
            .filter(|a| matches!(a, Access::Unbound(_)))
            .count();
        self.metrics
            .namespaces_unbound
            .set(i64::try_from(unbound).unwrap_or(i64::MAX));
        self.metrics
            .namespaces_watched
            .set(i64::try_from(states.len()).unwrap_or(i64::MAX));
        changed
    }

    /// Why the operator cannot act in `namespace`, when a watch there was refused.
    pub fn unbound(&self, namespace: &str) -> Option<String> {
        match self
            .states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(namespace)
        {
            Some(Access::Unbound(message)) => Some(message.clone()),
            _ => None,
        }
    }

    /// The message of an unbound namespace: what was refused, and the one command that binds it.
    pub fn not_bound_message(&self, namespace: &str, refused: &str) -> String {
        let role = &self.cluster_role;
        format!(
            "the operator has no rights in namespace {namespace} ({refused} refused): bind the ClusterRole {role} to its ServiceAccount there: kubectl -n {namespace} create rolebinding quarks-job --clusterrole={role} --serviceaccount={}:{}",
            self.operator_namespace, self.service_account
        )
    }
}

/// The controller's reconcile: a QuarksJob in an unbound namespace gets `Ready=False,
/// NamespaceNotBound` (its status is writable cluster-wide) and waits for the binding; every
/// other one is reconciled as usual.
pub async fn reconcile(
    qjob: Arc<QuarksJob>,
    ctx: Arc<Context>,
    access: Arc<NamespaceAccess>,
) -> Result<Action, ReconcileError> {
    let namespace = qjob.namespace().unwrap_or_default();
    match access.unbound(&namespace) {
        Some(message) if qjob.meta().deletion_timestamp.is_none() => {
            mark_not_bound(&ctx, &qjob, &message).await?;
            Ok(Action::await_change())
        }
        _ => reconcile::reconcile(qjob, ctx).await,
    }
}

/// Sets `Ready=False, NamespaceNotBound` on `qjob`, keeping the rest of its status (the whole
/// status is applied, by the same field manager as every other status write).
async fn mark_not_bound(
    ctx: &Context,
    qjob: &QuarksJob,
    message: &str,
) -> Result<(), ReconcileError> {
    let current = qjob.status.as_ref();
    if condition(current, ConditionType::Ready)
        .is_some_and(|c| c.status == "False" && c.reason == NOT_BOUND && c.message == message)
    {
        return Ok(());
    }
    let mut status = current.cloned().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    set_condition(
        &mut status,
        ConditionType::Ready,
        false,
        NOT_BOUND,
        message,
        qjob.metadata.generation,
        &now,
    );
    reconcile::apply::write_status_if_changed(ctx, qjob, &status).await
}
