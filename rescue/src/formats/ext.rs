//! TODO(ext): being written.
