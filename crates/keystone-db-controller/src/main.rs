//! `keystone-db-controller`: database, db-sync and bootstrap Jobs, trust-flush CronJob. Wiring only.

use std::sync::Arc;

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

use keystone_db_controller::{CONTROLLER, Context, error_policy, reconcile};
use keystone_types::labels;
use operator_common::cli::CommonArgs;
use operator_common::runtime::Runtime;

#[derive(Debug, Parser)]
#[command(
    name = "keystone-db-controller",
    version,
    about = "Keystone operator: database, db-sync, bootstrap, trust-flush"
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
    // How long an applied CronJob is trusted unchanged without a watch event saying otherwise.
    let applied = Arc::new(operator_common::apply::Applied::new(
        std::time::Duration::from_secs(3600),
    ));
    let ctx = Arc::new(Context {
        client: rt.client.clone(),
        metrics: rt.metrics.clone(),
        recorder: rt.recorder(),
        applied: applied.clone(),
        backoff: Default::default(),
    });
    let ours = watcher::Config::default()
        .labels(&format!("{}={}", labels::MANAGED_BY, CONTROLLER.field_manager()))
        .any_semantic();
    // Every status change but our own counts: the other controllers' progress arrives as status updates.
    let controller = operator_common::watch::keystoneapi_controller(rt.keystoneapi_api(), CONTROLLER);
    let store = controller.store();
    let referencing = store.clone();
    // The password Secret is the user's: watch Secrets by metadata only and map a change to the KeystoneAPIs
    // that name it.
    let controller = controller
        .owns(rt.keystoneapi_api::<Job>(), ours.clone())
        .watches(
            rt.keystoneapi_api::<CronJob>(),
            ours,
            operator_common::watch::child_of(applied),
        )
        .watches(
            rt.keystoneapi_api::<PartialObjectMeta<Secret>>(),
            watcher::Config::default().any_semantic(),
            move |secret| {
                let (ns, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
                operator_common::watch::referencing(&referencing, &ns, &name, |spec, name| {
                    spec.secret == name
                })
            },
        );
    rt.mark_ready_when_synced(store);
    controller
        .with_config(args.common.controller_config())
        .graceful_shutdown_on(rt.shutdown_signal())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    rt.finish().await
}
