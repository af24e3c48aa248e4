//! `keystone-api-controller`: config, Services and the API Deployment. Wiring only.

use std::sync::Arc;

use anyhow::Context as _;
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
use keystone_api_controller::catalog::target::{AdminClients, UrlOverrides};
use keystone_api_controller::catalog::{Catalog, CatalogMetrics, endpoint, service};
use keystone_api_controller::config::Templates;
use keystone_api_controller::{CONTROLLER, Context, error_policy, reconcile};
use keystone_types::catalog::{KeystoneEndpoint, KeystoneService};
use keystone_types::{KeystoneAPI, labels};
use operator_common::apply::Applied;
use operator_common::backoff::Backoff;
use operator_common::cli::CommonArgs;
use operator_common::watch::child_of;

/// How long an applied child is trusted unchanged without a watch event saying otherwise (ServiceAccounts and
/// PodDisruptionBudgets are not watched).
const APPLIED_TTL: std::time::Duration = std::time::Duration::from_secs(3600);
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

    /// Where the catalog controllers (KeystoneService, KeystoneEndpoint) reach Keystone instead of the
    /// KeystoneAPI's internal endpoint, for a controller running outside the cluster: `NAMESPACE/NAME=URL` for
    /// one KeystoneAPI, or a bare `URL` for all. Repeat or comma-separate.
    #[arg(
        long = "keystone-url",
        env = "KEYSTONE_OPERATOR_KEYSTONE_URL",
        value_delimiter = ','
    )]
    keystone_url: Vec<String>,

    /// On OpenShift: the ClusterRole granting `use` of the SCC the API pods run under. The chart creates a
    /// dedicated SCC pinning Keystone's uid and fsGroup (42425) and sets this to its role; the default is
    /// OpenShift's `nonroot-v2` (any non-root uid) for installs without it, such as OLM bundles.
    #[arg(
        long,
        env = "KEYSTONE_API_SCC_CLUSTER_ROLE",
        default_value = keystone_api_controller::build::exposure::NONROOT_SCC_CLUSTER_ROLE
    )]
    scc_cluster_role: String,

    /// PEM CA bundle the catalog controllers trust for an https Keystone endpoint (default: the system roots).
    #[arg(long = "keystone-ca-file", env = "KEYSTONE_OPERATOR_KEYSTONE_CA_FILE")]
    keystone_ca_file: Option<std::path::PathBuf>,

    /// Timeout of each Keystone API request made by the catalog controllers.
    #[arg(long = "keystone-timeout", env = "KEYSTONE_OPERATOR_KEYSTONE_TIMEOUT", default_value = "30s",
          value_parser = operator_common::cli::parse_duration)]
    keystone_timeout: std::time::Duration,
}

