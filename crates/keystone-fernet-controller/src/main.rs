//! `keystone-fernet-controller`: fernet token keys and credential keys, with rotation. Wiring only.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use keystone_fernet_controller::metrics::FernetMetrics;
use keystone_fernet_controller::{CONTROLLER, Context, error_policy, reconcile};
use keystone_types::{KeystoneAPI, labels};
use operator_common::cli::{CommonArgs, parse_duration};
use operator_common::runtime::Runtime;

#[derive(Debug, Parser)]
#[command(
    name = "keystone-fernet-controller",
    version,
    about = "Keystone operator: fernet and credential keys"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Floor on the time between two fernet rotations (scheduled or manual). Keep it above the time the kubelet
    /// needs to refresh a Secret volume in every pod (up to ~90 s): rotating twice within it breaks replicas
    /// that have not seen the previous rotation yet.
    #[arg(long, env = "KEYSTONE_FERNET_MIN_ROTATION_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    min_rotation_interval: Duration,

    /// How long a rotated key Secret may take to reach every pod (the kubelet's sync period plus its Secret
    /// cache TTL; the default matches the kubelet's defaults with room to spare). Keys are kept this much longer
    /// than their tokens need: a rotation never drops a key until `token.expiration + token.allowExpiredWindow`
    /// plus this allowance after it stopped signing. Admission's key-count rule assumes 5m; a larger value
    /// raises the rotation interval where the keys would not cover it. Lower it only where Secret updates
    /// reach pods faster.
    #[arg(long, env = "KEYSTONE_FERNET_KEY_PROPAGATION_ALLOWANCE", default_value = "5m", value_parser = parse_duration)]
    key_propagation_allowance: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let Some(rt) = Runtime::start(CONTROLLER, &args.common).await? else {
        return Ok(());
    };
    let fernet_metrics = FernetMetrics::register(&rt.metrics.registry)?;
    let ctx = Arc::new(Context {
        client: rt.client.clone(),
        metrics: rt.metrics.clone(),
        fernet_metrics,
        recorder: rt.recorder(),
        min_rotation_interval: args.min_rotation_interval,
        key_propagation_allowance: args.key_propagation_allowance,
        backoff: Default::default(),
    });

    let keystones = rt.keystoneapi_api::<DeserializeGuard<KeystoneAPI>>();
    // Our key Secrets, by label: the credential Secret has no owner reference (it outlives its KeystoneAPI),
    // so changes are mapped back through the instance label rather than `owns`.
    let secrets: Api<Secret> = rt.keystoneapi_api();
    let secret_filter = watcher::Config::default()
        .labels(&format!("{}={}", labels::MANAGED_BY, CONTROLLER.field_manager()))
        .any_semantic();
    // Every status change but our own counts: the db controller's credential migrations arrive as status.
    let controller = operator_common::watch::keystoneapi_controller(keystones, CONTROLLER).watches(
        secrets,
        secret_filter,
        |secret| {
            let instance = secret.labels().get(labels::INSTANCE)?.clone();
            Some(ObjectRef::new(&instance).within(&secret.namespace()?))
        },
    );
    rt.mark_ready_when_synced(controller.store());
    controller
        .with_config(args.common.controller_config())
        .graceful_shutdown_on(rt.shutdown_signal())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    rt.finish().await
}
