//! `keystone-db-controller`: the database, db-sync and bootstrap Jobs, and the trust-flush CronJob. Wiring only; the logic is in the library.

use std::sync::Arc;

use clap::Parser;
use futures::StreamExt;
use kube::core::DeserializeGuard;
use kube::runtime::{Controller, watcher};

use keystone_db_controller::{CONTROLLER, Context, error_policy, reconcile};
use keystone_types::KeystoneAPI;
use operator_common::cli::CommonArgs;
use operator_common::runtime::Runtime;

#[derive(Debug, Parser)]
#[command(
    name = "keystone-db-controller",
    version,
    about = "Keystone operator: the database, db-sync and bootstrap Jobs, and the trust-flush CronJob"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = Runtime::start(CONTROLLER, &args.common).await?;
    let ctx = Arc::new(Context::new(rt.client.clone(), rt.metrics.clone()));

    // DeserializeGuard: one malformed KeystoneAPI must not stall the watch for all the others.
    let keystones = rt.keystoneapi_api::<DeserializeGuard<KeystoneAPI>>();
    let controller = Controller::new(keystones, watcher::Config::default().any_semantic());
    rt.mark_ready_when_synced(controller.store());
    controller
        .graceful_shutdown_on(rt.shutdown_signal())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::warn!(%error, "reconcile failed");
            }
        })
        .await;
    rt.finish().await
}
