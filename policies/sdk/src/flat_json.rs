//! A strict parser for flat JSON objects, `{"key": "value", ...}`: the shape of a quarks-job
//! output file (and of each value of a fan-out file).
//!
//! It returns the entries in file order and fails with a precise, user-facing error: bytes
//! that are not UTF-8 (with the byte offset), text that is not JSON (with line and column),
//! a top-level value that is not an object, a value that is not a string (naming the key and
//! what it is instead), or a key that appears twice. Error messages never contain values,
//! because values are Secret data.
//!
//! It is a small hand-written parser (RFC 8259) rather than a general JSON library: it reads
//! only the one shape it accepts, stops at the first nested value instead of reading it,
//! copies each string once, and needs nothing beyond `core` and `alloc`, which keeps policy
//! components free of any WASI import. The tests check it against serde_json.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::fmt;

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

/// Why bytes are not a flat JSON object. Line and column are 1-based and count characters,
/// as editors do; at the end of the input they point just past the last character.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlatJsonError {
    /// The bytes are not UTF-8 (JSON must be); `offset` is the first invalid byte.
    NotUtf8 { offset: usize },
    /// The text is not JSON.
    Syntax {
        message: String,
        line: usize,
        column: usize,
    },
    /// The top-level value is valid JSON but not an object.
    NotAnObject { found: JsonKind },
    /// The value of `key` is not a string; line and column point at the value.
    NotAString {
        key: String,
        found: JsonKind,
        line: usize,
        column: usize,
    },
    /// `key` appears twice; line and column point at the second occurrence.
    DuplicateKey {
        key: String,
        line: usize,
        column: usize,
    },
}

impl fmt::Display for FlatJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlatJsonError::NotUtf8 { offset } => {
                write!(
                    f,
                    "not UTF-8: invalid byte sequence at byte offset {offset}"
                )
            }
            FlatJsonError::Syntax {
                message,
                line,
                column,
            } => write!(
                f,
                "not valid JSON: {message} at line {line}, column {column}"
            ),
            FlatJsonError::NotAnObject { found } => write!(
                f,
                "the top-level value is {found}, expected an object of strings"
            ),
            FlatJsonError::NotAString {
                key,
                found,
                line,
                column,
            } => write!(
                f,
                "the value of key {key:?} is {found}, expected a string (line {line}, column {column})"
            ),
            FlatJsonError::DuplicateKey { key, line, column } => write!(
                f,
                "key {key:?} appears more than once (line {line}, column {column})"
            ),
        }
    }
}

impl core::error::Error for FlatJsonError {}

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
    let text = core::str::from_utf8(bytes).map_err(|error| FlatJsonError::NotUtf8 {
        offset: error.valid_up_to(),
    })?;
    parse_flat_object_str(text)
}

/// Parses text that must be a flat JSON object of strings.
pub fn parse_flat_object_str(text: &str) -> Result<FlatObject, FlatJsonError> {
    Parser { text, pos: 0 }.object()
}

/// A cursor over the text. `pos` is a byte offset, always on a character boundary: the
/// parser only stops on ASCII bytes or the end of the text.
struct Parser<'t> {
    text: &'t str,
    pos: usize,
}

