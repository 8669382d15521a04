//! The built-in policies, compiled from `policies/` to wasm32-wasip2 components by
//! `host/build.rs` and embedded in the binary.
//!
//! They are ordinary components: the engine compiles and runs them exactly like a custom
//! policy, with the same limits. This module only names the bytes; it must not interpret them.

use super::World;

/// A policy shipped inside the binary.
#[derive(Debug)]
pub struct Builtin {
    /// The name used in policy selections: `builtin:<name>`.
    pub name: &'static str,
    /// The world the component implements.
    pub world: World,
    /// The component's bytes.
    pub bytes: &'static [u8],
}

/// `trigger-default`: spec.md §2 (manual / now / once / done, config-change re-runs).
pub const TRIGGER_DEFAULT: Builtin = Builtin {
    name: "trigger-default",
    world: World::Trigger,
    bytes: include_bytes!(concat!(env!("OUT_DIR"), "/trigger-default.wasm")),
};

/// `output-default`: spec.md §4 (one-to-one, fan-out, labels, versioned, writeOnFailure).
pub const OUTPUT_DEFAULT: Builtin = Builtin {
    name: "output-default",
    world: World::Output,
    bytes: include_bytes!(concat!(env!("OUT_DIR"), "/output-default.wasm")),
};

/// Built-ins are identified by name.
impl PartialEq for Builtin {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Builtin {}

static ALL: [Builtin; 2] = [TRIGGER_DEFAULT, OUTPUT_DEFAULT];

/// Every built-in policy.
pub fn all() -> &'static [Builtin] {
    &ALL
}

/// The built-in policy called `name` (without the `builtin:` prefix).
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    ALL.iter().find(|b| b.name == name)
}
