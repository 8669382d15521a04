//! `kubesim node` as the node of a real control plane (kube-apiserver and
//! kube-controller-manager v1.24 from `<repo>/../shared/k8s/control-plane`): the real Job
//! controller, ServiceAccount admission, TokenRequest/TokenReview and `kubectl logs` through
//! the API server. Each test starts its own control plane and node process.
//!
//! The tests fail when the control plane is missing, unless
//! `KUBESIM_REAL_CLUSTER_TESTS=off` says they are off (then they pass without running).

mod node {
    pub mod harness;
    mod jobs;
    mod tokens;
}
