//! Every controller watches KeystoneAPI through `DeserializeGuard`, so one object that does not match this
//! controller's schema cannot stall the watch; this unwraps it for a reconcile.

use kube::core::DeserializeGuard;

use keystone_types::KeystoneAPI;

/// The KeystoneAPI, or the object's name and the deserialization error.
pub fn keystone(obj: &DeserializeGuard<KeystoneAPI>) -> Result<&KeystoneAPI, (String, String)> {
    obj.0.as_ref().map_err(|invalid| {
        (
            invalid.metadata.name.clone().unwrap_or_default(),
            invalid.error.clone(),
        )
    })
}
