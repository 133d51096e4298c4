//! Retry delays shared by consumer groups and webhooks: exponential, capped, jittered.

use std::time::Duration;

/// Retry delays: `initialMs × factor^(attempt-1)`, capped at `maxMs`, with ±20% jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// No delay is longer, jitter included.
    pub max: Duration,
    /// Growth per further attempt.
    pub factor: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            factor: 2.0,
        }
    }
}

impl Backoff {
    /// Delay before the next call after `failed_calls` failed ones.
    pub fn delay(&self, failed_calls: u32) -> Duration {
        let exp = self
            .factor
            .powi(i32::try_from(failed_calls.saturating_sub(1)).unwrap_or(i32::MAX));
        let base = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        // The low bits of a UUIDv7 are random: jitter without another RNG.
        let random = (uuid::Uuid::now_v7().as_u128() as u64 % 1000) as f64 / 1000.0;
        let jitter = 0.8 + 0.4 * random;
        Duration::from_secs_f64((base * jitter).min(self.max.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            factor: 2.0,
        };
        let ms = |n| b.delay(n).as_millis();
        assert!((80..=120).contains(&ms(1)), "{}", ms(1));
        assert!((160..=240).contains(&ms(2)), "{}", ms(2));
        assert!((320..=480).contains(&ms(3)), "{}", ms(3));
        assert!(ms(10) <= 1000);
        assert!(ms(10) >= 800);
    }
}
