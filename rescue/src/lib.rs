//! The rescue system: disk inspection, on-disk formats, the storage engine and the PID 1
//! that drives them. The binary in `main.rs` is a thin shell over this library.
//!
//! Layers (see ARCHITECTURE.md): `units` and `formats::*` are pure (they only see
//! `Read + Seek` / `Write + Seek`); `sys` is the only module that issues syscalls beyond
//! plain file I/O; `inspect`, `copier` and `init` orchestrate.

pub mod arrays;
pub mod backup;
pub mod backup_job;
pub mod clone;
pub mod cmdline;
pub mod convert;
pub mod copier;
pub mod devices;
pub mod extract;
pub mod formats;
pub mod fuzzing;
pub mod heartbeat;
pub mod init;
pub mod inspect;
pub mod kmod;
pub mod module_loader;
pub mod replace;
pub mod report;
pub mod stick;
pub mod sys;
pub mod target_root;
pub mod units;
