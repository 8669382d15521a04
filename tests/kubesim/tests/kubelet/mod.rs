//! Tests of kubesim's kubelet and Job controller.
//!
//! `isolation` starts real container processes from mount plans (no API server needed);
//! the other modules drive whole pods and Jobs through the API of an in-process kubesim.

mod cluster;
mod faults;
mod isolation;
mod jobs;
mod pods;
