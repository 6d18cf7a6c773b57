//! TODO(cmdline): being written.
