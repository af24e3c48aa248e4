//! Keystone's key-count rule, shared by admission (the same formula in CEL), the fernet controller (which
//! re-checks it) and tests: a token must stay verifiable until `expiration + allowExpiredWindow` after it was
//! issued, plus an allowance Δ for a rotated Secret to reach every pod.

use std::time::Duration;

use crate::v1beta1::KEY_PROPAGATION_ALLOWANCE_SECONDS;

/// Δ, the propagation allowance.
pub const PROPAGATION_ALLOWANCE: Duration = Duration::from_secs(KEY_PROPAGATION_ALLOWANCE_SECONDS as u64);

/// `ceil((expiration + allow_expired_window + Δ) / interval) + 2`: the fewest keys (counting the staged key)
/// that keep every valid token verifiable when rotating every `interval`.
pub fn min_active_keys(expiration: Duration, allow_expired_window: Duration, interval: Duration) -> u64 {
    let need = horizon(expiration, allow_expired_window).as_secs();
    let r = interval.as_secs().max(1);
    need.div_ceil(r).saturating_add(2)
}

/// `expiration + allow_expired_window + Δ`: how long after a key stops being the primary a token it signed may
/// still be verified (and so how long the key must be kept).
pub fn horizon(expiration: Duration, allow_expired_window: Duration) -> Duration {
    horizon_with(expiration, allow_expired_window, PROPAGATION_ALLOWANCE)
}

/// [`horizon`] with another propagation allowance (the fernet controller's `--key-propagation-allowance`).
/// Saturating (parsed durations are at most about 292 years each, so this never saturates for admitted values;
/// saturating keeps it total for any input).
pub fn horizon_with(expiration: Duration, allow_expired_window: Duration, allowance: Duration) -> Duration {
    expiration
        .saturating_add(allow_expired_window)
        .saturating_add(allowance)
}

/// The shortest rotation interval at which `max_active_keys` keys are enough:
/// `ceil((expiration + allow_expired_window + Δ) / (max_active_keys - 2))`.
pub fn min_safe_interval(
    max_active_keys: u32,
    expiration: Duration,
    allow_expired_window: Duration,
) -> Duration {
    interval_covering(max_active_keys, horizon(expiration, allow_expired_window))
}

/// The shortest rotation interval at which `max_active_keys` keys cover `horizon`:
/// `ceil(horizon / (max_active_keys - 2))`.
pub fn interval_covering(max_active_keys: u32, horizon: Duration) -> Duration {
    let slots = u64::from(max_active_keys.saturating_sub(2)).max(1);
    Duration::from_secs(horizon.as_secs().div_ceil(slots))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600;

    #[test]
    fn defaults_need_five_keys() {
        let d = |h| Duration::from_secs(h * H);
        assert_eq!(min_active_keys(d(1), d(48), d(24)), 5);
        assert_eq!(min_active_keys(d(1), d(48), d(12)), 7);
        assert_eq!(min_active_keys(d(1), d(48), d(1)), 52);
        assert_eq!(min_active_keys(d(24), d(48), d(24)), 6);
    }

    #[test]
    fn safe_interval_is_the_inverse_of_the_key_count() {
        let d = |h| Duration::from_secs(h * H);
        for keys in 3..40u32 {
            let r = min_safe_interval(keys, d(1), d(48));
            assert!(
                min_active_keys(d(1), d(48), r) <= u64::from(keys),
                "{keys} keys at {r:?}"
            );
            let shorter = r - Duration::from_secs(1);
            assert!(
                min_active_keys(d(1), d(48), shorter) > u64::from(keys),
                "{keys} keys at {shorter:?}"
            );
        }
    }
}
