//! A ResourceQuota that makes the API server refuse a kind of child object (403 `exceeded quota`): the
//! ordinary way a cluster rejects a controller's write, used to prove that a refusal ends in a condition.

use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::wait;

/// A ResourceQuota `name` in `namespace` with `hard` (e.g. `{"count/jobs.batch": "0"}`), returned once the
/// quota controller has computed its usage (until then the API server refuses every object it covers, whatever
/// the limit).
pub async fn limit(
    client: &Client,
    namespace: &str,
    name: &str,
    hard: serde_json::Value,
) -> Api<ResourceQuota> {
    let api: Api<ResourceQuota> = Api::namespaced(client.clone(), namespace);
    let quota: ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"hard": hard}})).expect("a quota");
    api.create(&PostParams::default(), &quota)
        .await
        .expect("the quota is created");
    wait::until(
        &format!("quota {name} computed"),
        Duration::from_secs(60),
        || async {
            let q = api.get(name).await.map_err(|e| e.to_string())?;
            match q.status.and_then(|s| s.used) {
                Some(used) if !used.is_empty() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    api
}

/// Deletes quota `name`.
pub async fn lift(api: &Api<ResourceQuota>, name: &str) {
    api.delete(name, &DeleteParams::default())
        .await
        .expect("the quota is deleted");
}
