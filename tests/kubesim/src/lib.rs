
pub mod job_controller;
pub mod kubelet;
