//! A strict parser for flat JSON objects, `{"key": "value", ...}`: the shape of a quarks-job
//! output file (and of each value of a fan-out file).
//!
//! It returns the entries in file order and fails with a precise, user-facing error: bytes
//! that are not UTF-8 (with the byte offset), text that is not JSON (with line and column),
//! a top-level value that is not an object, a value that is not a string (naming the key and
//! what it is instead), or a key that appears twice. Error messages never contain values,
//! because values are Secret data.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use thiserror::Error;

/// The entries of a flat object, in the order of the file.
pub type FlatObject = Vec<(String, String)>;

/// What a JSON value is, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonKind {
    String,
    Number,
    Bool,
    Null,
    Array,
    Object,
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonKind::String => "a string",
            JsonKind::Number => "a number",
            JsonKind::Bool => "a boolean",
            JsonKind::Null => "null",
            JsonKind::Array => "an array",
            JsonKind::Object => "an object",
        })
    }
}

/// Why bytes are not a flat JSON object. Line and column are 1-based, as in editors.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FlatJsonError {
    #[error("not UTF-8: invalid byte sequence at byte offset {offset}")]
    NotUtf8 { offset: usize },
    #[error("not valid JSON: {message} at line {line}, column {column}")]
    Syntax {
        message: String,
        line: usize,
        column: usize,
    },
    #[error("the top-level value is {found}, expected an object of strings")]
    NotAnObject { found: JsonKind },
    #[error(
        "the value of key {key:?} is {found}, expected a string (line {line}, column {column})"
    )]
    NotAString {
        key: String,
        found: JsonKind,
        line: usize,
        column: usize,
    },
    #[error("key {key:?} appears more than once (line {line}, column {column})")]
    DuplicateKey {
        key: String,
        line: usize,
        column: usize,
    },
}

impl FlatJsonError {
    /// The reason code: `InvalidJson` when the bytes are not (unambiguous) JSON, `NotFlat`
    /// when they are JSON but not an object of strings.
    pub fn code(&self) -> &'static str {
        match self {
            FlatJsonError::NotUtf8 { .. }
            | FlatJsonError::Syntax { .. }
            | FlatJsonError::DuplicateKey { .. } => "InvalidJson",
            FlatJsonError::NotAnObject { .. } | FlatJsonError::NotAString { .. } => "NotFlat",
        }
    }
}

/// Parses bytes that must be a flat JSON object of strings.
pub fn parse_flat_object(bytes: &[u8]) -> Result<FlatObject, FlatJsonError> {
    let text = std::str::from_utf8(bytes).map_err(|error| FlatJsonError::NotUtf8 {
        offset: error.valid_up_to(),
    })?;
    parse_flat_object_str(text)
}

/// Parses text that must be a flat JSON object of strings.
pub fn parse_flat_object_str(text: &str) -> Result<FlatObject, FlatJsonError> {
    // The visitors report shape errors here, structured; serde_json only carries them as
    // text and adds the position, which is taken from its error afterwards.
    let shape_error: RefCell<Option<ShapeError>> = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = ObjectSeed {
        shape_error: &shape_error,
    }
    .deserialize(&mut deserializer)
    .and_then(|entries| deserializer.end().map(|()| entries));
    match parsed {
        Ok(entries) => Ok(entries),
        Err(error) => {
            let (line, column) = (error.line(), error.column());
            Err(match shape_error.into_inner() {
                Some(ShapeError::NotAnObject(found)) => FlatJsonError::NotAnObject { found },
                Some(ShapeError::NotAString { key, found }) => FlatJsonError::NotAString {
                    key,
                    found,
                    line,
                    column,
                },
                Some(ShapeError::DuplicateKey(key)) => {
                    FlatJsonError::DuplicateKey { key, line, column }
                }
                None => FlatJsonError::Syntax {
                    message: syntax_message(&error),
                    line,
                    column,
                },
            })
        }
    }
}

