//! Pure: the KeystoneAPI spec → the rotation policy. Admission already enforces the grammar and the key-count
//! rule; this re-checks them, because an object may predate the current CRD.

use std::time::Duration;

use keystone_types::KeystoneAPISpec;
use keystone_types::duration::parse;

use crate::schedule::Policy;

/// The rotation policy for `spec` with the controller's floor and propagation allowance, or the message for an
/// `InvalidSpec` condition.
pub fn policy(spec: &KeystoneAPISpec, floor: Duration, allowance: Duration) -> Result<Policy, String> {
    let field = |name: &str, value: &str| parse(value).map_err(|e| format!("spec.{name}: {e}"));
    let requested = field("fernet.rotationInterval", &spec.fernet.rotation_interval)?;
    let expiration = field("token.expiration", &spec.token.expiration)?;
    let window = field("token.allowExpiredWindow", &spec.token.allow_expired_window)?;
    if requested.is_zero() {
        return Err("spec.fernet.rotationInterval must be positive".into());
    }
    let max = u32::try_from(spec.fernet.max_active_keys)
        .ok()
        .filter(|m| *m >= 3)
        .ok_or_else(|| {
            format!(
                "spec.fernet.maxActiveKeys must be at least 3, not {}",
                spec.fernet.max_active_keys
            )
        })?;
    Ok(Policy::new(requested, floor, max, expiration, window, allowance))
}
