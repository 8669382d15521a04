//! kubesim integration tests.
