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

/// The mapper of a watch on a kind of children this controller applies: tells `applied` about the event
/// (so that someone else's change is re-applied) and wakes the KeystoneAPI named by the child's instance
/// label. Used instead of `Controller::owns`, which offers no such hook.
pub fn child_of<K>(
    applied: std::sync::Arc<crate::apply::Applied>,
) -> impl Fn(K) -> Option<ObjectRef<DeserializeGuard<KeystoneAPI>>> + Send + Sync + 'static
where
    K: kube::Resource + Send + Sync + 'static,
    K::DynamicType: Default,
{
    move |child: K| {
        applied.observe(&child);
        let instance = child
            .meta()
            .labels
            .as_ref()?
            .get(keystone_types::labels::INSTANCE)?
            .clone();
        Some(ObjectRef::new(&instance).within(child.meta().namespace.as_deref()?))
    }
}
