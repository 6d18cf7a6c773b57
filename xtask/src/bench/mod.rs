//! `cargo xtask bench [what]`: performance figures that live outside the test suite.

pub mod clone;
