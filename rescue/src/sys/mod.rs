//! The only place that issues syscalls beyond plain file I/O: mounts, module loading,
//! reboot, block-device and md ioctls. Everything else calls through here.

pub mod direct_io;
