//! Persisted output (spec.md §4–§5): files the containers of a run write to /mnt/quarks become
//! Secrets.
//!
//! * [`pod`] — pure: adds the output volumes and the helper container to a run's pod;
//! * [`staging`] — pure: the staging Secret the helper hands the raw files over in, and how
//!   the operator tells a real hand-over from a forged one;
//! * [`handover`] — API effects: the run's hand-over Secret, the helper container's only
//!   credentials;
//! * [`persist`] — the helper itself (`quarks-job persist-output`), running in the Job's pod;
//! * [`files`] — pure: manifest + `outputMap` → policy inputs; policy results → outcomes and
//!   the Secrets to write;
//! * [`problem`] — pure: [`problem::OutputProblem`], every reason a file writes nothing;
//! * [`validate`] — pure: what the host refuses from an output policy;
//! * [`write`] — API effects: staging Secret → output policy → validated Secrets, versioned
//!   where asked.

pub mod files;
pub mod handover;
pub mod persist;
pub mod pod;
pub mod problem;
pub mod staging;
pub mod validate;
pub mod write;

/// Where containers write output files, in their own container.
pub const OUTPUT_DIR: &str = "/mnt/quarks";
