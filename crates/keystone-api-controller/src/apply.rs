//! The writes, in a fixed order that cannot deadlock with the db controller: config and Services first (the
//! db controller's Jobs wait for the published config and endpoints), then the Deployment (which waits for the
//! db controller). Config objects of earlier renders are collected, except the one the Deployment still runs.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};

use keystone_types::conditions::Controller;
use keystone_types::{KeystoneAPI, labels};

use crate::Error;

/// Deletes this instance's config ConfigMaps and Secrets other than `keep`. Deleted ones are forgotten by `applied`, so a later render with the same hash is applied again.
pub async fn collect_old_config(
    client: &Client,
    applied: &operator_common::apply::Applied,
    ks: &KeystoneAPI,
    keep: &[String],
) -> Result<(), Error> {
    let ns = ks.namespace().unwrap_or_default();
    let name = ks.name_any();
    let kube_err = |source| Error::Kube {
        name: name.clone(),
        source,
    };
    let selector = format!(
        "{},{}={}",
        labels::managed_selector(&name, Controller::Api),
        labels::COMPONENT,
        labels::component::CONFIG
    );
    let lp = ListParams::default().labels(&selector);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for cm in cms.list_metadata(&lp).await.map_err(kube_err)? {
        if !keep.contains(&cm.name_any()) {
            cms.delete(&cm.name_any(), &DeleteParams::default())
                .await
                .map(|_| ())
                .or_else(ignore_404)
                .map_err(kube_err)?;
            applied.forget::<ConfigMap>(&ns, &cm.name_any());
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for s in secrets.list_metadata(&lp).await.map_err(kube_err)? {
        if !keep.contains(&s.name_any()) {
            secrets
                .delete(&s.name_any(), &DeleteParams::default())
                .await
                .map(|_| ())
                .or_else(ignore_404)
                .map_err(kube_err)?;
            applied.forget::<Secret>(&ns, &s.name_any());
        }
    }
    Ok(())
}

fn ignore_404(e: kube::Error) -> Result<(), kube::Error> {
    match e {
        kube::Error::Api(s) if s.code == 404 => Ok(()),
        e => Err(e),
    }
}
