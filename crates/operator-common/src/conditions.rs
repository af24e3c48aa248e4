//! Condition bookkeeping for a controller's own rows of the contract: keeps `lastTransitionTime` unless the
//! status flips, stamps `observedGeneration`, and tells whether anything changed, so that no-op status writes
//! are skipped (three controllers watching one object would otherwise wake each other forever).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// What a controller wants a condition to say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// Condition type (a constant from `keystone_types::conditions`).
    pub type_: &'static str,
    /// True or False (Unknown is reserved for "not looked at yet").
    pub status: bool,
    /// PascalCase reason.
    pub reason: String,
    /// Human-readable message; never a secret.
    pub message: String,
}

impl Desired {
    /// A True condition.
    pub fn ok(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: true,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A False condition.
    pub fn not_ok(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Builds the condition to write: `lastTransitionTime` is kept from `existing` when the status is unchanged.
pub fn next(
    existing: Option<&Condition>,
    desired: &Desired,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if desired.status { "True" } else { "False" }.to_owned();
    let last_transition_time = match existing {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(now),
    };
    Condition {
        type_: desired.type_.to_owned(),
        status,
        reason: desired.reason.clone(),
        message: desired.message.clone(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// The conditions to write for `desired`, and whether any differs from what `current` holds.
pub fn reconcile(
    current: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: Timestamp,
) -> (Vec<Condition>, bool) {
    let mut changed = false;
    let out = desired
        .iter()
        .map(|d| {
            let existing = current.iter().find(|c| c.type_ == d.type_);
            let c = next(existing, d, generation, now);
            if existing != Some(&c) {
                changed = true;
            }
            c
        })
        .collect();
    (out, changed)
}

/// A controller's own rows after some of them changed: every type in `owned`, in that order, is `changed`'s
/// row when there is one (built with [`next`]) and otherwise the current row as it stands (its
/// `observedGeneration` included: nothing new was learned about it); types with neither are left out.
pub fn replace_own<'a>(
    current: &[Condition],
    owned: impl IntoIterator<Item = &'a str>,
    changed: &[Desired],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    owned
        .into_iter()
        .filter_map(|t| {
            let existing = current.iter().find(|c| c.type_ == t);
            match changed.iter().find(|d| d.type_ == t) {
                Some(d) => Some(next(existing, d, generation, now)),
                None => existing.cloned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn keeps_transition_time_while_status_holds() {
        let d = Desired::ok("FernetKeysReady", "Succeeded", "5 keys");
        let first = next(None, &d, Some(1), ts(100));
        assert_eq!(first.last_transition_time, Time(ts(100)));
        let d2 = Desired::ok("FernetKeysReady", "Rotated", "5 keys, rotated");
        let second = next(Some(&first), &d2, Some(2), ts(200));
        assert_eq!(second.last_transition_time, Time(ts(100)));
        assert_eq!(second.observed_generation, Some(2));
        let d3 = Desired::not_ok("FernetKeysReady", "InvalidKeys", "key 3 malformed");
        let third = next(Some(&second), &d3, Some(2), ts(300));
        assert_eq!(third.last_transition_time, Time(ts(300)));
        assert_eq!(third.status, "False");
    }

    #[test]
    fn detects_no_op_and_generation_bumps() {
        let desired = [Desired::ok("DBSyncReady", "Succeeded", "synced")];
        let (first, changed) = reconcile(&[], &desired, Some(1), ts(10));
        assert!(changed);
        let (_, changed) = reconcile(&first, &desired, Some(1), ts(20));
        assert!(!changed, "same status, same generation must be a no-op");
        let (bumped, changed) = reconcile(&first, &desired, Some(2), ts(30));
        assert!(
            changed,
            "a new generation must be written even when nothing else changed"
        );
        assert_eq!(bumped[0].last_transition_time, Time(ts(10)));
    }
}
