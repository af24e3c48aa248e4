//! When to rotate, pure. The interval in force is the spec's, raised to the controller's floor (two rotations
//! closer together than the kubelet's Secret refresh break lagging replicas) and to the shortest interval that
//! `maxActiveKeys` can cover (so a valid token never loses its key). A missed slot is never caught up: the next
//! rotation counts from the last one. A manual request (a new value of the KeystoneAPI's
//! `keystone.openstack.org/rotate-fernet-keys` annotation) rotates once, also not before the floor.

use std::time::Duration;

use keystone_types::rotation::min_safe_interval;

/// Rotation settings resolved from the spec and the controller flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `fernet.rotationInterval` as written.
    pub requested: Duration,
    /// `--min-rotation-interval`.
    pub floor: Duration,
    /// Shortest interval `fernet.maxActiveKeys` covers for the token settings.
    pub safe: Duration,
    /// `fernet.maxActiveKeys`.
    pub max_active_keys: u32,
}

/// Why the interval in force differs from the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adjustment {
    /// Used as written.
    None,
    /// Raised to the floor.
    Floor,
    /// Raised to the safe interval for the key count.
    TooFewKeys,
}

impl Policy {
    /// Builds the policy from durations already parsed from the spec.
    pub fn new(
        requested: Duration,
        floor: Duration,
        max_active_keys: u32,
        expiration: Duration,
        allow_expired_window: Duration,
    ) -> Self {
        let safe = min_safe_interval(max_active_keys, expiration, allow_expired_window);
        Self {
            requested,
            floor,
            safe,
            max_active_keys,
        }
    }

    /// The interval in force and why it differs from the spec.
    pub fn effective(&self) -> (Duration, Adjustment) {
        let mut interval = self.requested;
        let mut why = Adjustment::None;
        if self.safe > interval {
            interval = self.safe;
            why = Adjustment::TooFewKeys;
        }
        if self.floor > interval {
            interval = self.floor;
            why = Adjustment::Floor;
        }
        (interval, why)
    }
}

/// What the Secret records about past rotations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// Unix seconds of the last rotation (or of creation).
    pub last_rotation: i64,
    /// The manual request value already handled, if any.
    pub handled_request: Option<String>,
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Rotate now; `manual` when a pending manual request is part of the reason.
    Rotate {
        /// A manual request is being handled.
        manual: bool,
    },
    /// Nothing to do until this unix time.
    WaitUntil(i64),
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Decides whether to rotate at `now` (unix seconds).
pub fn decide(now: i64, state: &State, policy: &Policy, request: Option<&str>) -> Decision {
    let (interval, _) = policy.effective();
    let due = state.last_rotation.saturating_add(secs(interval));
    let manual_pending =
        request.is_some_and(|r| !r.is_empty() && Some(r) != state.handled_request.as_deref());
    let manual_at = state.last_rotation.saturating_add(secs(policy.floor));
    if now >= due {
        return Decision::Rotate {
            manual: manual_pending,
        };
    }
    if manual_pending {
        if now >= manual_at {
            return Decision::Rotate { manual: true };
        }
        return Decision::WaitUntil(manual_at.min(due));
    }
    Decision::WaitUntil(due)
}

/// The next scheduled rotation after one at `last` (ignoring manual requests).
pub fn next_due(last: i64, policy: &Policy) -> i64 {
    last.saturating_add(secs(policy.effective().0))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const H: u64 = 3600;

    fn policy(requested_h: u64, floor_s: u64, keys: u32) -> Policy {
        Policy::new(
            Duration::from_secs(requested_h * H),
            Duration::from_secs(floor_s),
            keys,
            Duration::from_secs(H),
            Duration::from_secs(48 * H),
        )
    }

    fn state(last: i64, handled: Option<&str>) -> State {
        State {
            last_rotation: last,
            handled_request: handled.map(str::to_owned),
        }
    }

    #[rstest]
    #[case::not_yet(1000, None, None, Decision::WaitUntil(1000 + 86_400))]
    #[case::due(1000 + 86_400, None, None, Decision::Rotate { manual: false })]
    #[case::late_is_one_rotation(1000 + 10 * 86_400, None, None, Decision::Rotate { manual: false })]
    #[case::manual_after_floor(1000 + 300, Some("a"), None, Decision::Rotate { manual: true })]
    #[case::manual_before_floor(1000 + 10, Some("a"), None, Decision::WaitUntil(1300))]
    #[case::manual_already_handled(1000 + 300, Some("a"), Some("a"), Decision::WaitUntil(1000 + 86_400))]
    #[case::new_manual_value(1000 + 300, Some("b"), Some("a"), Decision::Rotate { manual: true })]
    #[case::empty_request_ignored(1000 + 300, Some(""), None, Decision::WaitUntil(1000 + 86_400))]
    fn decisions(
        #[case] now: i64,
        #[case] request: Option<&str>,
        #[case] handled: Option<&str>,
        #[case] want: Decision,
    ) {
        assert_eq!(
            decide(now, &state(1000, handled), &policy(24, 300, 5), request),
            want
        );
    }

    #[test]
    fn interval_is_raised_to_the_floor_and_to_what_the_keys_cover() {
        assert_eq!(
            policy(24, 300, 5).effective(),
            (Duration::from_secs(24 * H), Adjustment::None)
        );
        let p = Policy::new(
            Duration::from_secs(60),
            Duration::from_secs(300),
            100,
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        assert_eq!(p.effective(), (Duration::from_secs(300), Adjustment::Floor));
        // 5 keys cannot cover 1h + 48h + 5m at 12h: the interval becomes ceil(49h5m / 3).
        let (interval, why) = policy(12, 300, 5).effective();
        assert_eq!(why, Adjustment::TooFewKeys);
        assert_eq!(interval, Duration::from_secs((49 * H + 300).div_ceil(3)));
    }
}