impl Parser<'_> {
    fn object(mut self) -> Result<FlatObject, FlatJsonError> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.pos += 1,
            Some(_) => {
                let found = self.value_kind()?;
                // Only valid JSON counts as "not an object"; `12 garbage` is a syntax error.
                self.skip_whitespace();
                if self.peek().is_some() && !matches!(found, JsonKind::Array | JsonKind::Object) {
                    return Err(self.syntax("trailing characters after the value"));
                }
                return Err(FlatJsonError::NotAnObject { found });
            }
            None => return Err(self.syntax("empty input, expected an object")),
        }
        let mut entries = FlatObject::new();
        // Where each entry's key starts, for the position of a duplicate.
        let mut key_offsets = Vec::new();
        let members = self.members(&mut entries, &mut key_offsets);
        // Duplicates are found once, after the members, by sorting (O(n log n) whatever the
        // keys) rather than by a set per key. A key seen twice is reported even when a later
        // error stopped the parse: as if it had been checked as soon as it was read.
        if let Some(duplicate) = first_repeat(&entries) {
            let (line, column) = self.line_column(key_offsets[duplicate]);
            return Err(FlatJsonError::DuplicateKey {
                key: entries.swap_remove(duplicate).0,
                line,
                column,
            });
        }
        members.map(|()| entries)
    }

    /// The members after the opening brace, up to the end of the text. Each entry is pushed
    /// as soon as its key is read (with an empty value until the value is read), so that a
    /// failure still leaves every key read so far in `entries`.
    fn members(
        &mut self,
        entries: &mut FlatObject,
        key_offsets: &mut Vec<usize>,
    ) -> Result<(), FlatJsonError> {
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                self.skip_whitespace();
                let key_at = self.pos;
                match self.peek() {
                    Some(b'"') => {}
                    Some(b'}') if !entries.is_empty() => {
                        return Err(self.syntax("trailing comma before '}'"));
                    }
                    Some(_) => {
                        return Err(self.syntax("expected a key (a string in double quotes)"));
                    }
                    None => return Err(self.syntax("unexpected end of input, expected a key")),
                }
                let key = self.string()?;
                entries.push((key, String::new()));
                key_offsets.push(key_at);
                self.skip_whitespace();
                match self.peek() {
                    Some(b':') => self.pos += 1,
                    Some(_) => return Err(self.syntax("expected ':' after the key")),
                    None => return Err(self.syntax("unexpected end of input, expected ':'")),
                }
                self.skip_whitespace();
                let value_at = self.pos;
                if self.peek() == Some(b'"') {
                    let value = self.string()?;
                    if let Some(entry) = entries.last_mut() {
                        entry.1 = value;
                    }
                } else {
                    let found = self.value_kind()?;
                    let (line, column) = self.line_column(value_at);
                    // The key stays in `entries`: a duplicate is reported before this.
                    let key = entries
                        .last()
                        .map(|(key, _)| key.clone())
                        .unwrap_or_default();
                    return Err(FlatJsonError::NotAString {
                        key,
                        found,
                        line,
                        column,
                    });
                }
                self.skip_whitespace();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    Some(_) => return Err(self.syntax("expected ',' or '}' after the value")),
                    None => return Err(self.syntax("unexpected end of input, expected '}'")),
                }
            }
        }
        self.skip_whitespace();
        if self.peek().is_some() {
            return Err(self.syntax("trailing characters after the object"));
        }
        Ok(())
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Classifies the value at the cursor without reading containers: a non-string value is
    /// an error for a flat object whatever it holds, so `[[[...` costs nothing. Scalars are
    /// checked, so that only valid JSON is called "a number" or "a boolean".
    fn value_kind(&mut self) -> Result<JsonKind, FlatJsonError> {
        match self.peek() {
            Some(b'"') => self.string().map(|_| JsonKind::String),
            Some(b'[') => Ok(JsonKind::Array),
            Some(b'{') => Ok(JsonKind::Object),
            Some(b't') => self.literal("true").map(|()| JsonKind::Bool),
            Some(b'f') => self.literal("false").map(|()| JsonKind::Bool),
            Some(b'n') => self.literal("null").map(|()| JsonKind::Null),
            Some(b'-' | b'0'..=b'9') => self.number().map(|()| JsonKind::Number),
            Some(_) => Err(self.syntax("expected a value")),
            None => Err(self.syntax("unexpected end of input, expected a value")),
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), FlatJsonError> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.syntax("invalid literal, expected true, false or null"))
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), FlatJsonError> {
        let digits = |parser: &mut Self| {
            let start = parser.pos;
            while matches!(parser.peek(), Some(b'0'..=b'9')) {
                parser.pos += 1;
            }
            parser.pos > start
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.syntax("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err(self.syntax("invalid number, expected a digit after '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(self.syntax("invalid number, expected a digit in the exponent"));
            }
        }
        Ok(())
    }

    /// Reads the string at the cursor (which is on its opening quote), unescaping it.
    fn string(&mut self) -> Result<String, FlatJsonError> {
        self.pos += 1;
        // Most strings have no escape: one allocation of the exact size, one copy.
        let run = plain_run(&self.text.as_bytes()[self.pos..]);
        if self.text.as_bytes().get(self.pos + run) == Some(&b'"') {
            let out = String::from(&self.text[self.pos..self.pos + run]);
            self.pos += run + 1;
            return Ok(out);
        }
        let mut out = String::new();
        loop {
            // Copy the run up to the next quote, backslash or control character at once;
            // all three are ASCII, so the slice ends on a character boundary.
            let run = plain_run(&self.text.as_bytes()[self.pos..]);
            out.push_str(&self.text[self.pos..self.pos + run]);
            self.pos += run;
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => {
                    return Err(
                        self.syntax("control character in a string (escape it, e.g. as \\n)")
                    );
                }
                None => return Err(self.syntax("unexpected end of input inside a string")),
            }
        }
    }

    /// One escape sequence, the cursor just after its backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), FlatJsonError> {
        let Some(letter) = self.peek() else {
            return Err(self.syntax("unexpected end of input inside a string"));
        };
        let simple = match letter {
            b'"' => Some('"'),
            b'\\' => Some('\\'),
            b'/' => Some('/'),
            b'b' => Some('\u{8}'),
            b'f' => Some('\u{c}'),
            b'n' => Some('\n'),
            b'r' => Some('\r'),
            b't' => Some('\t'),
            b'u' => None,
            _ => return Err(self.syntax("invalid escape sequence")),
        };
        self.pos += 1;
        if let Some(c) = simple {
            out.push(c);
            return Ok(());
        }
        let at = self.pos - 2;
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                // A high surrogate must be followed by an escaped low surrogate.
                if !self.text[self.pos..].starts_with("\\u") {
                    return Err(self.syntax_at(at, "unpaired surrogate in a \\u escape"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.syntax_at(at, "unpaired surrogate in a \\u escape"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => {
                return Err(self.syntax_at(at, "unpaired surrogate in a \\u escape"));
            }
            _ => first,
        };
        match char::from_u32(code) {
            Some(c) => {
                out.push(c);
                Ok(())
            }
            None => Err(self.syntax_at(at, "invalid \\u escape")),
        }
    }

    fn hex4(&mut self) -> Result<u32, FlatJsonError> {
        let mut value = 0;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b) => (b as char).to_digit(16),
                None => None,
            };
            match digit {
                Some(digit) => value = value * 16 + digit,
                None => {
                    return Err(self.syntax("invalid \\u escape, expected four hex digits"));
                }
            }
            self.pos += 1;
        }
        Ok(value)
    }

    fn syntax(&self, message: &str) -> FlatJsonError {
        self.syntax_at(self.pos, message)
    }

    fn syntax_at(&self, pos: usize, message: &str) -> FlatJsonError {
        let (line, column) = self.line_column(pos);
        FlatJsonError::Syntax {
            message: message.to_string(),
            line,
            column,
        }
    }

    /// 1-based line and character column of a byte offset.
    fn line_column(&self, pos: usize) -> (usize, usize) {
        let before = &self.text[..pos];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        (line, before[line_start..].chars().count() + 1)
    }
}

