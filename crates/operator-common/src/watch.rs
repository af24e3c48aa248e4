//! What wakes a controller: mapping a change of a user's object (a Secret named in the spec, which carries no
//! labels of ours) to the KeystoneAPIs that refer to it, through the controller's own store (no extra API call,
//! no Secret data cached); children's events; and the KeystoneAPI watch itself, minus the controller's own
//! status writes.

use std::hash::{Hash, Hasher};

use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};

use keystone_types::KeystoneAPI;
use keystone_types::conditions::{self, Controller};

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

/// The status fields each controller writes, besides its conditions.
pub(crate) fn own_sections(controller: Controller) -> &'static [&'static str] {
    match controller {
        Controller::Api => &["api", "apiEndpoints", "readyCount", "networkAttachments"],
        Controller::Fernet => &["fernet"],
        Controller::Db => &["database"],
    }
}

/// A hash of a KeystoneAPI as `controller` needs to see it: everything except what `controller` writes itself
/// (its conditions and status fields) and what every write changes (`resourceVersion`, `managedFields`). Its
/// own status writes, about half of the status changes while an instance converges, then do not wake it
/// again: they only record what the reconcile that made them already knew. `None` (never filtered) for an
/// object that does not deserialize.
pub fn changed_by_others(controller: Controller) -> impl Fn(&DeserializeGuard<KeystoneAPI>) -> Option<u64> {
    move |guard: &DeserializeGuard<KeystoneAPI>| {
        let ks = guard.0.as_ref().ok()?;
        let mut value = serde_json::to_value(ks).ok()?;
        if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
        if let Some(status) = value.get_mut("status").and_then(|s| s.as_object_mut()) {
            for section in own_sections(controller) {
                status.remove(*section);
            }
            if let Some(conds) = status.get_mut("conditions").and_then(|c| c.as_array_mut()) {
                conds.retain(|c| {
                    c.get("type")
                        .and_then(|t| t.as_str())
                        .and_then(conditions::writer_of)
                        != Some(controller)
                });
            }
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        value.to_string().hash(&mut h);
        Some(h.finish())
    }
}

/// The controller of `controller` over the KeystoneAPIs `api` sees, woken by every change except its own
/// status writes ([`changed_by_others`]). The store still sees every version.
pub fn keystoneapi_controller(
    api: kube::Api<DeserializeGuard<KeystoneAPI>>,
    controller: Controller,
) -> kube::runtime::Controller<DeserializeGuard<KeystoneAPI>> {
    let (reader, writer) = kube::runtime::reflector::store();
    let events = kube::runtime::reflector(writer, watcher(api, watcher::Config::default().any_semantic()))
        .applied_objects()
        .predicate_filter(changed_by_others(controller), PredicateConfig::default());
    kube::runtime::Controller::for_stream(events, reader)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ks(
        rv: &str,
        generation: i64,
        conditions: serde_json::Value,
        db: serde_json::Value,
    ) -> DeserializeGuard<KeystoneAPI> {
        // The api section changes with the api controller's write (rv "2" below).
        let config_hash = if rv == "2" { "new" } else { "old" };
        DeserializeGuard(Ok(serde_json::from_value(json!({
            "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI",
            "metadata": {"name": "k", "namespace": "ns", "resourceVersion": rv, "generation": generation,
                         "managedFields": [{"manager": rv}]},
            "spec": {},
            "status": {"conditions": conditions, "database": db, "api": {"configHash": config_hash}},
        }))
        .unwrap()))
    }

    fn cond(type_: &str, status: &str) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": "R", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"})
    }

    #[test]
    fn own_status_writes_do_not_count_others_do() {
        let api = changed_by_others(Controller::Api);
        let db = changed_by_others(Controller::Db);
        let base = ks(
            "1",
            1,
            json!([cond("ConfigReady", "False"), cond("DatabaseReady", "False")]),
            json!({}),
        );
        // The api controller's own write: its condition and section change, and the resourceVersion.
        let api_write = ks(
            "2",
            1,
            json!([cond("ConfigReady", "True"), cond("DatabaseReady", "False")]),
            json!({}),
        );
        assert_eq!(api(&base), api(&api_write));
        assert_ne!(db(&base), db(&api_write));
        // The db controller's write wakes the api controller.
        let db_write = ks(
            "3",
            1,
            json!([cond("ConfigReady", "False"), cond("DatabaseReady", "True")]),
            json!({"passwordSecretVersion": "7"}),
        );
        assert_ne!(api(&base), api(&db_write));
        assert_eq!(db(&base), db(&db_write));
        // A new generation wakes everyone.
        let spec = ks(
            "4",
            2,
            json!([cond("ConfigReady", "False"), cond("DatabaseReady", "False")]),
            json!({}),
        );
        assert_ne!(api(&base), api(&spec));
        assert_ne!(db(&base), db(&spec));
        // Informational conditions belong to their writer.
        let migrating = ks(
            "5",
            1,
            json!([
                cond("ConfigReady", "False"),
                cond("DatabaseReady", "False"),
                cond("CredentialMigrationReady", "False")
            ]),
            json!({}),
        );
        assert_eq!(db(&base), db(&migrating));
        assert_ne!(
            changed_by_others(Controller::Fernet)(&base),
            changed_by_others(Controller::Fernet)(&migrating)
        );
    }
}
