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
