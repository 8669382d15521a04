//! Tests of kubesim's API server, one module per area.

mod binary;
mod common;
mod crd;
mod crud;
mod discovery;
mod faults;
mod gc;
mod kubectl;
mod list;
mod logs;
mod patch;
mod rbac;
mod watch;
