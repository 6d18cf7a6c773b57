//! TODO(init): being written.
