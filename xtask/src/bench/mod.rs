//! `cargo xtask bench [what]`: performance figures that live outside the test suite.

pub mod boot;
pub mod clone;
pub mod convert;
