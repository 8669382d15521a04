//! Bindings for the `quarks:policy` WIT contract (wit/policy.wit), for policies written in Rust.

/// Bindings of the `trigger` world.
pub mod trigger {
    wit_bindgen::generate!({
        world: "trigger",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_trigger",
        default_bindings_module: "quarks_policy_sdk::trigger",
    });
}

/// Bindings of the `output` world.
pub mod output {
    wit_bindgen::generate!({
        world: "output",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_output",
        default_bindings_module: "quarks_policy_sdk::output",
    });
}
