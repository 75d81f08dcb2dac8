//! Debug output never shows header values or payload bytes: they can hold credentials and PHI,
//! and a `?value` in a log line must not leak them.

use std::fmt;

/// Stands in for bytes in Debug output: prints their count only.
pub(crate) struct Redacted(pub(crate) usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}
