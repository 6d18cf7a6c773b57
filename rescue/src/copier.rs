//! TODO(copier): being written.
