//! When to rotate, pure. The interval in force is the spec's, raised to the controller's floor (two rotations
//! closer together than the kubelet's Secret refresh break lagging replicas) and to the shortest interval that
//! `maxActiveKeys` can cover. A missed slot is never caught up: the next rotation counts from the last one. A
//! manual request (a new value of the KeystoneAPI's `keystone.openstack.org/rotate-fernet-keys` annotation)
//! rotates once, also not before the floor.
//!
//! Every rotation, scheduled or manual, obeys one more rule: it never drops a key that may still verify a
//! token. A key stops signing when the next key is promoted, and its tokens stay verifiable for the horizon
//! (`expiration + allowExpiredWindow + Δ`) after that; a rotation that would prune it waits until then. The
//! promotion time of every key is recorded with the keys, so the rule holds whatever mix of scheduled and
//! manual rotations, or lowering of `maxActiveKeys`, came before (a burst of manual requests cannot prune the
//! key of a valid token).

use std::collections::BTreeMap;
use std::time::Duration;

use keystone_types::rotation::{horizon_with, interval_covering};

/// How far in the future (seconds) a recorded rotation time may be before it counts as wrong rather than as
/// another replica's clock running a little ahead.
pub const CLOCK_SKEW_TOLERANCE: i64 = 60;

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
    /// How long a key must be kept after it stops being the primary.
    pub horizon: Duration,
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
    /// Builds the policy from durations already parsed from the spec and the controller's propagation
    /// allowance Δ (`--key-propagation-allowance`).
    pub fn new(
        requested: Duration,
        floor: Duration,
        max_active_keys: u32,
        expiration: Duration,
        allow_expired_window: Duration,
        allowance: Duration,
    ) -> Self {
        let horizon = horizon_with(expiration, allow_expired_window, allowance);
        Self {
            requested,
            floor,
            safe: interval_covering(max_active_keys, horizon),
            max_active_keys,
            horizon,
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
    /// The earliest unix time at which the next rotation drops no key that may still verify a token
    /// ([`prune_safe_at`]).
    pub prune_safe_at: i64,
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

/// Whether `request` is a manual rotation request not handled yet.
pub fn manual_pending(state: &State, request: Option<&str>) -> bool {
    request.is_some_and(|r| !r.is_empty() && Some(r) != state.handled_request.as_deref())
}

/// Decides whether to rotate at `now` (unix seconds).
pub fn decide(now: i64, state: &State, policy: &Policy, request: Option<&str>) -> Decision {
    let due = next_due(state, policy);
    let manual_pending = manual_pending(state, request);
    let manual_at = manual_at(state, policy);
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

/// The next scheduled rotation (ignoring manual requests): one interval after the last, and not before the
/// key it would drop has outlived its tokens.
pub fn next_due(state: &State, policy: &Policy) -> i64 {
    state
        .last_rotation
        .saturating_add(secs(policy.effective().0))
        .max(state.prune_safe_at)
}

/// The earliest time a manual request can be acted on: the floor after the last rotation, and not before the
/// key it would drop has outlived its tokens.
pub fn manual_at(state: &State, policy: &Policy) -> i64 {
    state
        .last_rotation
        .saturating_add(secs(policy.floor))
        .max(state.prune_safe_at)
}

/// The earliest unix time at which rotating a set whose non-staged key indexes are `indexes` (any order) drops
/// no key that may still verify a token; `i64::MIN` when the rotation drops nothing.
///
/// A rotation keeps the new primary and the `max_active_keys - 2` highest old keys, dropping the rest. The
/// newest key dropped stopped signing when the key above it was promoted; its tokens stay verifiable for the
/// horizon after that. `promoted` holds the recorded promotion times; a key without one (a Secret written
/// before they were recorded, or adopted) is taken to have been promoted as late as the nearest higher key with
/// a known time, the primary's being `last_rotation`: promotion times grow with the index, so that is never
/// earlier than the truth.
pub fn prune_safe_at(
    indexes: impl IntoIterator<Item = u32>,
    promoted: &BTreeMap<u32, i64>,
    last_rotation: i64,
    max_active_keys: u32,
    horizon: Duration,
) -> i64 {
    let mut old: Vec<u32> = indexes.into_iter().filter(|i| *i != 0).collect();
    old.sort_unstable();
    let keep = usize::try_from(max_active_keys.saturating_sub(2).max(1)).unwrap_or(usize::MAX);
    let dropped = old.len().saturating_sub(keep);
    if dropped == 0 {
        return i64::MIN;
    }
    let primary = old.last().copied();
    let stopped_signing = old[dropped..]
        .iter()
        .find_map(|i| {
            promoted
                .get(i)
                .copied()
                .or((Some(*i) == primary).then_some(last_rotation))
        })
        .unwrap_or(last_rotation);
    stopped_signing.saturating_add(secs(horizon))
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
            keystone_types::rotation::PROPAGATION_ALLOWANCE,
        )
    }

    fn state(last: i64, handled: Option<&str>) -> State {
        State {
            last_rotation: last,
            handled_request: handled.map(str::to_owned),
            prune_safe_at: i64::MIN,
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
            keystone_types::rotation::PROPAGATION_ALLOWANCE,
        );
        assert_eq!(p.effective(), (Duration::from_secs(300), Adjustment::Floor));
        // 5 keys cannot cover 1h + 48h + 5m at 12h: the interval becomes ceil(49h5m / 3).
        let (interval, why) = policy(12, 300, 5).effective();
        assert_eq!(why, Adjustment::TooFewKeys);
        assert_eq!(interval, Duration::from_secs((49 * H + 300).div_ceil(3)));
    }

    /// Horizon of `policy(_, _, _)`: 1 h + 48 h + Δ.
    const HORIZON: i64 = 49 * 3600 + 300;

    #[test]
    fn a_rotation_that_drops_nothing_is_never_held_back() {
        // A new set (0, 1) and one rotation later (0, 1, 2) with 3 keys: nothing is dropped.
        let promoted = BTreeMap::from([(1, 1000)]);
        assert_eq!(
            prune_safe_at([0, 1], &promoted, 1000, 3, policy(24, 300, 3).horizon),
            i64::MIN
        );
        assert_eq!(
            prune_safe_at([0, 1, 2, 3], &promoted, 1000, 5, policy(24, 300, 5).horizon),
            i64::MIN
        );
    }

    #[test]
    fn the_newest_dropped_key_is_kept_until_its_tokens_expire() {
        let p = policy(24, 300, 3);
        // Keys 1, 2 (primary): rotating drops 1, which stopped signing when 2 was promoted at 5000.
        let promoted = BTreeMap::from([(1, 1000), (2, 5000)]);
        assert_eq!(p.horizon, Duration::from_secs(HORIZON as u64));
        assert_eq!(
            prune_safe_at([0, 1, 2], &promoted, 5000, 3, p.horizon),
            5000 + HORIZON
        );
        // maxActiveKeys lowered from 6 to 4: the old primary 5 and 4 stay, 1, 2 and 3 are dropped; 3 stopped
        // signing when 4 was promoted.
        let promoted = BTreeMap::from([(1, 10), (2, 20), (3, 30), (4, 40), (5, 50)]);
        assert_eq!(
            prune_safe_at([0, 1, 2, 3, 4, 5], &promoted, 50, 4, p.horizon),
            40 + HORIZON
        );
        // …and to 3: only the old primary stays.
        assert_eq!(
            prune_safe_at([0, 1, 2, 3, 4, 5], &promoted, 50, 3, p.horizon),
            50 + HORIZON
        );
    }

    #[test]
    fn an_unrecorded_promotion_counts_as_late_as_the_next_known_one() {
        let horizon = policy(24, 300, 3).horizon;
        // Nothing recorded: the primary's promotion is the last rotation.
        assert_eq!(
            prune_safe_at([0, 1, 2], &BTreeMap::new(), 7000, 3, horizon),
            7000 + HORIZON
        );
        // Key 3 unrecorded, key 4 known: 3 was promoted no later than 4.
        let promoted = BTreeMap::from([(4, 4000)]);
        assert_eq!(
            prune_safe_at([0, 2, 3, 4, 5], &promoted, 9000, 4, horizon),
            4000 + HORIZON
        );
    }

    #[test]
    fn a_burst_of_manual_requests_never_prunes_the_key_of_a_valid_token() {
        // Five keys, the floor at 5 minutes, a new request value every minute for three days; each rotation
        // prunes the lowest keys while more than five remain. Every key dropped must have stopped signing at
        // least the horizon before.
        const KEYS: u32 = 5;
        let p = policy(24, 300, KEYS);
        let mut keys: Vec<u32> = vec![0, 1];
        let mut promoted = BTreeMap::from([(1u32, 0i64)]);
        let mut st = state(0, None);
        let mut rotated_at = Vec::new();
        for minute in 1..(3 * 24 * 60) {
            let now = minute * 60;
            let request = format!("r{minute}");
            st.prune_safe_at =
                prune_safe_at(keys.iter().copied(), &promoted, st.last_rotation, KEYS, p.horizon);
            if let Decision::Rotate { manual } = decide(now, &st, &p, Some(&request)) {
                rotated_at.push(now);
                let primary = *keys.last().unwrap();
                keys.push(primary + 1);
                promoted.insert(primary + 1, now);
                while keys.len() > KEYS as usize {
                    let dropped = keys.remove(1);
                    let stopped = promoted[&(dropped + 1)];
                    assert!(
                        now - stopped >= HORIZON,
                        "key {dropped} dropped {} s after it stopped signing",
                        now - stopped
                    );
                    promoted.remove(&dropped);
                }
                st.last_rotation = now;
                assert!(manual, "every rotation here answers a request");
                st.handled_request = Some(request);
            }
        }
        // Three rotations at the floor fill the set; each later one waits for the key it drops.
        assert_eq!(&rotated_at[..4], &[300, 600, 900, 300 + HORIZON]);
        assert_eq!(rotated_at.len(), 6, "{rotated_at:?}");
    }

    #[test]
    fn status_times_include_the_pruning_rule() {
        let p = policy(24, 300, 3);
        let st = State {
            last_rotation: 1000,
            handled_request: None,
            prune_safe_at: 1000 + HORIZON,
        };
        assert_eq!(next_due(&st, &p), 1000 + HORIZON);
        assert_eq!(manual_at(&st, &p), 1000 + HORIZON);
        assert_eq!(
            decide(1300, &st, &p, Some("x")),
            Decision::WaitUntil(1000 + HORIZON)
        );
    }
}