/// The length of the prefix of `bytes` free of quotes, backslashes and control characters:
/// eight bytes at a time (the classic "has a zero / a byte less than n" bit tricks; the lowest
/// flagged byte of each is exact), then byte by byte.
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut run = 0;
    for chunk in &mut chunks {
        let w = word(chunk);
        let quote = w ^ (ONES * b'"' as u64);
        let backslash = w ^ (ONES * b'\\' as u64);
        let flags = (quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash
            | w.wrapping_sub(ONES * 0x20) & !w)
            & HIGHS;
        if flags != 0 {
            return run + (flags.trailing_zeros() / 8) as usize;
        }
        run += 8;
    }
    run + chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(chunks.remainder().len())
}

/// The index of the first entry whose key an earlier entry already has, if any.
///
/// Sorts (hash, index) pairs, so equal keys end up next to each other and in file order, and
/// takes, over all repeats, the smallest index. A run of equal hashes longer than a few
/// entries (crafted collisions) is sorted by the keys themselves, so it costs comparisons,
/// never quadratic time.
fn first_repeat(entries: &FlatObject) -> Option<usize> {
    if entries.len() < 2 {
        return None;
    }
    let key = |index: u32| entries[index as usize].0.as_bytes();
    let mut order: Vec<(u64, u32)> = entries
        .iter()
        .enumerate()
        .map(|(index, (key, _))| (key_hash(key.as_bytes()), index as u32))
        .collect();
    order.sort_unstable();
    let mut first: Option<u32> = None;
    let mut note = |index: u32| first = Some(first.map_or(index, |seen| seen.min(index)));
    for run in order.chunk_by_mut(|a, b| a.0 == b.0) {
        match run.len() {
            1 => {}
            2..=8 => {
                // In file order already: the first repeat of a key is the first later entry
                // equal to an earlier one.
                for later in 1..run.len() {
                    if run[..later].iter().any(|e| key(e.1) == key(run[later].1)) {
                        note(run[later].1);
                    }
                }
            }
            _ => {
                run.sort_unstable_by(|a, b| key_order(key(a.1), key(b.1)).then(a.1.cmp(&b.1)));
                for pair in run.windows(2) {
                    if key(pair[0].1) == key(pair[1].1) {
                        note(pair[1].1);
                    }
                }
            }
        }
    }
    first.map(|index| index as usize)
}

