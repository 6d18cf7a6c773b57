//! TODO(direct_io): opening devices for O_DIRECT I/O; being written.
