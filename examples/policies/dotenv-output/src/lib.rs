//! Example output policy: the Secrets of the built-in policy (spec.md §4), each with one more
//! key, `.env`, holding all of the Secret's values as `NAME="value"` lines, ready for
//! `envFrom`-less consumers that source a file (`set -a; . /secret/.env`).
//!
//! Names are upper-cased, with every character outside `[A-Z0-9_]` replaced by `_`; values
//! are double-quoted with `\`, `"`, `$`, `` ` `` and newlines escaped.
//!
//! Build: `cargo build -p example-dotenv-output --target wasm32-wasip2 --release`.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

use quarks_policy_sdk::Reason;
use quarks_policy_sdk::output::{Guest, OutputInput, OutputResult};

// No `quarks_policy_sdk::no_std_runtime!()` here: `output-default` brings it (a component has one
// allocator and one panic handler). A policy without such a dependency declares it.

/// The extra key each Secret gets.
pub const DOTENV_KEY: &str = ".env";

pub struct DotenvOutput;

impl Guest for DotenvOutput {
    fn transform(input: OutputInput) -> Result<OutputResult, Reason> {
        transform(&input)
    }
}

#[cfg(target_arch = "wasm32")]
quarks_policy_sdk::export_output!(DotenvOutput);

/// The built-in Secrets, each with a `.env` key added.
pub fn transform(input: &OutputInput) -> Result<OutputResult, Reason> {
    let mut result = output_default::transform(input)?;
    for secret in &mut result.secrets {
        let dotenv = dotenv(&secret.data);
        secret.data.push((String::from(DOTENV_KEY), dotenv));
    }
    Ok(result)
}

/// `NAME="value"` lines, in the order of the data.
pub fn dotenv(data: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = String::new();
    for (key, value) in data {
        for c in key.chars() {
            out.push(match c {
                'a'..='z' => c.to_ascii_uppercase(),
                'A'..='Z' | '0'..='9' | '_' => c,
                _ => '_',
            });
        }
        out.push_str("=\"");
        for c in String::from_utf8_lossy(value).chars() {
            match c {
                '\\' | '"' | '$' | '`' => {
                    out.push('\\');
                    out.push(c);
                }
                '\n' => out.push_str("\\n"),
                _ => out.push(c),
            }
        }
        out.push_str("\"\n");
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_and_names_made_shell_safe() {
        let data = vec![
            ("foo".into(), b"1".to_vec()),
            ("db.pass-word".into(), b"a\"b$c\nd".to_vec()),
        ];
        assert_eq!(
            String::from_utf8(dotenv(&data)).unwrap(),
            "FOO=\"1\"\nDB_PASS_WORD=\"a\\\"b\\$c\\nd\"\n"
        );
    }
}
