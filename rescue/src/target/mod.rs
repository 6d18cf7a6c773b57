//! PLACEHOLDER(lead): replaced by the target branch; the adapter below stays.

use crate::convert::plan::ConvertPlan;
use std::path::Path;

pub const FILES: &[&str] = &[];

pub fn configure(
    _root: &Path,
    _plan: &ConvertPlan,
) -> Result<(Vec<String>, Vec<(String, String)>), String> {
    Err("target configuration not merged yet".into())
}
