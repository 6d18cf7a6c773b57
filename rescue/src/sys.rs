//! TODO(sys): being written.
