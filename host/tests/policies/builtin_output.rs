//! spec.md §4 through the engine and the built-in `output-default` component.

use std::collections::BTreeMap;

use quarks_job::policy::PolicyError;
use quarks_job::policy::contract::{
    Bytes, FileOptions, OutputInput, OutputOptions, OutputResult, PersistenceMethod,
};

use super::{engine, output_default};

fn input(content: &[u8]) -> OutputInput {
    OutputInput {
        quarks_job_name: "output-job".into(),
        namespace: "staging".into(),
        output: OutputOptions {
            output_type: "json".into(),
            secret_labels: BTreeMap::from([("key".into(), "value".into())]),
            write_on_failure: false,
        },
        container: "busybox".into(),
        remote_id: None,
        file_name: "output.json".into(),
        file: FileOptions {
            name: "foo-json".into(),
            secret_labels: BTreeMap::new(),
            secret_annotations: BTreeMap::new(),
            versioned: false,
            persistence_method: PersistenceMethod::OneToOne,
        },
        content: Bytes(content.to_vec()),
        exit_code: 0,
    }
}

fn run(input: OutputInput) -> Result<OutputResult, PolicyError> {
    let engine = engine();
    let policy = output_default(&engine);
    engine.transform(&policy, input)
}

fn refused_code(result: Result<OutputResult, PolicyError>) -> String {
    match result {
        Err(PolicyError::Refused(reason)) => reason.code,
        other => panic!("expected the policy to refuse, got {other:?}"),
    }
}

fn text(bytes: &Bytes) -> &str {
    std::str::from_utf8(&bytes.0).unwrap()
}

#[test]
fn seed_example_becomes_secret_foo_json_with_labels() {
    let result = run(input(br#"{"foo": "1", "bar": "baz"}"#)).unwrap();
    assert_eq!(result.secrets.len(), 1);
    let secret = &result.secrets[0];
    assert_eq!(secret.name, "foo-json");
    assert_eq!(text(&secret.data["foo"]), "1");
    assert_eq!(text(&secret.data["bar"]), "baz");
    assert_eq!(secret.data.len(), 2);
    assert_eq!(secret.labels["key"], "value");
    assert_eq!(
        secret.labels["quarks.cloudfoundry.org/container-name"],
        "busybox"
    );
    assert!(!secret.versioned);
}

#[test]
fn fan_out_writes_one_secret_per_top_level_key() {
    let mut i =
        input(br#"{"alpha": "{\"user\": \"a\"}", "beta": "{\"user\": \"b\", \"pw\": \"x\"}"}"#);
    i.file.persistence_method = PersistenceMethod::FanOut;
    let result = run(i).unwrap();
    let names: Vec<&str> = result.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["foo-json-alpha", "foo-json-beta"]);
    assert_eq!(text(&result.secrets[1].data["pw"]), "x");
}

#[test]
fn versioned_flag_is_passed_through() {
    let mut i = input(br#"{"a": "b"}"#);
    i.file.versioned = true;
    assert!(run(i).unwrap().secrets[0].versioned);
}

#[test]
fn labels_apply_in_order_and_later_ones_win() {
    let mut i = input(br#"{"a": "b"}"#);
    i.output.secret_labels = BTreeMap::from([
        ("shared".into(), "from-output".into()),
        (
            "quarks.cloudfoundry.org/container-name".into(),
            "spoofed".into(),
        ),
    ]);
    i.file.secret_labels = BTreeMap::from([("shared".into(), "from-file".into())]);
    i.file.secret_annotations = BTreeMap::from([("note".into(), "hello".into())]);
    let secret = &run(i).unwrap().secrets[0];
    assert_eq!(secret.labels["shared"], "from-file");
    assert_eq!(
        secret.labels["quarks.cloudfoundry.org/container-name"],
        "busybox"
    );
    assert_eq!(secret.annotations["note"], "hello");
}

#[test]
fn remote_id_becomes_a_label() {
    let mut i = input(br#"{"a": "b"}"#);
    i.remote_id = Some("node-7".into());
    let secret = &run(i).unwrap().secrets[0];
    assert_eq!(secret.labels["quarks.cloudfoundry.org/remote-id"], "node-7");
}

#[test]
fn write_on_failure_covers_every_non_zero_exit_code() {
    for (exit_code, write_on_failure, expect_written) in [
        (0, false, true),
        (1, false, false),
        (3, false, false),
        (1, true, true),
        (3, true, true),
    ] {
        let mut i = input(br#"{"a": "b"}"#);
        i.exit_code = exit_code;
        i.output.write_on_failure = write_on_failure;
        let result = run(i).unwrap();
        assert_eq!(
            !result.secrets.is_empty(),
            expect_written,
            "exit {exit_code}, writeOnFailure {write_on_failure}: {result:?}"
        );
        if !expect_written {
            assert!(
                result.reasons.iter().any(|r| r.code == "ContainerFailed"),
                "{result:?}"
            );
        }
    }
}

#[test]
fn invalid_json_is_refused_with_position() {
    let result = run(input(b"{\"a\": \"b\",\n oops}"));
    let Err(PolicyError::Refused(reason)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(reason.code, "InvalidJson");
    assert!(reason.message.contains("line 2"), "{}", reason.message);
}

#[test]
fn nested_values_and_numbers_are_not_flat() {
    for content in [
        &br#"{"a": {"b": "c"}}"#[..],
        br#"{"a": 1}"#,
        br#"{"a": ["x"]}"#,
        br#"{"a": null}"#,
        br#"["a"]"#,
    ] {
        assert_eq!(
            refused_code(run(input(content))),
            "NotFlat",
            "{}",
            String::from_utf8_lossy(content)
        );
    }
}

#[test]
fn non_utf8_content_is_refused() {
    assert_eq!(
        refused_code(run(input(b"{\"a\": \"\xff\xfe\"}"))),
        "InvalidJson"
    );
}

#[test]
fn empty_object_is_one_secret_without_data() {
    let result = run(input(b"{}")).unwrap();
    assert_eq!(result.secrets.len(), 1);
    assert!(result.secrets[0].data.is_empty());
}

#[test]
fn keys_that_are_not_secret_keys_are_refused() {
    for content in [
        &br#"{"has space": "x"}"#[..],
        br#"{"slash/key": "x"}"#,
        br#"{"": "x"}"#,
    ] {
        assert_eq!(refused_code(run(input(content))), "InvalidSecretKey");
    }
}

#[test]
fn secret_names_that_are_not_dns_subdomains_once_sanitised_are_refused() {
    // Sanitised as the original did: `Not_A_Name` is Secret `not-a-name`.
    let mut i = input(br#"{"a": "b"}"#);
    i.file.name = "Not_A_Name".into();
    let written = run(i).expect("a sanitised name");
    assert_eq!(written.secrets[0].name, "not-a-name");
    // `x..y` stays no name.
    let mut i = input(br#"{"a": "b"}"#);
    i.file.name = "x..y".into();
    assert_eq!(refused_code(run(i)), "InvalidSecretName");
}

#[test]
fn files_over_one_mebibyte_are_refused() {
    let big = format!("{{\"blob\": \"{}\"}}", "x".repeat((1 << 20) + 1));
    assert_eq!(refused_code(run(input(big.as_bytes()))), "TooLarge");
}

#[test]
fn unsupported_output_type_is_refused() {
    let mut i = input(br#"{"a": "b"}"#);
    i.output.output_type = "yaml".into();
    assert_eq!(refused_code(run(i)), "UnsupportedOutputType");
}
