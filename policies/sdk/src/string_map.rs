//! Helpers for the contract's `string-map` (`Vec<(String, String)>`): labels and annotations.
//!
//! The contract keeps maps as ordered lists so that a policy's output is deterministic and
//! shows keys in the order they were chosen; the host rejects duplicate keys in anything a
//! policy returns. These helpers keep a map free of duplicates while preserving order.

use alloc::string::String;

use crate::types::StringMap;

/// The value of `key`, if present.
pub fn get<'a>(map: &'a StringMap, key: &str) -> Option<&'a str> {
    map.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Sets `key` to `value`: replaces the value in place when the key exists (it keeps its
/// position), appends otherwise.
pub fn set(map: &mut StringMap, key: impl Into<String>, value: impl Into<String>) {
    let key = key.into();
    let value = value.into();
    match map.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => map.push((key, value)),
    }
}

/// Merges maps in order: a key keeps the position of its first appearance and the value of
/// its last ("later wins"), which is how label layers (QuarksJob-wide, then per file, then
/// the operator's own) are combined.
pub fn merge<'a>(layers: impl IntoIterator<Item = &'a StringMap>) -> StringMap {
    let mut merged = StringMap::new();
    for layer in layers {
        for (key, value) in layer {
            set(&mut merged, key.as_str(), value.as_str());
        }
    }
    merged
}

/// The first key that appears more than once, if any.
pub fn first_duplicate_key(map: &StringMap) -> Option<&str> {
    let mut seen = alloc::collections::BTreeSet::new();
    map.iter()
        .map(|(k, _)| k.as_str())
        .find(|k| !seen.insert(*k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> StringMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn set_replaces_in_place_and_appends_new_keys() {
        let mut m = map(&[("a", "1"), ("b", "2")]);
        set(&mut m, "a", "3");
        set(&mut m, "c", "4");
        assert_eq!(m, map(&[("a", "3"), ("b", "2"), ("c", "4")]));
        assert_eq!(get(&m, "a"), Some("3"));
        assert_eq!(get(&m, "z"), None);
    }

    #[test]
    fn merge_later_layers_win_and_first_position_is_kept() {
        let merged = merge([
            &map(&[("team", "a"), ("env", "prod")]),
            &map(&[("team", "b"), ("file", "x")]),
        ]);
        assert_eq!(
            merged,
            map(&[("team", "b"), ("env", "prod"), ("file", "x")])
        );
        assert_eq!(first_duplicate_key(&merged), None);
    }

    #[test]
    fn duplicates_are_found() {
        assert_eq!(
            first_duplicate_key(&map(&[("a", "1"), ("b", "2"), ("a", "3")])),
            Some("a")
        );
    }
}
