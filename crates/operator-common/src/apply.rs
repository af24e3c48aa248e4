//! Server-side apply. Children are applied with force under the controller's field manager, because the
//! controller owns them (key Secrets are the exception and do not use this: see the fernet controller). A
//! controller's status is applied with only its own conditions and section, so the three controllers' applies
//! merge entry by entry in the `conditions` list-map and never claim each other's fields.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use keystone_types::KeystoneAPI;
use keystone_types::conditions::Controller;

/// Force-applies a namespaced child object under `controller`'s field manager.
pub async fn apply_child<K>(client: &Client, controller: Controller, child: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Serialize + DeserializeOwned + Clone + Debug,
    K::DynamicType: Default,
{
    let ns = child.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    api.patch(
        &child.name_any(),
        &PatchParams::apply(controller.field_manager()).force(),
        &Patch::Apply(child),
    )
    .await
}

/// Applies `status` (which must hold only this controller's fields) to the status subresource.
pub async fn apply_status(
    api: &Api<KeystoneAPI>,
    name: &str,
    controller: Controller,
    status: &keystone_types::KeystoneAPIStatus,
) -> Result<KeystoneAPI, kube::Error> {
    let patch = serde_json::json!({
        "apiVersion": "keystone.openstack.org/v1beta1",
        "kind": "KeystoneAPI",
        "metadata": { "name": name },
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(controller.field_manager()).force(),
        &Patch::Apply(&patch),
    )
    .await
}

/// The status `controller` writes after a step failed: the `changed` conditions (the failed step's; the api
/// controller adds `Ready`), its other conditions and its own status sections exactly as they stand (nothing new
/// was learned about them, so their `observedGeneration` stays too). `None` when the status says that already.
pub fn after_failure(
    ks: &KeystoneAPI,
    controller: Controller,
    changed: &[crate::conditions::Desired],
    now: k8s_openapi::jiff::Timestamp,
) -> Option<keystone_types::KeystoneAPIStatus> {
    let current = ks.status.clone().unwrap_or_default();
    let existing = current.conditions.clone().unwrap_or_default();
    let conditions = crate::conditions::replace_own(
        &existing,
        keystone_types::conditions::written_by(controller),
        changed,
        ks.metadata.generation,
        now,
    );
    let kept: Vec<_> = existing
        .iter()
        .filter(|c| keystone_types::conditions::writer_of(&c.type_) == Some(controller))
        .cloned()
        .collect();
    if conditions == kept {
        return None;
    }
    let mut sections = serde_json::Map::new();
    if let Ok(serde_json::Value::Object(all)) = serde_json::to_value(&current) {
        for key in crate::watch::own_sections(controller) {
            if let Some(v) = all.get(*key) {
                sections.insert((*key).to_owned(), v.clone());
            }
        }
    }
    let mut status: keystone_types::KeystoneAPIStatus =
        serde_json::from_value(serde_json::Value::Object(sections)).unwrap_or_default();
    status.conditions = Some(conditions);
    Some(status)
}

/// What this controller last applied to each child: skips server-side applies that would send the same
/// object again. Without it every reconcile re-applies every child, and every status change of a KeystoneAPI
/// (three controllers write it while it converges) wakes every controller: `make bench` measured 85 writes
/// per KeystoneAPI by the api controller to converge, most of them no-op patches.
///
/// An entry is the hash of the object sent and the resourceVersion the server returned. It is dropped — so
/// the next reconcile applies again — when a watch event shows another resourceVersion (someone else changed
/// or deleted the child: drift is repaired at once; a status update by another controller, such as a
/// Deployment's, also counts, which costs one no-op apply), when the apply fails, and after `ttl` (children
/// nobody watches, ServiceAccounts and PodDisruptionBudgets, are re-applied that often).
#[derive(Debug)]
pub struct Applied {
    entries: std::sync::Mutex<std::collections::HashMap<String, AppliedEntry>>,
    ttl: std::time::Duration,
}

#[derive(Debug, Clone)]
struct AppliedEntry {
    desired: u64,
    resource_version: String,
    at: std::time::Instant,
}

fn applied_key<K: Resource>(obj: &K) -> String
where
    K::DynamicType: Default,
{
    format!(
        "{}/{}/{}",
        K::kind(&K::DynamicType::default()),
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

impl Applied {
    /// An empty cache whose entries expire after `ttl`.
    pub fn new(ttl: std::time::Duration) -> Self {
        Self {
            entries: std::sync::Mutex::default(),
            ttl,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, AppliedEntry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `child` like [`apply_child`] unless the same object was applied last and the child has not
    /// changed since: `Ok(None)` then (the caller uses what it read).
    pub async fn apply<K>(
        &self,
        client: &Client,
        controller: Controller,
        child: &K,
    ) -> Result<Option<K>, kube::Error>
    where
        K: Resource<Scope = NamespaceResourceScope> + Serialize + DeserializeOwned + Clone + Debug,
        K::DynamicType: Default,
    {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_vec(child).unwrap_or_default().hash(&mut h);
        let desired = h.finish();
        let key = applied_key(child);
        if let Some(e) = self.entries().get(&key)
            && e.desired == desired
            && e.at.elapsed() < self.ttl
        {
            return Ok(None);
        }
        self.entries().remove(&key);
        let applied = apply_child(client, controller, child).await?;
        if let Some(resource_version) = applied.meta().resource_version.clone() {
            let mut entries = self.entries();
            if entries.len() > 4096 {
                // Children of deleted KeystoneAPIs whose deletion event was missed.
                entries.retain(|_, e| e.at.elapsed() < self.ttl);
            }
            entries.insert(
                key,
                AppliedEntry {
                    desired,
                    resource_version,
                    at: std::time::Instant::now(),
                },
            );
        }
        Ok(Some(applied))
    }

    /// Forgets the child `namespace/name` of kind `K` (this controller deleted it).
    pub fn forget<K: Resource>(&self, namespace: &str, name: &str)
    where
        K::DynamicType: Default,
    {
        let key = format!("{}/{namespace}/{name}", K::kind(&K::DynamicType::default()));
        self.entries().remove(&key);
    }

    /// A watch event for a child: unless it shows the version this controller applied last, the entry is
    /// dropped and the next reconcile applies the child again.
    pub fn observe<K: Resource>(&self, obj: &K)
    where
        K::DynamicType: Default,
    {
        let key = applied_key(obj);
        let mut entries = self.entries();
        if entries
            .get(&key)
            .is_some_and(|e| obj.meta().resource_version.as_ref() != Some(&e.resource_version))
        {
            entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;

    fn cm(rv: &str) -> ConfigMap {
        ConfigMap {
            metadata: kube::core::ObjectMeta {
                name: Some("c".into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn an_event_of_another_version_drops_the_entry() {
        let a = Applied::new(std::time::Duration::from_secs(60));
        let key = applied_key(&cm("1"));
        a.entries().insert(
            key.clone(),
            AppliedEntry {
                desired: 7,
                resource_version: "5".into(),
                at: std::time::Instant::now(),
            },
        );
        a.observe(&cm("5"));
        assert!(a.entries().contains_key(&key), "our own apply's event keeps it");
        a.observe(&cm("6"));
        assert!(
            !a.entries().contains_key(&key),
            "someone else's change (or a deletion) drops it"
        );
    }

    #[test]
    fn after_a_failure_only_the_failed_row_changes_and_own_sections_stay() {
        use crate::conditions::Desired;
        use keystone_types::conditions::{CONFIG_READY, DATABASE_READY, DB_SYNC_READY, FERNET_KEYS_READY};
        let ks: KeystoneAPI = serde_json::from_value(serde_json::json!({
            "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI",
            "metadata": {"name": "k", "namespace": "ns", "generation": 3},
            "spec": {},
            "status": {
                "conditions": [
                    {"type": DATABASE_READY, "status": "True", "reason": "Succeeded", "message": "ok",
                     "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": DB_SYNC_READY, "status": "True", "reason": "Succeeded", "message": "ok",
                     "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": CONFIG_READY, "status": "True", "reason": "Succeeded", "message": "api's",
                     "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ],
                "database": {"syncedImage": "img", "dbSyncHash": "h"},
                "api": {"configHash": "not ours"}
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let now = k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap_or_default();
        let failed = Desired::not_ok(DB_SYNC_READY, "RequestForbidden", "creating Job x failed");
        let status = after_failure(&ks, Controller::Db, std::slice::from_ref(&failed), now)
            .unwrap_or_else(|| panic!("a change"));
        let rows = status.conditions.clone().unwrap_or_default();
        assert_eq!(rows.len(), 2, "only the db controller's rows: {rows:?}");
        assert_eq!(
            rows[0].observed_generation,
            Some(2),
            "an untouched row keeps its generation"
        );
        assert_eq!(
            (rows[1].status.as_str(), rows[1].reason.as_str()),
            ("False", "RequestForbidden")
        );
        assert_eq!(rows[1].observed_generation, Some(3));
        assert_eq!(
            status.database.as_ref().and_then(|d| d.db_sync_hash.as_deref()),
            Some("h")
        );
        assert!(status.api.is_none(), "never another controller's section");
        assert!(
            !rows
                .iter()
                .any(|c| c.type_ == FERNET_KEYS_READY || c.type_ == CONFIG_READY)
        );
        // Written once: the same failure again changes nothing.
        let mut after = ks.clone();
        after.status = Some(status);
        assert!(after_failure(&after, Controller::Db, &[failed], now).is_none());
    }
}
