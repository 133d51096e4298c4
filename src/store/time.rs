//! Time conversions the backends share.

use std::time::Duration;

/// `d` in whole milliseconds, as leases are bound to SQL; a lease too long for an `i64` is as good
/// as forever, so it saturates rather than fails.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_truncates_and_saturates() {
        assert_eq!(millis(Duration::from_micros(2_999)), 2);
        assert_eq!(millis(Duration::MAX), i64::MAX);
    }
}
