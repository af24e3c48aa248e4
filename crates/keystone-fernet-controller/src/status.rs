//! This controller's rows of the status: `FernetKeysReady`, `CredentialKeysReady`, the informational
//! `RotationPolicySafe`, and `status.fernet`. Written by server-side apply under this controller's field
//! manager, only when something changed. Values that are unknown this time (a corrupted set has no count)
//! are carried over, so that the record that keys once existed is never erased.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, ResourceExt};

use keystone_types::conditions::{ROTATION_POLICY_SAFE, reasons};
use keystone_types::v1beta1::FernetStatus;
use keystone_types::{KeystoneAPI, KeystoneAPIStatus, names};
use operator_common::backoff::FailedCall;
use operator_common::conditions::{Desired, reconcile};

use crate::apply::{CredentialOutcome, FernetOutcome};
use crate::schedule::{Adjustment, Policy};
use crate::{CONTROLLER, Error};

/// Go-style rendering of a duration (`24h`, `16h21m40s`, `4s`).
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

/// The informational rotation-policy condition.
pub fn policy_condition(policy: &Policy) -> Desired {
    let (interval, why) = policy.effective();
    match why {
        Adjustment::None => Desired::ok(
            ROTATION_POLICY_SAFE,
            reasons::POLICY_AS_WRITTEN,
            format!("rotating every {}", go_duration(interval)),
        ),
        Adjustment::Floor => Desired::not_ok(
            ROTATION_POLICY_SAFE,
            reasons::INTERVAL_BELOW_FLOOR,
            format!(
                "fernet.rotationInterval {} is below this controller's --min-rotation-interval; rotating every {} \
                 so that every pod receives a key set before the next rotation",
                go_duration(policy.requested),
                go_duration(interval)
            ),
        ),
        Adjustment::TooFewKeys => Desired::not_ok(
            ROTATION_POLICY_SAFE,
            reasons::TOO_FEW_KEYS,
            format!(
                "fernet.maxActiveKeys {} cannot keep tokens verifiable at fernet.rotationInterval {}; rotating every {} \
                 instead (raise maxActiveKeys to rotate as configured)",
                policy.max_active_keys,
                go_duration(policy.requested),
                go_duration(interval)
            ),
        ),
    }
}

fn time(unix: Option<i64>) -> Option<Time> {
    unix.and_then(|s| Timestamp::from_second(s).ok()).map(Time)
}

/// The status this controller wants, and whether it differs from `ks`'s.
pub fn desired(
    ks: &KeystoneAPI,
    fernet: &FernetOutcome,
    credential: &CredentialOutcome,
    policy: Option<&Desired>,
    effective_interval: Option<Duration>,
    now: Timestamp,
) -> (KeystoneAPIStatus, bool) {
    let current = ks.status.clone().unwrap_or_default();
    let prev = current.fernet.clone().unwrap_or_default();
    let name = ks.name_any();
    let section = FernetStatus {
        keys_secret: Some(names::fernet_keys_secret(&name)),
        credential_keys_secret: Some(names::credential_keys_secret(&name)),
        active_keys: fernet
            .active_keys
            .and_then(|n| i32::try_from(n).ok())
            .or(prev.active_keys),
        last_rotation_time: time(fernet.last_rotation).or(prev.last_rotation_time),
        next_rotation_time: time(fernet.next_due).or(prev.next_rotation_time),
        rotation_count: fernet.rotation_count.or(prev.rotation_count),
        effective_rotation_interval: effective_interval
            .map(go_duration)
            .or(prev.effective_rotation_interval),
        keys_hash: fernet.hash.clone().or(prev.keys_hash),
        credential_keys_hash: credential.hash.clone().or(prev.credential_keys_hash),
        handled_regenerate_ack: credential.handled_ack.clone().or(prev.handled_regenerate_ack),
        credential_rotation: credential.rotation.clone().or(prev.credential_rotation),
    };
    let mut wanted = vec![fernet.condition.clone(), credential.condition.clone()];
    wanted.extend(policy.cloned());
    let existing = current.conditions.clone().unwrap_or_default();
    let (conditions, conditions_changed) = reconcile(&existing, &wanted, ks.metadata.generation, now);
    let changed = conditions_changed || current.fernet.as_ref() != Some(&section);
    (
        KeystoneAPIStatus {
            conditions: Some(conditions),
            fernet: Some(section),
            ..Default::default()
        },
        changed,
    )
}

/// Applies `status` when `changed`.
pub async fn write(
    api: &Api<KeystoneAPI>,
    name: &str,
    status: &KeystoneAPIStatus,
    changed: bool,
) -> Result<(), Error> {
    if !changed {
        return Ok(());
    }
    operator_common::apply::apply_status(api, name, CONTROLLER, status)
        .await
        .map(|_| ())
        .map_err(|e| FailedCall::status_write(name)(e).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_render_like_kubernetes() {
        assert_eq!(go_duration(Duration::from_secs(86_400)), "24h");
        assert_eq!(go_duration(Duration::from_secs(58_900)), "16h21m40s");
        assert_eq!(go_duration(Duration::from_secs(4)), "4s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }
}