/// Whether the KeystoneService and KeystoneEndpoint CRDs are installed and Established.
async fn catalog_installed(client: &kube::Client, wait: std::time::Duration) -> anyhow::Result<bool> {
    for crd in [
        keystone_types::SERVICE_CRD_NAME,
        keystone_types::ENDPOINT_CRD_NAME,
    ] {
        match operator_common::crd::ensure_established(client.clone(), crd, wait).await {
            Ok(()) => {}
            Err(operator_common::crd::CrdError::NotInstalled { .. }) => {
                tracing::warn!(
                    crd,
                    "CRD not installed: KeystoneService/KeystoneEndpoint are not reconciled until it is (then \
                     restart this controller); {}",
                    operator_common::crd::INSTALL_HINT
                );
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let urls = UrlOverrides::parse(&args.keystone_url).map_err(anyhow::Error::msg)?;
    let ca_bundle = match &args.keystone_ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("cannot read --keystone-ca-file {}", path.display()))?,
        ),
        None => None,
    };
    let Some(rt) = Runtime::start(CONTROLLER, &args.common).await? else {
        return Ok(());
    };
    let templates =
        Templates::new().map_err(|e| anyhow::anyhow!("embedded templates do not compile: {e}"))?;
    let applied = Arc::new(Applied::new(APPLIED_TTL));
    let ctx = Arc::new(Context {
        client: rt.client.clone(),
        metrics: rt.metrics.clone(),
        templates,
        applied: applied.clone(),
        discovery: Default::default(),
        backoff: Backoff::default(),
        scc_cluster_role: args.scc_cluster_role.clone(),
    });

    let ours = watcher::Config::default()
        .labels(&format!("{}={}", labels::MANAGED_BY, CONTROLLER.field_manager()))
        .any_semantic();
    // Every status change but our own counts: the other controllers' conditions arrive as status updates.
    let controller = operator_common::watch::keystoneapi_controller(rt.keystoneapi_api(), CONTROLLER);
    let store = controller.store();
    // The password and custom-config Secrets are the user's and carry no labels of ours: watch Secrets by
    // metadata only (no Secret data is cached) and map a change to the KeystoneAPIs that name that Secret.
    let referencing = store.clone();
    let controller = controller
        .watches(
            rt.keystoneapi_api::<Deployment>(),
            ours.clone(),
            child_of(applied.clone()),
        )
        .watches(
            rt.keystoneapi_api::<Service>(),
            ours.clone(),
            child_of(applied.clone()),
        )
        .watches(
            rt.keystoneapi_api::<ConfigMap>(),
            ours.clone(),
            child_of(applied.clone()),
        )
        .watches(rt.keystoneapi_api::<Pod>(), ours.clone(), |pod| {
            let instance = pod.labels().get(labels::INSTANCE)?.clone();
            Some(ObjectRef::new(&instance).within(&pod.namespace()?))
        })
        .watches(
            rt.keystoneapi_api::<PartialObjectMeta<Secret>>(),
            watcher::Config::default().any_semantic(),
            move |secret| {
                // Our config Secrets are children too.
                applied.observe(&secret);
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
    // The catalog controllers, when their CRDs are installed (Helm does not add CRDs on upgrade: without
    // them the rest of this controller keeps working, and says so).
    let catalog = catalog_installed(&rt.client, args.common.crd_wait).await?;
    let main_loop = controller
        .with_config(args.common.controller_config())
        .graceful_shutdown_on(rt.shutdown_signal())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {});
    if catalog {
        let services = Controller::new(
            rt.keystoneapi_api::<KeystoneService>(),
            watcher::Config::default().any_semantic(),
        );
        let service_store = services.store();
        let endpoints = Controller::new(
            rt.keystoneapi_api::<KeystoneEndpoint>(),
            watcher::Config::default().any_semantic(),
        );
        let endpoint_store = endpoints.store();
        let catalog = Arc::new(Catalog {
            client: rt.client.clone(),
            admin: AdminClients::new(ca_bundle, args.keystone_timeout),
            urls,
            metrics: CatalogMetrics::new(&rt.metrics.registry)?,
            backoff: Backoff::default(),
            recorder: rt.recorder(),
        });
        // KeystoneAPI changes (Ready, endpoints, deletion) wake every catalog object of that namespace.
        let by_keystone = |store: kube::runtime::reflector::Store<KeystoneService>| {
            move |ks: DeserializeGuard<KeystoneAPI>| {
                let ns = ks.0.as_ref().ok().and_then(|k| k.namespace()).unwrap_or_default();
                store
                    .state()
                    .iter()
                    .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
                    .map(|s| ObjectRef::from_obj(s.as_ref()))
                    .collect::<Vec<_>>()
            }
        };
        let secret_refs = service_store.clone();
        let services = services
            .watches(
                rt.keystoneapi_api::<DeserializeGuard<KeystoneAPI>>(),
                watcher::Config::default().any_semantic(),
                by_keystone(service_store.clone()),
            )
            // The service users' password Secrets, by metadata only.
            .watches(
                rt.keystoneapi_api::<PartialObjectMeta<Secret>>(),
                watcher::Config::default().any_semantic(),
                move |secret| {
                    let (ns, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
                    secret_refs
                        .state()
                        .iter()
                        .filter(|s| s.namespace().as_deref() == Some(ns.as_str()) && s.spec.secret == name)
                        .map(|s| ObjectRef::from_obj(s.as_ref()))
                        .collect::<Vec<_>>()
                },
            )
            .with_config(args.common.controller_config())
            .graceful_shutdown_on(rt.shutdown_signal())
            .run(service::reconcile, service::error_policy, catalog.clone())
            .for_each(|_| async {});
        let keystone_refs = endpoint_store.clone();
        let service_refs = endpoint_store.clone();
        let endpoints = endpoints
            .watches(
                rt.keystoneapi_api::<DeserializeGuard<KeystoneAPI>>(),
                watcher::Config::default().any_semantic(),
                move |ks: DeserializeGuard<KeystoneAPI>| {
                    let ns = ks.0.as_ref().ok().and_then(|k| k.namespace()).unwrap_or_default();
                    keystone_refs
                        .state()
                        .iter()
                        .filter(|e| e.namespace().as_deref() == Some(ns.as_str()))
                        .map(|e| ObjectRef::from_obj(e.as_ref()))
                        .collect::<Vec<_>>()
                },
            )
            // A KeystoneService becoming Ready (or changing its service ID) wakes its endpoints.
            .watches(
                rt.keystoneapi_api::<KeystoneService>(),
                watcher::Config::default().any_semantic(),
                move |svc| {
                    let ns = svc.namespace().unwrap_or_default();
                    service_refs
                        .state()
                        .iter()
                        .filter(|e| {
                            e.namespace().as_deref() == Some(ns.as_str())
                                && e.spec.service_name == svc.spec.service_name
                        })
                        .map(|e| ObjectRef::from_obj(e.as_ref()))
                        .collect::<Vec<_>>()
                },
            )
            .with_config(args.common.controller_config())
            .graceful_shutdown_on(rt.shutdown_signal())
            .run(endpoint::reconcile, endpoint::error_policy, catalog)
            .for_each(|_| async {});
        rt.mark_ready_when_synced(store);
        tokio::join!(main_loop, services, endpoints);
    } else {
        rt.mark_ready_when_synced(store);
        main_loop.await;
    }
    rt.finish().await
}
