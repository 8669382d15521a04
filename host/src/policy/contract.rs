//! The policy contract as the host sees it: plain Rust types mirroring the records of
//! `wit/policy.wit`, with a JSON form (kebab-case names, as in the WIT) for
//! `quarks-job policy run` and `policy test`.
//!
//! The engine converts these to and from the generated component bindings; nothing else in
//! the host touches the bindings. File contents and Secret data are bytes: in JSON they are a
//! string when they are UTF-8 text, else `{"base64": "..."}`.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub use crate::crd::Strategy;

/// Why a policy decided what it decided.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    /// CamelCase code, e.g. `StrategyNow`.
    pub code: String,
    /// A sentence for humans.
    pub message: String,
}

impl Reason {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Reason {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// How a finished Job ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum JobOutcome {
    Succeeded,
    Failed,
}

/// What happened that made the host ask the trigger policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum TriggerEvent {
    Created,
    SpecChanged,
    StrategyChanged { previous: Strategy },
    ConfigChanged,
    JobFinished { outcome: JobOutcome },
    Resync,
}

/// The parts of a QuarksJob a trigger decision may depend on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct QuarksJobView {
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub generation: i64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub strategy: Strategy,
    #[serde(default)]
    pub update_on_config_change: bool,
    #[serde(default)]
    pub completed: bool,
    #[serde(default)]
    pub run_count: u64,
    /// The whole spec (passed to the policy as JSON text).
    #[serde(default)]
    pub spec: serde_json::Value,
}

/// Input of `trigger-policy.decide`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct TriggerInput {
    pub event: TriggerEvent,
    pub quarks_job: QuarksJobView,
    #[serde(default)]
    pub config_digest_now: Option<String>,
    #[serde(default)]
    pub config_digest_last_run: Option<String>,
    #[serde(default)]
    pub missing_config: Vec<String>,
    #[serde(default)]
    pub run_active: bool,
}

/// Output of `trigger-policy.decide`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct TriggerDecision {
    pub run: bool,
    pub write_strategy: Option<Strategy>,
    pub reasons: Vec<Reason>,
}

/// `persistencemethod` of an output file.
pub use crate::crd::PersistenceMethod;

/// `spec.output.outputMap[container][file]`, as the policy sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct FileOptions {
    pub name: String,
    #[serde(default)]
    pub secret_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub secret_annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub versioned: bool,
    #[serde(default)]
    pub persistence_method: PersistenceMethod,
}

/// The QuarksJob-wide part of `spec.output`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct OutputOptions {
    #[serde(default = "default_output_type")]
    pub output_type: String,
    #[serde(default)]
    pub secret_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub write_on_failure: bool,
}

fn default_output_type() -> String {
    "json".to_owned()
}

/// Input of `output-policy.transform`: one file of one container.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct OutputInput {
    pub quarks_job_name: String,
    pub namespace: String,
    pub output: OutputOptions,
    pub container: String,
    #[serde(default)]
    pub remote_id: Option<String>,
    pub file_name: String,
    pub file: FileOptions,
    pub content: Bytes,
    #[serde(default)]
    pub exit_code: i32,
}

/// One Secret an output policy asks the host to write.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct SecretSpec {
    pub name: String,
    pub data: BTreeMap<String, Bytes>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub versioned: bool,
}

/// Output of `output-policy.transform`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct OutputResult {
    pub secrets: Vec<SecretSpec>,
    pub reasons: Vec<Reason>,
}

/// Bytes that read as a string in JSON when they are UTF-8, else as `{"base64": "..."}`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    // Never print the content: it may be Secret data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl From<&str> for Bytes {
    fn from(s: &str) -> Self {
        Bytes(s.as_bytes().to_vec())
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => {
                let mut map = BTreeMap::new();
                map.insert(
                    "base64",
                    base64::engine::general_purpose::STANDARD.encode(&self.0),
                );
                map.serialize(serializer)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Encoded { base64: String },
        }
        match Repr::deserialize(deserializer)? {
            Repr::Text(text) => Ok(Bytes(text.into_bytes())),
            Repr::Encoded { base64 } => base64::engine::general_purpose::STANDARD
                .decode(base64.as_bytes())
                .map(Bytes)
                .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_text_when_utf8_and_base64_otherwise() {
        let text = serde_json::to_string(&Bytes::from("héllo")).unwrap();
        assert_eq!(text, "\"héllo\"");
        let binary = serde_json::to_string(&Bytes(vec![0xff, 0x00])).unwrap();
        assert_eq!(binary, r#"{"base64":"/wA="}"#);
        let back: Bytes = serde_json::from_str(&binary).unwrap();
        assert_eq!(back.0, vec![0xff, 0x00]);
    }

    #[test]
    fn bytes_debug_never_shows_content() {
        assert_eq!(format!("{:?}", Bytes::from("secret")), "Bytes(6 bytes)");
    }

    #[test]
    fn trigger_input_reads_the_documented_json_form() {
        let input: TriggerInput = serde_json::from_str(
            r#"{"event": {"type": "strategy-changed", "previous": "manual"},
                "quarks-job": {"name": "errand", "namespace": "ns", "strategy": "now"},
                "run-active": false}"#,
        )
        .unwrap();
        assert_eq!(
            input.event,
            TriggerEvent::StrategyChanged {
                previous: Strategy::Manual
            }
        );
        assert_eq!(input.quarks_job.strategy, Strategy::Now);
        assert!(input.missing_config.is_empty());
    }
}