/// serde_json's message without its own " at line L column C" suffix (we format position).
fn syntax_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

enum ShapeError {
    NotAnObject(JsonKind),
    NotAString { key: String, found: JsonKind },
    DuplicateKey(String),
}

struct ObjectSeed<'s> {
    shape_error: &'s RefCell<Option<ShapeError>>,
}

impl ObjectSeed<'_> {
    fn not_an_object<E: de::Error>(&self, found: JsonKind) -> Result<FlatObject, E> {
        *self.shape_error.borrow_mut() = Some(ShapeError::NotAnObject(found));
        Err(E::custom(format!("expected an object, found {found}")))
    }
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = FlatObject;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<FlatObject, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = FlatObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FlatObject, A::Error> {
        let mut entries = FlatObject::new();
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                *self.shape_error.borrow_mut() = Some(ShapeError::DuplicateKey(key));
                return Err(de::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(StringSeed {
                key: &key,
                shape_error: self.shape_error,
            })?;
            entries.push((key, value));
        }
        Ok(entries)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<FlatObject, E> {
        self.not_an_object(JsonKind::String)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<FlatObject, E> {
        self.not_an_object(JsonKind::Bool)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<FlatObject, E> {
        self.not_an_object(JsonKind::Number)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<FlatObject, E> {
        self.not_an_object(JsonKind::Number)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<FlatObject, E> {
        self.not_an_object(JsonKind::Number)
    }
    fn visit_unit<E: de::Error>(self) -> Result<FlatObject, E> {
        self.not_an_object(JsonKind::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<FlatObject, A::Error> {
        self.not_an_object(JsonKind::Array)
    }
}

/// One value of the object: must be a string; anything else is reported with its key.
struct StringSeed<'k, 's> {
    key: &'k str,
    shape_error: &'s RefCell<Option<ShapeError>>,
}

impl StringSeed<'_, '_> {
    fn not_a_string<E: de::Error>(&self, found: JsonKind) -> Result<String, E> {
        *self.shape_error.borrow_mut() = Some(ShapeError::NotAString {
            key: self.key.to_string(),
            found,
        });
        Err(E::custom(format!("expected a string, found {found}")))
    }
}

impl<'de> DeserializeSeed<'de> for StringSeed<'_, '_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StringSeed<'_, '_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<String, E> {
        Ok(value.to_string())
    }
    fn visit_string<E: de::Error>(self, value: String) -> Result<String, E> {
        Ok(value)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<String, E> {
        self.not_a_string(JsonKind::Bool)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<String, E> {
        self.not_a_string(JsonKind::Number)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<String, E> {
        self.not_a_string(JsonKind::Number)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<String, E> {
        self.not_a_string(JsonKind::Number)
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        self.not_a_string(JsonKind::Null)
    }
    // Nested containers are rejected as soon as they open: nothing inside them is read, so
    // deep nesting costs nothing and never reaches serde_json's recursion limit.
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        self.not_a_string(JsonKind::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        self.not_a_string(JsonKind::Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(entries: &[(&str, &str)]) -> FlatObject {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn entries_come_back_in_file_order_with_escapes_decoded() {
        let parsed = parse_flat_object(br#"{"foo": "1", "bar": "baz", "a": "\u00e9\n\"q\""}"#);
        assert_eq!(
            parsed,
            Ok(pairs(&[
                ("foo", "1"),
                ("bar", "baz"),
                ("a", "\u{e9}\n\"q\"")
            ]))
        );
    }

    #[test]
    fn empty_object_is_valid_and_empty() {
        assert_eq!(parse_flat_object(b" { } \n"), Ok(FlatObject::new()));
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let error = parse_flat_object(b"{\n  \"a\": \"1\",\n  \"b\" \"2\"\n}").expect_err("syntax");
        match &error {
            FlatJsonError::Syntax {
                line,
                column,
                message,
            } => {
                assert_eq!((*line, *column), (3, 7), "{message}");
                assert!(message.contains("expected `:`"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(error.code(), "InvalidJson");
        assert!(
            error.to_string().ends_with("at line 3, column 7"),
            "{error}"
        );
    }

    #[test]
    fn empty_input_and_trailing_garbage_are_syntax_errors() {
        for input in [
            &b""[..],
            b"   ",
            b"{\"a\": \"1\"} x",
            b"{\"a\": \"1\"",
            b"{\"a\": \"1\",}",
        ] {
            let error = parse_flat_object(input).expect_err("syntax");
            assert!(
                matches!(error, FlatJsonError::Syntax { .. }),
                "{input:?}: {error:?}"
            );
        }
    }

    #[test]
    fn non_utf8_bytes_are_reported_with_their_offset() {
        let error = parse_flat_object(b"{\"a\": \"\xff\"}").expect_err("utf8");
        assert_eq!(error, FlatJsonError::NotUtf8 { offset: 7 });
        assert_eq!(error.code(), "InvalidJson");
    }

    #[test]
    fn top_level_values_other_than_objects_are_named() {
        let cases: [(&[u8], JsonKind); 6] = [
            (b"\"x\"", JsonKind::String),
            (b"12", JsonKind::Number),
            (b"-1.5", JsonKind::Number),
            (b"true", JsonKind::Bool),
            (b"null", JsonKind::Null),
            (b"[\"a\"]", JsonKind::Array),
        ];
        for (input, kind) in cases {
            let error = parse_flat_object(input).expect_err("not an object");
            assert_eq!(error, FlatJsonError::NotAnObject { found: kind });
            assert_eq!(error.code(), "NotFlat");
        }
    }

    #[test]
    fn non_string_values_name_their_key_and_kind() {
        let cases: [(&[u8], &str, JsonKind); 6] = [
            (b"{\"a\": \"1\", \"port\": 8080}", "port", JsonKind::Number),
            (b"{\"n\": 1.5e3}", "n", JsonKind::Number),
            (b"{\"flag\": false}", "flag", JsonKind::Bool),
            (b"{\"nothing\": null}", "nothing", JsonKind::Null),
            (b"{\"list\": [1, 2]}", "list", JsonKind::Array),
            (b"{\"nested\": {\"x\": \"y\"}}", "nested", JsonKind::Object),
        ];
        for (input, key, kind) in cases {
            let error = parse_flat_object(input).expect_err("not flat");
            match &error {
                FlatJsonError::NotAString {
                    key: k,
                    found,
                    line,
                    ..
                } => {
                    assert_eq!((k.as_str(), *found, *line), (key, kind, 1));
                }
                other => panic!("unexpected {other:?}"),
            }
            assert_eq!(error.code(), "NotFlat");
            assert!(
                error
                    .to_string()
                    .contains(&format!("key \"{key}\" is {kind}")),
                "{error}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_rejected_without_reading_it() {
        let mut input = String::from("{\"deep\": ");
        input.push_str(&"[".repeat(100_000));
        let error = parse_flat_object(input.as_bytes()).expect_err("not flat");
        assert!(matches!(
            error,
            FlatJsonError::NotAString {
                found: JsonKind::Array,
                ..
            }
        ));
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let error = parse_flat_object(b"{\"a\": \"1\",\n\"a\": \"2\"}").expect_err("dup");
        match &error {
            FlatJsonError::DuplicateKey { key, line, .. } => {
                assert_eq!((key.as_str(), *line), ("a", 2))
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(error.code(), "InvalidJson");
    }

    #[test]
    fn messages_never_contain_values() {
        let error = parse_flat_object(b"{\"a\": \"s3cr3t\", \"b\": 1}").expect_err("not flat");
        assert!(!error.to_string().contains("s3cr3t"), "{error}");
    }
}
