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
}
