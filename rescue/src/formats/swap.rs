//! TODO(swap): being written.
