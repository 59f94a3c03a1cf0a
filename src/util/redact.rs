//! The one way a secret shows in `Debug` output: as `[redacted]`, whatever it holds.

use std::fmt;

/// Stands in a `Debug` impl for a secret field: prints `[redacted]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Redacted;

/// The value to put in a `Debug` impl in place of a secret.
pub const REDACTED: Redacted = Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `Some([redacted])` for a secret that is there, `None` for one that is not.
pub fn redact_option<T>(secret: &Option<T>) -> Option<Redacted> {
    secret.as_ref().map(|_| REDACTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_no_value() {
        assert_eq!(format!("{REDACTED:?}"), "[redacted]");
        assert_eq!(
            format!("{:?}", redact_option(&Some("s3cret"))),
            "Some([redacted])"
        );
        assert_eq!(format!("{:?}", redact_option::<String>(&None)), "None");
    }
}
