//! `output-default`: the built-in output policy, implementing spec.md §4.
//!
//! * `outputType` must be `json`; anything else is an error (`UnsupportedOutputType`).
//! * A container that exited non-zero writes nothing (`ContainerFailed`) unless
//!   `writeOnFailure` is set; any non-zero code counts, not only 1.
//! * `one-to-one`: one Secret named `name` whose data is the file's flat JSON object of
//!   strings. An empty object `{}` gives one Secret with no data: the container said "no
//!   values", and the Secret's existence (and labels) still tell consumers the run happened.
//! * `fan-out`: the file is a flat object whose every value is a string holding a
//!   JSON-encoded flat object; key `k` becomes Secret `<name>-<k>`. Every value must have
//!   that shape (a bad one fails the whole file rather than silently dropping Secrets);
//!   `{}` gives no Secrets (`NothingToFanOut`).
//! * labels: `output.secretLabels`, then the file's `secretLabels`, then
//!   `quarks.cloudfoundry.org/container-name=<container>`, then
//!   `quarks.cloudfoundry.org/remote-id=<REMOTE_ID>` when set; a later layer wins for a
//!   duplicate key (which keeps its first position). Annotations: the file's
//!   `secretAnnotations`. `versioned` is passed through.
//! * errors write nothing for the file: `InvalidJson` (not UTF-8, syntax, duplicate key),
//!   `NotFlat` (not an object, a value that is not a string), `InvalidSecretKey`,
//!   `InvalidSecretName` (not a DNS subdomain), `TooLarge` (more than 1 MiB of data in one
//!   Secret, Kubernetes' limit: the sum of the value sizes), `InvalidLabel` (a label key or
//!   value Kubernetes rejects, e.g. a `REMOTE_ID` with spaces), `InvalidAnnotation`.
//!
//! Messages name keys and Secrets but never values: values are Secret data. The logic is
//! [`transform`], a plain function unit-tested natively; the WebAssembly export delegates.

// No std: the component then imports nothing but the contract (see the SDK docs).
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use quarks_policy_sdk::Reason;
use quarks_policy_sdk::flat_json::{FlatObject, parse_flat_object, parse_flat_object_str};
use quarks_policy_sdk::names::{
    NameKind, sanitize_subdomain, validate_dns_subdomain, validate_label_value,
    validate_qualified_name, validate_secret_key,
};
use quarks_policy_sdk::output::{Guest, OutputInput, OutputResult, PersistenceMethod, SecretSpec};
use quarks_policy_sdk::string_map;
use quarks_policy_sdk::types::StringMap;

/// The only output type the spec knows.
pub const OUTPUT_TYPE_JSON: &str = "json";
/// Kubernetes' limit on the data of one Secret (the sum of its values), in bytes.
pub const MAX_SECRET_DATA_BYTES: usize = 1024 * 1024;
/// Kubernetes' limit on the total size of an object's annotations (keys and values).
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;
/// Label naming the container that wrote the output.
pub const CONTAINER_NAME_LABEL: &str = "quarks.cloudfoundry.org/container-name";
/// Label carrying the container's `REMOTE_ID` environment variable.
pub const REMOTE_ID_LABEL: &str = "quarks.cloudfoundry.org/remote-id";

/// The exported policy.
pub struct OutputDefault;

impl Guest for OutputDefault {
    fn transform(input: OutputInput) -> Result<OutputResult, Reason> {
        transform(&input)
    }
}

#[cfg(all(target_arch = "wasm32", feature = "component"))]
quarks_policy_sdk::export_output!(OutputDefault);

// The no_std runtime (allocator, panic handler) also serves policies that use this crate as a
// library: a component has exactly one, so they do not declare their own.
quarks_policy_sdk::no_std_runtime!();

/// The Secrets of spec.md §4 for one output file.
pub fn transform(input: &OutputInput) -> Result<OutputResult, Reason> {
    if input.output.output_type != OUTPUT_TYPE_JSON {
        return Err(Reason::new(
            "UnsupportedOutputType",
            format!(
                "outputType {:?} is not supported; the only output type is {OUTPUT_TYPE_JSON:?}",
                input.output.output_type
            ),
        ));
    }
    if input.exit_code != 0 && !input.output.write_on_failure {
        return Ok(OutputResult {
            secrets: Vec::new(),
            reasons: vec![Reason::new(
                "ContainerFailed",
                format!(
                    "container {:?} exited with code {} and writeOnFailure is false: nothing written for {:?}",
                    input.container, input.exit_code, input.file_name
                ),
            )],
        });
    }
    // Named as the original named it (`DB_PASSWORD` → `db-password`), then checked.
    let name = sanitize_subdomain(&input.file.name);
    validate_dns_subdomain(&name).map_err(Reason::from)?;

    let labels = labels(input)?;
    let annotations = annotations(input)?;
    let meta = Meta {
        labels: &labels,
        annotations: &annotations,
    };
    let mut reasons = Vec::new();
    let secrets = match input.file.persistence_method {
        PersistenceMethod::OneToOne => {
            let entries = parse_flat_object(&input.content).map_err(Reason::from)?;
            let secret = secret(input, name, entries, &meta)?;
            reasons.push(Reason::new(
                "OneToOne",
                format!(
                    "{:?} becomes Secret {:?} with {} keys",
                    input.file_name,
                    secret.name,
                    secret.data.len()
                ),
            ));
            vec![secret]
        }
        PersistenceMethod::FanOut => {
            let secrets = fan_out(input, &name, &meta)?;
            reasons.push(if secrets.is_empty() {
                Reason::new(
                    "NothingToFanOut",
                    format!("{:?} is an empty object: no Secrets", input.file_name),
                )
            } else {
                Reason::new(
                    "FanOut",
                    format!(
                        "{:?} becomes {} Secrets: {}",
                        input.file_name,
                        secrets.len(),
                        listed_names(&secrets)
                    ),
                )
            });
            secrets
        }
    };
    if input.exit_code != 0 {
        reasons.push(Reason::new(
            "WrittenOnFailure",
            format!(
                "container {:?} exited with code {}; output written because writeOnFailure is true",
                input.container, input.exit_code
            ),
        ));
    }
    Ok(OutputResult { secrets, reasons })
}

