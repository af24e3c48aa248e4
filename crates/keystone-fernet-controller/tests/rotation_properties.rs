//! Property tests of the key sets: rotation keeps Keystone's invariants, and — with a real Fernet
//! implementation — a token stays decryptable until `expiration + allowExpiredWindow` after it was issued, across
//! rotations, with pods lagging up to Δ behind, exactly when `maxActiveKeys` satisfies the key-count rule; with
//! one key fewer some token is lost (so the test can fail).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fernet::{Fernet, MultiFernet};
use keystone_fernet_controller::keys::KeySet;
use keystone_types::rotation::{PROPAGATION_ALLOWANCE, min_active_keys, min_safe_interval};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn rotation_keeps_the_invariants(seed in any::<u64>(), maxes in prop::collection::vec(3u32..12, 1..40)) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut set = KeySet::initial(&mut rng).unwrap();
        for max in maxes {
            let next = set.rotate(max, &mut rng).unwrap();
            // staged and primary present; the old staged key is the new primary
            prop_assert!(next.get(0).is_some());
            prop_assert_eq!(next.get(next.primary_index()), set.get(0));
            // indexes strictly increase: the new primary is one above the old
            prop_assert_eq!(next.primary_index(), set.primary_index() + 1);
            // the previous primary is kept as a secondary
            prop_assert_eq!(next.get(set.primary_index()), set.get(set.primary_index()));
            // never more than max, and exactly one key more than before unless pruned to max
            prop_assert!(next.len() <= usize::try_from(max).unwrap().max(set.len().min(usize::try_from(max).unwrap())));
            prop_assert!(next.len() <= set.len() + 1);
            // every retained non-staged key existed before (exactly one new key: the staged one)
            for i in next.indexes().filter(|i| *i != 0) {
                let old = if i == next.primary_index() { set.get(0) } else { set.get(i) };
                prop_assert_eq!(next.get(i), old);
            }
            prop_assert_ne!(next.get(0), set.get(0));
            set = next;
        }
    }
}

/// The key sets over time: `sets[k]` is in force from `k * r` (rotation k at time k·r).
struct History {
    sets: Vec<KeySet>,
    r: u64,
    lag: u64,
}

impl History {
    fn new(max: u32, rotations: usize, r: u64, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut sets = vec![KeySet::initial(&mut rng).unwrap()];
        for _ in 0..rotations {
            let next = sets.last().unwrap().rotate(max, &mut rng).unwrap();
            sets.push(next);
        }
        Self {
            sets,
            r,
            lag: PROPAGATION_ALLOWANCE.as_secs(),
        }
    }

    /// The set a pod holds at `time`: up to date, or lagging by Δ.
    fn held(&self, time: u64, lagging: bool) -> &KeySet {
        let t = if lagging {
            time.saturating_sub(self.lag)
        } else {
            time
        };
        let k = usize::try_from(t / self.r).unwrap().min(self.sets.len() - 1);
        &self.sets[k]
    }
}

fn fernet_of(set: &KeySet, index: u32) -> Fernet {
    Fernet::new(set.get(index).unwrap().expose()).expect("Keystone-format key accepted by Fernet")
}

fn sign(set: &KeySet, payload: &str) -> String {
    fernet_of(set, set.primary_index()).encrypt(payload.as_bytes())
}

fn verify(set: &KeySet, token: &str) -> bool {
    let all: Vec<Fernet> = set.indexes().map(|i| fernet_of(set, i)).collect();
    MultiFernet::new(all).decrypt(token).is_ok()
}

