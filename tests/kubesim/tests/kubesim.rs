//! kubesim integration tests: one binary; each test starts its own in-process KubeSim
//! (milliseconds) and talks to it over HTTP with the real kube client or the real kubectl.

mod api;
mod kubelet;