/// Labels in spec order; later layers win. Every key and value must be valid, so that a
/// bad `REMOTE_ID` or label is reported as such rather than as a failed Secret write.
fn labels(input: &OutputInput) -> Result<StringMap, Reason> {
    let mut labels = string_map::merge([&input.output.secret_labels, &input.file.secret_labels]);
    string_map::set(&mut labels, CONTAINER_NAME_LABEL, input.container.as_str());
    if let Some(remote_id) = &input.remote_id {
        validate_label_value(remote_id).map_err(|error| {
            Reason::new(
                error.code(),
                format!(
                    "the REMOTE_ID of container {:?} cannot be the value of label {REMOTE_ID_LABEL}: {error}",
                    input.container
                ),
            )
        })?;
        string_map::set(&mut labels, REMOTE_ID_LABEL, remote_id.as_str());
    }
    for (key, value) in &labels {
        validate_qualified_name(NameKind::LabelKey, key).map_err(Reason::from)?;
        validate_label_value(value)
            .map_err(|error| Reason::new(error.code(), format!("label {key:?}: {error}")))?;
    }
    Ok(labels)
}

/// The file's annotations, checked: valid keys and at most 256 KiB in total, as Kubernetes
/// requires. Values are not quoted in messages.
fn annotations(input: &OutputInput) -> Result<StringMap, Reason> {
    let annotations = &input.file.secret_annotations;
    if let Some(key) = string_map::first_duplicate_key(annotations) {
        return Err(Reason::new(
            "InvalidAnnotation",
            format!("annotation {key:?} is given more than once"),
        ));
    }
    let mut size = 0usize;
    for (key, value) in annotations {
        validate_qualified_name(NameKind::AnnotationKey, key).map_err(Reason::from)?;
        size += key.len() + value.len();
    }
    if size > MAX_ANNOTATIONS_BYTES {
        return Err(Reason::new(
            "InvalidAnnotation",
            format!(
                "annotations take {size} bytes, more than the {MAX_ANNOTATIONS_BYTES} bytes (256 KiB) Kubernetes allows"
            ),
        ));
    }
    Ok(annotations.clone())
}

/// How many Secret names a reason lists (a reason message is bounded; the status records
/// every name written anyway).
const NAMES_IN_REASON: usize = 10;

/// The first names of `secrets`, and how many more there are.
fn listed_names(secrets: &[SecretSpec]) -> String {
    let mut listed = secrets
        .iter()
        .take(NAMES_IN_REASON)
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if secrets.len() > NAMES_IN_REASON {
        listed.push_str(&format!(" and {} more", secrets.len() - NAMES_IN_REASON));
    }
    listed
}

/// One Secret `<name>-<k>` per top-level key `k` (sanitised as the original did).
fn fan_out(input: &OutputInput, prefix: &str, meta: &Meta<'_>) -> Result<Vec<SecretSpec>, Reason> {
    let outer = parse_flat_object(&input.content).map_err(Reason::from)?;
    let mut secrets = Vec::with_capacity(outer.len());
    for (key, encoded) in outer {
        let name = sanitize_subdomain(&format!("{prefix}-{key}"));
        validate_dns_subdomain(&name).map_err(|error| {
            Reason::new(
                error.code(),
                format!("fan-out key {key:?} gives an invalid Secret name: {error}"),
            )
        })?;
        let entries = parse_flat_object_str(&encoded).map_err(|error| {
            Reason::new(
                error.code(),
                format!(
                    "fan-out key {key:?}: the value must be a string holding a JSON-encoded flat object: {error}"
                ),
            )
        })?;
        secrets.push(secret(input, name, entries, meta)?);
    }
    Ok(secrets)
}

/// The metadata every Secret of one file shares.
struct Meta<'a> {
    labels: &'a StringMap,
    annotations: &'a StringMap,
}

fn secret(
    input: &OutputInput,
    name: String,
    entries: FlatObject,
    meta: &Meta<'_>,
) -> Result<SecretSpec, Reason> {
    let mut size = 0usize;
    for (key, value) in &entries {
        validate_secret_key(key)
            .map_err(|error| Reason::new(error.code(), format!("Secret {name:?}: {error}")))?;
        size += value.len();
    }
    if size > MAX_SECRET_DATA_BYTES {
        return Err(Reason::new(
            "TooLarge",
            format!(
                "Secret {name:?} would hold {size} bytes of data, more than the {MAX_SECRET_DATA_BYTES} bytes (1 MiB) a Secret can hold"
            ),
        ));
    }
    Ok(SecretSpec {
        name,
        data: entries
            .into_iter()
            .map(|(key, value)| (key, value.into_bytes()))
            .collect(),
        labels: meta.labels.clone(),
        annotations: meta.annotations.clone(),
        versioned: input.file.versioned,
    })
}

#[cfg(test)]
mod tests;