/// Issues tokens at the riskiest moments of each rotation slot, from up-to-date and lagging pods, and checks
/// each at issue time and at the end of its verifiable life, on up-to-date and lagging pods. Returns the
/// first failure.
fn first_loss(e: u64, w: u64, r: u64, max: u32, seed: u64) -> Option<String> {
    let life = e + w;
    let slots = usize::try_from(max).unwrap() + 2;
    let rotations = slots + usize::try_from((life + 2 * r) / r).unwrap() + 2;
    let h = History::new(max, rotations, r, seed);
    for k in 1..slots as u64 {
        let start = k * r;
        for t in [start, start + r / 2, start + r - 1, start + r + h.lag - 1] {
            for signer_lags in [false, true] {
                let token = sign(h.held(t, signer_lags), "payload");
                for (u, verifier_lags) in [(t, true), (t, false), (t + life, false), (t + life, true)] {
                    if !verify(h.held(u, verifier_lags), &token) {
                        return Some(format!(
                            "token issued at {t}s (signer lagging: {signer_lags}) not verifiable at {u}s (verifier \
                             lagging: {verifier_lags}) with E={e}s W={w}s R={r}s max={max}"
                        ));
                    }
                }
            }
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn tokens_survive_exactly_when_the_key_count_rule_holds(
        e in 60u64..=86_400,
        w in 0u64..=172_800,
        keys in 4u32..=12,
        seed in any::<u64>(),
    ) {
        let (ed, wd) = (Duration::from_secs(e), Duration::from_secs(w));
        let r = min_safe_interval(keys, ed, wd).as_secs();
        let m = u32::try_from(min_active_keys(ed, wd, Duration::from_secs(r))).unwrap();
        prop_assert!(m <= keys);
        prop_assert_eq!(first_loss(e, w, r, m, seed), None);
        if m > 3 {
            prop_assert!(first_loss(e, w, r, m - 1, seed).is_some(), "one key fewer than the rule lost nothing");
        }
    }
}

#[test]
fn defaults_survive_and_four_keys_do_not() {
    let (e, w, r) = (3_600, 172_800, 86_400);
    assert_eq!(
        min_active_keys(
            Duration::from_secs(e),
            Duration::from_secs(w),
            Duration::from_secs(r)
        ),
        5
    );
    assert_eq!(first_loss(e, w, r, 5, 1), None);
    assert!(first_loss(e, w, r, 4, 1).is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any mix of manual requests (at any spacing), scheduled rotations and changes of `maxActiveKeys`: no
    /// rotation drops a key sooner than the horizon after it stopped signing, so every token stays verifiable
    /// for its whole life.
    #[test]
    fn no_request_pattern_drops_the_key_of_a_valid_token(
        seed in any::<u64>(),
        steps in prop::collection::vec((1i64..=4_000, any::<bool>(), 3u32..=8), 1..120),
        floor in 1u64..=600,
        interval_h in 1u64..=48,
    ) {
        use std::collections::BTreeMap;
        use keystone_fernet_controller::schedule::{self, Decision, Policy, State};

        let mut rng = StdRng::seed_from_u64(seed);
        let mut set = KeySet::initial(&mut rng).unwrap();
        let mut promoted = BTreeMap::from([(1u32, 0i64)]);
        let mut state = State { last_rotation: 0, handled_request: None, prune_safe_at: i64::MIN };
        let mut now = 0i64;
        for (n, (gap, request, max)) in steps.into_iter().enumerate() {
            now += gap;
            let policy = Policy::new(
                Duration::from_secs(interval_h * 3_600),
                Duration::from_secs(floor),
                max,
                Duration::from_secs(600),
                Duration::from_secs(1_200),
                PROPAGATION_ALLOWANCE,
            );
            let horizon = i64::try_from(policy.horizon.as_secs()).unwrap();
            state.prune_safe_at =
                schedule::prune_safe_at(set.indexes(), &promoted, state.last_rotation, max, policy.horizon);
            let value = format!("r{n}");
            let request = request.then_some(value.as_str());
            if let Decision::Rotate { manual } = schedule::decide(now, &state, &policy, request) {
                let next = set.rotate(max, &mut rng).unwrap();
                for dropped in set.indexes().filter(|i| *i != 0 && next.get(*i).is_none()) {
                    // It stopped signing when the next higher key was promoted.
                    let successor = set.indexes().find(|i| *i > dropped).unwrap();
                    let stopped = promoted[&successor];
                    prop_assert!(
                        now - stopped >= horizon,
                        "key {} dropped {} s after it stopped signing (horizon {} s)", dropped, now - stopped, horizon
                    );
                }
                promoted.insert(next.primary_index(), now);
                promoted.retain(|i, _| next.get(*i).is_some());
                state.last_rotation = now;
                if manual {
                    state.handled_request = request.map(str::to_owned);
                }
                set = next;
            }
        }
    }
}
