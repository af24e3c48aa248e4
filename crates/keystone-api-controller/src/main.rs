//! `keystone-api-controller`: config, Services and the API Deployment. Wiring only.

use std::sync::Arc;

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::DynamicObject;
use kube::core::DeserializeGuard;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};

use keystone_api_controller::build::exposure::route_resource;
use keystone_api_controller::config::Templates;
use keystone_api_controller::{CONTROLLER, Context, error_policy, reconcile};
use keystone_types::{KeystoneAPI, labels};
use operator_common::cli::CommonArgs;
use operator_common::runtime::Runtime;

#[derive(Debug, Parser)]
#[command(
    name = "keystone-api-controller",
    version,
    about = "Keystone operator: config, Services, API Deployment"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let Some(rt) = Runtime::start(CONTROLLER, &args.common).await? else {
        return Ok(());
    };
    let templates =
        Templates::new().map_err(|e| anyhow::anyhow!("embedded templates do not compile: {e}"))?;
    let ctx = Arc::new(Context {
        client: rt.client.clone(),
        metrics: rt.metrics.clone(),
        templates,
    });

    let ours = watcher::Config::default()
        .labels(&format!("{}={}", labels::MANAGED_BY, CONTROLLER.field_manager()))
        .any_semantic();
    // Every status change counts: the other controllers' conditions arrive as status updates.
    let controller = Controller::new(
        rt.keystoneapi_api::<DeserializeGuard<KeystoneAPI>>(),
        watcher::Config::default().any_semantic(),
    );
    let store = controller.store();
    // The password and custom-config Secrets are the user's and carry no labels of ours: watch Secrets by
    // metadata only (no Secret data is cached) and map a change to the KeystoneAPIs that name that Secret.
    let referencing = store.clone();
    let controller = controller
        .owns(rt.keystoneapi_api::<Deployment>(), ours.clone())
        .owns(rt.keystoneapi_api::<Service>(), ours.clone())
        .owns(rt.keystoneapi_api::<ConfigMap>(), ours.clone())
        .watches(rt.keystoneapi_api::<Pod>(), ours.clone(), |pod| {
            let instance = pod.labels().get(labels::INSTANCE)?.clone();
            Some(ObjectRef::new(&instance).within(&pod.namespace()?))
        })
        .watches(
            rt.keystoneapi_api::<PartialObjectMeta<Secret>>(),
            watcher::Config::default().any_semantic(),
            move |secret| {
                let (ns, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
                operator_common::watch::referencing(&referencing, &ns, &name, |spec, name| {
                    spec.secret == name
                        || spec.custom_service_config_secret.as_deref() == Some(name)
                        || spec.notifications.as_ref().is_some_and(|n| n.secret == name)
                })
            },
        );
    // Routes exist only on OpenShift; their admission (status.ingress) decides the public URL. Looked up once
    // at startup: a cluster that gains the Route API later needs a controller restart to watch it.
    let controller = if keystone_api_controller::read::serves(&rt.client, "route.openshift.io/v1").await? {
        let routes: Api<DynamicObject> = match rt.namespace() {
            Some(ns) => Api::namespaced_with(rt.client.clone(), ns, &route_resource()),
            None => Api::all_with(rt.client.clone(), &route_resource()),
        };
        controller.owns_with(routes, route_resource(), ours.clone())
    } else {
        controller
    };
    rt.mark_ready_when_synced(store);
    controller
        .graceful_shutdown_on(rt.shutdown_signal())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    rt.finish().await
}
