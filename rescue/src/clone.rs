//! TODO(clone): host `rescue clone` — being written.
