//! Tools for policy authors, behind `quarks-job policy …`: a table-driven test runner
//! ([`table`], like `opa test`) and a crate template for new policies ([`template`]).

pub mod table;
pub mod template;
