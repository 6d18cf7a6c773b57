//! `rescue`: PID 1 of the rescue image, or a host CLI when run as a normal program.
fn main() {}
