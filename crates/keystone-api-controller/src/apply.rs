//! The writes, in a fixed order that cannot deadlock with the db controller: config and Services first (the
//! db controller's Jobs wait for the published config and endpoints), then the Deployment (which waits for the
//! db controller). Config objects of earlier renders are collected, except the one the Deployment still runs
//! and any that a live pod of the instance (an API pod of an older ReplicaSet, a Job's pod) still mounts.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};

use keystone_types::conditions::{CONFIG_READY, Controller};
use keystone_types::{KeystoneAPI, labels};

use operator_common::backoff::FailedCall;

use crate::Error;

/// Deletes this instance's config ConfigMaps and Secrets other than `keep` and those a live pod of the
/// instance mounts; true when something was kept only for such a pod (look again soon: the db controller's
/// Job pods do not wake this controller when they finish). Deleted ones are forgotten by `applied`, so a later render with the same hash is applied again.
pub async fn collect_old_config(
    client: &Client,
    applied: &operator_common::apply::Applied,
    ks: &KeystoneAPI,
    keep: &[String],
) -> Result<bool, Error> {
    let ns = ks.namespace().unwrap_or_default();
    let name = ks.name_any();
    let gc_err = |action, object: String| FailedCall::under(&name, CONFIG_READY, action, object);
    // What live pods mount stays: deleting it would leave a pod that restarts (or a Job pod not yet started)
    // stuck in ContainerCreating.
    let mut mounted = Vec::new();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let instance = format!(
        "{}={},{}={}",
        labels::NAME,
        labels::APP_NAME,
        labels::INSTANCE,
        name
    );
    for pod in pods
        .list(&ListParams::default().labels(&instance))
        .await
        .map_err(gc_err("listing", format!("Pods {instance}")))?
    {
        mounted.extend(mounted_config(&pod));
    }
    let mut held = false;
    let selector = format!(
        "{},{}={}",
        labels::managed_selector(&name, Controller::Api),
        labels::COMPONENT,
        labels::component::CONFIG
    );
    let lp = ListParams::default().labels(&selector);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    // Kept only because a pod mounts it: worth looking again soon.
    let mut stays = |n: &String| {
        let wanted = keep.contains(n);
        held |= !wanted && mounted.contains(n);
        wanted || mounted.contains(n)
    };
    for cm in cms
        .list_metadata(&lp)
        .await
        .map_err(gc_err("listing", format!("ConfigMaps {selector}")))?
    {
        if !stays(&cm.name_any()) {
            cms.delete(&cm.name_any(), &DeleteParams::default())
                .await
                .map(|_| ())
                .or_else(ignore_404)
                .map_err(gc_err("deleting", format!("ConfigMap {}", cm.name_any())))?;
            applied.forget::<ConfigMap>(&ns, &cm.name_any());
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for s in secrets
        .list_metadata(&lp)
        .await
        .map_err(gc_err("listing", format!("Secrets {selector}")))?
    {
        if !stays(&s.name_any()) {
            secrets
                .delete(&s.name_any(), &DeleteParams::default())
                .await
                .map(|_| ())
                .or_else(ignore_404)
                .map_err(gc_err("deleting", format!("Secret {}", s.name_any())))?;
            applied.forget::<Secret>(&ns, &s.name_any());
        }
    }
    Ok(held)
}

/// The ConfigMaps and Secrets a pod that has not finished mounts as volumes. A pod being deleted does not
/// count: it starts no container any more, and what its running containers mounted stays in place.
pub fn mounted_config(pod: &Pod) -> Vec<String> {
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    if finished || pod.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let mut names = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        names.extend(v.config_map.as_ref().map(|c| c.name.clone()));
        names.extend(v.secret.as_ref().and_then(|s| s.secret_name.clone()));
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            names.extend(source.config_map.as_ref().map(|c| c.name.clone()));
            names.extend(source.secret.as_ref().map(|s| s.name.clone()));
        }
    }
    names
}

fn ignore_404(e: kube::Error) -> Result<(), kube::Error> {
    match e {
        kube::Error::Api(s) if s.code == 404 => Ok(()),
        e => Err(e),
    }
}
