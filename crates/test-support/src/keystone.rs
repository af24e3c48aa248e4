//! The objects every whole-flow test starts from (the password Secret and a KeystoneAPI) and the condition
//! check they wait on.

use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::{Value, json};

use keystone_types::KeystoneAPI;

/// Creates the `osp-secret` Secret with the three passwords the controllers read.
pub async fn create_osp_secret(client: &Client, namespace: &str, admin: &str, db: &str, root: &str) {
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "osp-secret"},
        "stringData": {"AdminPassword": admin, "KeystoneDatabasePassword": db, "DbRootPassword": root},
    }))
    .expect("secret");
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create osp-secret");
}

/// Creates KeystoneAPI `name` with `spec`.
pub async fn create(client: &Client, namespace: &str, name: &str, spec: Value) -> KeystoneAPI {
    let ks: KeystoneAPI = serde_json::from_value(json!({
        "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("KeystoneAPI");
    Api::<KeystoneAPI>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &ks)
        .await
        .expect("create KeystoneAPI")
}

/// `Ok` when condition `type_` has `status` for the object's current generation; otherwise every condition
/// (type, status, message), to show what the wait is stuck on.
pub fn condition_is(ks: &KeystoneAPI, type_: &str, status: &str) -> Result<(), String> {
    let conds = ks
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    match conds.iter().find(|c| c.type_ == type_) {
        Some(c) if c.status == status && c.observed_generation == ks.metadata.generation => Ok(()),
        _ => Err(format!(
            "{:?}",
            conds
                .iter()
                .map(|c| (&c.type_, &c.status, &c.message))
                .collect::<Vec<_>>()
        )),
    }
}