/// A word-at-a-time hash of a key (FxHash's mixing, then a final avalanche).
fn key_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut hash = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        hash = (hash.rotate_left(5) ^ word(chunk)).wrapping_mul(K);
    }
    hash = (hash.rotate_left(5) ^ word(chunks.remainder())).wrapping_mul(K);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

/// A total order on byte strings, cheaper than the lexicographic one in WebAssembly (where
/// `memcmp` goes byte by byte): by length, then by 8-byte words. Only equality matters to
/// the caller.
fn key_order(a: &[u8], b: &[u8]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| {
        let (mut left, mut right) = (a.chunks(8), b.chunks(8));
        loop {
            match (left.next(), right.next()) {
                (Some(x), Some(y)) => match word(x).cmp(&word(y)) {
                    Ordering::Equal => {}
                    unequal => return unequal,
                },
                _ => return Ordering::Equal,
            }
        }
    })
}

/// Up to 8 bytes as a little-endian word, zero-padded.
fn word(bytes: &[u8]) -> u64 {
    let mut buffer = [0u8; 8];
    buffer[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(buffer)
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
                assert!(message.contains("expected ':'"), "{message}");
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

    #[test]
    fn escapes_and_surrogate_pairs_are_decoded() {
        let parsed = parse_flat_object(br#"{"k": "\/\b\f\r\t\\ \ud83d\ude00 \u0041"}"#);
        assert_eq!(parsed, Ok(pairs(&[("k", "/\u{8}\u{c}\r\t\\ \u{1f600} A")])));
        for bad in [
            &br#"{"k": "\ud83d"}"#[..],
            br#"{"k": "\ude00"}"#,
            br#"{"k": "\ud83d\u0041"}"#,
            br#"{"k": "\u12"}"#,
            br#"{"k": "\x"}"#,
            b"{\"k\": \"a\tb\"}",
        ] {
            let error = parse_flat_object(bad).expect_err("bad escape");
            assert!(matches!(error, FlatJsonError::Syntax { .. }), "{error:?}");
        }
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let error = parse_flat_object("{\"é\": \"ü\" x}".as_bytes()).expect_err("syntax");
        match error {
            FlatJsonError::Syntax { line, column, .. } => assert_eq!((line, column), (1, 11)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn plain_run_agrees_with_a_byte_by_byte_scan() {
        let special = |b: &u8| *b == b'"' || *b == b'\\' || *b < 0x20;
        let mut random = Lcg(7);
        for _ in 0..20_000 {
            let len = random.next(40);
            let bytes: Vec<u8> = (0..len)
                .map(|_| match random.next(8) {
                    0 => b"\"\\\n\x00\x1f\x20\x7f\x80\xff\xa2\xdc"[random.next(11)],
                    _ => b'a' + random.next(26) as u8,
                })
                .collect();
            let expected = bytes.iter().position(special).unwrap_or(bytes.len());
            assert_eq!(plain_run(&bytes), expected, "{bytes:?}");
        }
    }

    #[test]
    fn the_first_repeated_key_is_reported_even_after_a_later_error() {
        for input in [
            &b"{\"a\": \"1\", \"b\": \"2\", \"a\": \"3\", \"b\": \"4\"}"[..],
            b"{\"a\": \"1\", \"b\": \"2\", \"a\": 3, \"b\": 4}",
            b"{\"a\": \"1\", \"b\": \"2\", \"a\": \"3\", \"b\": x",
            b"{\"a\": \"1\", \"b\": \"2\", \"a\"",
        ] {
            match parse_flat_object(input) {
                Err(FlatJsonError::DuplicateKey { key, line, column }) => {
                    assert_eq!((key.as_str(), line, column), ("a", 1, 22), "{input:?}")
                }
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
            }
        }
        let many: String = (0..1000).map(|i| format!("\"k{i}\": \"v\", ")).collect();
        let input = format!("{{{many}\"k999\": \"x\", \"k5\": \"y\"}}");
        match parse_flat_object(input.as_bytes()) {
            Err(FlatJsonError::DuplicateKey { key, .. }) => assert_eq!(key, "k999"),
            other => panic!("{other:?}"),
        }
    }

    /// A tiny deterministic generator, so the differential test is reproducible.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, bound: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) as usize) % bound
        }
    }

    /// The parser agrees with serde_json on what is a valid object of strings (and on its
    /// content), over seeds and thousands of mutations of them. serde_json lets a later
    /// duplicate key win, so there the only allowed difference is our DuplicateKey error.
    #[test]
    fn agrees_with_serde_json_on_seeds_and_mutations() {
        use std::collections::BTreeMap;
        let seeds: [&str; 8] = [
            r#"{"foo": "1", "bar": "baz"}"#,
            r#"{}"#,
            " {\n\t\"a\" : \"\\u00e9\\n\" ,\r\n \"b\":\"\\ud83d\\ude00\"} ",
            r#"{"a": 1, "b": -0.5e+3}"#,
            r#"{"a": [true, false, null], "b": {"c": "d"}}"#,
            r#"{"k": "v\"q\\", "é": "ü"}"#,
            r#"["a", "b"]"#,
            r#""just a string""#,
        ];
        let alphabet = b"{}[]:,\"\\ \n0-1.e+tfnu\x7fa\xc3\xa9";
        let mut random = Lcg(42);
        let (mut compared, mut accepted) = (0, 0);
        for seed in seeds {
            let mut variants = vec![seed.as_bytes().to_vec()];
            for _ in 0..2_000 {
                let mut bytes = seed.as_bytes().to_vec();
                for _ in 0..1 + random.next(3) {
                    let at = random.next(bytes.len() + 1);
                    match random.next(3) {
                        0 if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        1 if at < bytes.len() => bytes[at] = alphabet[random.next(alphabet.len())],
                        _ => bytes.insert(at, alphabet[random.next(alphabet.len())]),
                    }
                }
                variants.push(bytes);
            }
            for bytes in variants {
                let ours = parse_flat_object(&bytes);
                let reference = serde_json::from_slice::<BTreeMap<String, String>>(&bytes);
                match (&ours, &reference) {
                    (Ok(entries), Ok(map)) => {
                        let ours: BTreeMap<String, String> = entries.iter().cloned().collect();
                        assert_eq!(&ours, map, "{:?}", String::from_utf8_lossy(&bytes));
                        accepted += 1;
                    }
                    (Err(FlatJsonError::DuplicateKey { .. }), Ok(_)) | (Err(_), Err(_)) => {}
                    _ => panic!(
                        "disagreement on {:?}: ours {ours:?}, serde_json {reference:?}",
                        String::from_utf8_lossy(&bytes)
                    ),
                }
                compared += 1;
            }
        }
        assert_eq!(compared, seeds.len() * 2_001);
        // Both outcomes must be well represented, or the comparison proves little.
        assert!(
            accepted > 500 && compared - accepted > 5_000,
            "{accepted} of {compared}"
        );
    }
}
