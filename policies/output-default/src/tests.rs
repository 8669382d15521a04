//! Every rule of spec.md §4 against the native build of [`transform`].

use super::*;
use quarks_policy_sdk::output::{FileOptions, OutputOptions};

fn map(pairs: &[(&str, &str)]) -> StringMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn input(content: &[u8]) -> OutputInput {
    OutputInput {
        quarks_job_name: "qjob".into(),
        namespace: "staging".into(),
        output: OutputOptions {
            output_type: "json".into(),
            secret_labels: vec![],
            write_on_failure: false,
        },
        container: "busybox".into(),
        remote_id: None,
        file_name: "output.json".into(),
        file: FileOptions {
            name: "foo-json".into(),
            secret_labels: map(&[("key", "value")]),
            secret_annotations: vec![],
            versioned: false,
            persistence_method: PersistenceMethod::OneToOne,
        },
        content: content.to_vec(),
        exit_code: 0,
    }
}

fn fan_out_input(content: &[u8]) -> OutputInput {
    let mut input = input(content);
    input.file.name = "nats".into();
    input.file.persistence_method = PersistenceMethod::FanOut;
    input
}

fn data(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn error_code(input: &OutputInput) -> String {
    match transform(input) {
        Ok(result) => panic!("expected an error, got {result:?}"),
        Err(reason) => {
            assert!(!reason.message.is_empty());
            reason.code
        }
    }
}

#[test]
fn seed_example_becomes_foo_json() {
    let result = transform(&input(br#"{"foo": "1", "bar": "baz"}"#)).expect("ok");
    assert_eq!(
        result.secrets,
        vec![SecretSpec {
            name: "foo-json".into(),
            data: data(&[("foo", "1"), ("bar", "baz")]),
            labels: map(&[("key", "value"), (CONTAINER_NAME_LABEL, "busybox")]),
            annotations: vec![],
            versioned: false,
        }]
    );
    assert_eq!(result.reasons[0].code, "OneToOne");
}

#[test]
fn fan_out_makes_one_secret_per_key() {
    let content = br#"{"nats": "{\"user\": \"admin\", \"password\": \"p\"}", "db": "{\"url\": \"postgres://x\"}"}"#;
    let result = transform(&fan_out_input(content)).expect("ok");
    let names: Vec<&str> = result.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["nats-nats", "nats-db"]);
    assert_eq!(
        result.secrets[0].data,
        data(&[("user", "admin"), ("password", "p")])
    );
    assert_eq!(result.secrets[1].data, data(&[("url", "postgres://x")]));
    for secret in &result.secrets {
        assert_eq!(
            secret.labels,
            map(&[("key", "value"), (CONTAINER_NAME_LABEL, "busybox")])
        );
    }
    assert_eq!(result.reasons[0].code, "FanOut");
}

#[test]
fn fan_out_rejects_values_that_are_not_encoded_flat_objects() {
    let cases: [(&[u8], &str, &str); 5] = [
        (br#"{"a": "not json"}"#, "InvalidJson", "fan-out key \"a\""),
        (br#"{"a": "[1]"}"#, "NotFlat", "an array"),
        (
            br#"{"a": "{\"x\": 1}"}"#,
            "NotFlat",
            "key \"x\" is a number",
        ),
        (br#"{"a": {"x": "y"}}"#, "NotFlat", "key \"a\" is an object"),
        // Still no name once sanitised: `nats--` loses one trailing '-', not two.
        (br#"{"-": "{}"}"#, "InvalidSecretName", "fan-out key \"-\""),
    ];
    for (content, code, fragment) in cases {
        let reason = transform(&fan_out_input(content)).expect_err("invalid fan-out");
        assert_eq!(reason.code, code, "{reason:?}");
        assert!(reason.message.contains(fragment), "{reason:?}");
    }
}

#[test]
fn a_large_fan_out_lists_only_the_first_names_in_its_reason() {
    let keys: Vec<String> = (0..3000).map(|i| format!(r#""k{i}": "{{}}""#)).collect();
    let content = format!("{{{}}}", keys.join(","));
    let result = transform(&fan_out_input(content.as_bytes())).expect("ok");
    assert_eq!(result.secrets.len(), 3000);
    let message = &result.reasons[0].message;
    assert!(message.ends_with("and 2990 more"), "{message}");
    assert!(message.len() < 4096);
}

#[test]
fn names_are_sanitised_as_the_original_did() {
    let result = transform(&fan_out_input(br#"{"DB_PASSWORD": "{}", "Admin": "{}"}"#)).expect("ok");
    let names: Vec<&str> = result.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["nats-db-password", "nats-admin"]);
    let mut one = input(br#"{"a": "b"}"#);
    one.file.name = "My_Secret".into();
    assert_eq!(transform(&one).expect("ok").secrets[0].name, "my-secret");
}

#[test]
fn fan_out_of_an_empty_object_writes_nothing() {
    let result = transform(&fan_out_input(b"{}")).expect("ok");
    assert!(result.secrets.is_empty());
    assert_eq!(result.reasons[0].code, "NothingToFanOut");
}

#[test]
fn empty_object_is_one_secret_without_data() {
    let result = transform(&input(b"{}")).expect("ok");
    assert_eq!(result.secrets.len(), 1);
    assert_eq!(result.secrets[0].name, "foo-json");
    assert!(result.secrets[0].data.is_empty());
}

#[test]
fn versioned_flag_is_passed_through() {
    for versioned in [false, true] {
        let mut one = input(br#"{"a": "1"}"#);
        one.file.versioned = versioned;
        assert_eq!(transform(&one).expect("ok").secrets[0].versioned, versioned);
        let mut fan = fan_out_input(br#"{"a": "{\"b\": \"c\"}"}"#);
        fan.file.versioned = versioned;
        assert_eq!(transform(&fan).expect("ok").secrets[0].versioned, versioned);
    }
}

#[test]
fn labels_follow_the_spec_order_and_later_layers_win() {
    let mut input = input(br#"{"a": "1"}"#);
    input.output.secret_labels = map(&[("team", "a"), ("tier", "db"), (CONTAINER_NAME_LABEL, "x")]);
    input.file.secret_labels = map(&[("team", "b"), ("file", "f"), (REMOTE_ID_LABEL, "y")]);
    input.remote_id = Some("remote-7".into());
    input.file.secret_annotations = map(&[("note", "n")]);
    let secret = &transform(&input).expect("ok").secrets[0];
    assert_eq!(
        secret.labels,
        map(&[
            ("team", "b"),
            ("tier", "db"),
            (CONTAINER_NAME_LABEL, "busybox"),
            ("file", "f"),
            (REMOTE_ID_LABEL, "remote-7"),
        ])
    );
    assert_eq!(secret.annotations, map(&[("note", "n")]));
}

#[test]
fn remote_id_label_only_when_set() {
    let without = transform(&input(br#"{"a": "1"}"#)).expect("ok");
    assert_eq!(
        string_map::get(&without.secrets[0].labels, REMOTE_ID_LABEL),
        None
    );
    let mut with = input(br#"{"a": "1"}"#);
    with.remote_id = Some("r1".into());
    let with = transform(&with).expect("ok");
    assert_eq!(
        string_map::get(&with.secrets[0].labels, REMOTE_ID_LABEL),
        Some("r1")
    );
}

#[test]
fn write_on_failure_for_any_non_zero_exit_code() {
    for (exit_code, write_on_failure, written) in [
        (0, false, true),
        (0, true, true),
        (1, false, false),
        (1, true, true),
        (3, false, false),
        (3, true, true),
        (-1, false, false),
        (137, true, true),
    ] {
        let mut input = input(br#"{"a": "1"}"#);
        input.exit_code = exit_code;
        input.output.write_on_failure = write_on_failure;
        let result = transform(&input).expect("ok");
        assert_eq!(
            !result.secrets.is_empty(),
            written,
            "exit {exit_code}, writeOnFailure {write_on_failure}"
        );
        let codes: Vec<&str> = result.reasons.iter().map(|r| r.code.as_str()).collect();
        let expected: &[&str] = match (exit_code, written) {
            (0, _) => &["OneToOne"],
            (_, true) => &["OneToOne", "WrittenOnFailure"],
            (_, false) => &["ContainerFailed"],
        };
        assert_eq!(codes, expected, "exit {exit_code}");
    }
}

#[test]
fn a_failed_container_without_write_on_failure_is_not_parsed() {
    let mut input = input(b"not json at all");
    input.exit_code = 2;
    let result = transform(&input).expect("ok");
    assert!(result.secrets.is_empty());
    assert!(result.reasons[0].message.contains("exited with code 2"));
}

#[test]
fn only_json_output_type_is_supported() {
    for output_type in ["yaml", "JSON", ""] {
        let mut input = input(br#"{"a": "1"}"#);
        input.output.output_type = output_type.into();
        assert_eq!(error_code(&input), "UnsupportedOutputType");
    }
}

#[test]
fn invalid_content_is_an_error_with_a_precise_code() {
    let cases: [(&[u8], &str, &str); 8] = [
        (b"{\"a\": ", "InvalidJson", "line 1, column 7"),
        (b"{\"a\": \"\xff\xfe\"}", "InvalidJson", "not UTF-8"),
        (
            b"{\"a\": \"1\", \"a\": \"2\"}",
            "InvalidJson",
            "more than once",
        ),
        (b"[\"a\"]", "NotFlat", "top-level value is an array"),
        (b"{\"port\": 8080}", "NotFlat", "\"port\" is a number"),
        (b"{\"n\": {\"x\": \"y\"}}", "NotFlat", "\"n\" is an object"),
        (b"{\"b\": true}", "NotFlat", "\"b\" is a boolean"),
        (b"{\"bad key\": \"1\"}", "InvalidSecretKey", "\"bad key\""),
    ];
    for (content, code, fragment) in cases {
        let reason = transform(&input(content)).expect_err("invalid");
        assert_eq!(reason.code, code, "{reason:?}");
        assert!(reason.message.contains(fragment), "{reason:?}");
    }
}

#[test]
fn secret_names_must_be_dns_subdomains_once_sanitised() {
    // ("Foo", "foo_json" and "-x" become foo, foo-json and x, as with the original.)
    for name in ["", "--", "x..y", "_-"] {
        let mut input = input(br#"{"a": "1"}"#);
        input.file.name = name.into();
        assert_eq!(error_code(&input), "InvalidSecretName", "{name:?}");
    }
}

#[test]
fn data_over_one_mebibyte_is_too_large() {
    let value = "x".repeat(MAX_SECRET_DATA_BYTES / 2);
    let at_limit = format!(r#"{{"a": "{value}", "b": "{value}"}}"#);
    assert_eq!(
        transform(&input(at_limit.as_bytes()))
            .expect("at the limit")
            .secrets
            .len(),
        1
    );
    let over = format!(r#"{{"a": "{value}", "b": "{value}x"}}"#);
    let reason = transform(&input(over.as_bytes())).expect_err("over");
    assert_eq!(reason.code, "TooLarge");
    assert!(reason.message.contains("1048577 bytes"), "{reason:?}");
}

#[test]
fn fan_out_limit_is_per_secret() {
    let value = "y".repeat(MAX_SECRET_DATA_BYTES - 10);
    let inner = format!(r#"{{\"k\": \"{value}\"}}"#);
    let content = format!(r#"{{"one": "{inner}", "two": "{inner}"}}"#);
    let result = transform(&fan_out_input(content.as_bytes())).expect("each Secret fits");
    assert_eq!(result.secrets.len(), 2);
}

#[test]
fn messages_never_contain_values() {
    let mut fan = fan_out_input(br#"{"a": "{\"k\": \"s3cr3t\", \"n\": 1}"}"#);
    let reason = transform(&fan).expect_err("invalid");
    assert!(!reason.message.contains("s3cr3t"), "{reason:?}");
    fan.content = br#"{"a": "{\"k\": \"s3cr3t\"}"}"#.to_vec();
    for reason in transform(&fan).expect("ok").reasons {
        assert!(!reason.message.contains("s3cr3t"), "{reason:?}");
    }
}

#[test]
fn the_export_delegates_to_transform() {
    let input = input(br#"{"foo": "1"}"#);
    assert_eq!(
        <OutputDefault as Guest>::transform(input.clone()),
        transform(&input)
    );
}

#[test]
fn invalid_labels_and_remote_ids_are_reported() {
    let mut bad_remote = input(br#"{"a": "1"}"#);
    bad_remote.remote_id = Some("not a label value".into());
    let reason = transform(&bad_remote).expect_err("bad REMOTE_ID");
    assert_eq!(reason.code, "InvalidLabel");
    assert!(
        reason
            .message
            .contains("REMOTE_ID of container \"busybox\""),
        "{reason:?}"
    );

    let mut bad_key = input(br#"{"a": "1"}"#);
    bad_key.output.secret_labels = map(&[("bad key", "v")]);
    assert_eq!(error_code(&bad_key), "InvalidLabel");

    let mut bad_value = input(br#"{"a": "1"}"#);
    bad_value.file.secret_labels = map(&[("k", "-v")]);
    let reason = transform(&bad_value).expect_err("bad label value");
    assert_eq!(reason.code, "InvalidLabel");
    assert!(reason.message.contains("label \"k\""), "{reason:?}");
}

#[test]
fn invalid_annotations_are_reported() {
    let mut bad_key = input(br#"{"a": "1"}"#);
    bad_key.file.secret_annotations = map(&[("a/b/c", "v")]);
    assert_eq!(error_code(&bad_key), "InvalidAnnotation");

    let mut duplicate = input(br#"{"a": "1"}"#);
    duplicate.file.secret_annotations = map(&[("a", "1"), ("a", "2")]);
    assert_eq!(error_code(&duplicate), "InvalidAnnotation");

    let big = "z".repeat(MAX_ANNOTATIONS_BYTES);
    let mut too_big = input(br#"{"a": "1"}"#);
    too_big.file.secret_annotations = vec![("note".into(), big)];
    let reason = transform(&too_big).expect_err("too big");
    assert_eq!(reason.code, "InvalidAnnotation");
    assert!(!reason.message.contains("zzz"), "values are not quoted");
}
