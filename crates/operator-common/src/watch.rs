//! Mapping a change of a user's object (a Secret named in the spec, which carries no labels of ours) to the
//! KeystoneAPIs that refer to it, through the controller's own store: no extra API call, no Secret data cached.

use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};

use keystone_types::KeystoneAPI;

/// The KeystoneAPIs in `namespace` for which `refers(spec, name)` holds.
pub fn referencing(
    store: &Store<DeserializeGuard<KeystoneAPI>>,
    namespace: &str,
    name: &str,
    refers: impl Fn(&keystone_types::KeystoneAPISpec, &str) -> bool,
) -> Vec<ObjectRef<DeserializeGuard<KeystoneAPI>>> {
    store
        .state()
        .into_iter()
        .filter_map(|g| g.0.as_ref().ok().cloned())
        .filter(|ks| ks.namespace().as_deref() == Some(namespace) && refers(&ks.spec, name))
        .map(|ks| ObjectRef::new(&ks.name_any()).within(namespace))
        .collect()
}
