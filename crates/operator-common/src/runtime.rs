//! The startup and shutdown sequence every controller binary follows, so that their `main.rs` holds only
//! wiring: telemetry → health server (so /healthz answers at once) → client → CRD check (fatal with an
//! install hint) → leader lease when election is on (standbys wait here, Ready) → watch → /readyz after the
//! first sync → graceful shutdown on SIGTERM, exit 0, lease released. Losing the lease (taken by another
//! replica, or not renewed within the renew deadline) ends the process at once with exit status
//! [`LEASE_LOST_EXIT_CODE`], so that Kubernetes restarts the pod as a fresh candidate and nothing this replica
//! still had in flight writes after a standby has taken over.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Api, Client};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use keystone_types::conditions::Controller;

use crate::cli::CommonArgs;
use crate::lease::{Ended, LeaseGate};
use crate::metrics::ControllerMetrics;
use crate::server::Health;

/// Exit status of a controller that lost its leader lease.
pub const LEASE_LOST_EXIT_CODE: i32 = 3;

/// A running controller process: its client, metrics, health flags and shutdown signal.
#[allow(missing_debug_implementations)]
pub struct Runtime {
    /// Kubernetes client (kubeconfig or in-cluster).
    pub client: Client,
    /// This controller's metrics.
    pub metrics: ControllerMetrics,
    /// Readiness flags served on /readyz.
    pub health: Arc<Health>,
    namespace: Option<String>,
    controller: Controller,
    shutdown: Shared<BoxFuture<'static, ()>>,
    server: JoinHandle<std::io::Result<()>>,
    lease: Option<HeldLease>,
}

/// The renewal task of a held lease, and how to tell it to let go.
struct HeldLease {
    release: oneshot::Sender<()>,
    lost: watch::Receiver<Option<Ended>>,
    task: JoinHandle<()>,
}

impl Runtime {
    /// Runs the startup sequence up to and including the CRD check and, with leader election, until this
    /// replica holds the lease. `Ok(None)` means a shutdown signal arrived while standing by: exit 0.
    /// An error means the process must exit non-zero; its message says what to do.
    pub async fn start(controller: Controller, args: &CommonArgs) -> anyhow::Result<Option<Self>> {
        crate::telemetry::init(args.log_format, &args.log_level).context("cannot initialise logging")?;
        tracing::info!(controller = %controller, version = env!("CARGO_PKG_VERSION"), "starting");
        let election = &args.leader_election;
        if election.leader_elect {
            election.timings().validate().map_err(anyhow::Error::msg)?;
        }

        let metrics = ControllerMetrics::new(controller.short_name()).context("cannot create metrics")?;
        let health = Arc::new(Health::default());
        // Shutdown is SIGTERM/SIGINT, or losing the lease (reported through `lost`).
        let (lost_tx, lost_rx) = watch::channel::<Option<Ended>>(None);
        let mut lost_wait = lost_rx.clone();
        let shutdown = async move {
            tokio::select! {
                () = crate::shutdown::signal_received() => {}
                // Without election the sender is dropped at once: that is not a loss, so wait forever.
                Ok(_) = lost_wait.wait_for(Option::is_some) => {}
            }
        }
        .boxed()
        .shared();
        let serve = crate::server::bind(
            args.metrics_addr,
            health.clone(),
            metrics.clone(),
            shutdown.clone(),
        )
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
        let server = tokio::spawn(serve);

        let client = Client::try_default()
            .await
            .context("cannot create a Kubernetes client (no usable kubeconfig or in-cluster config)")?;
        if let Err(error) =
            crate::crd::ensure_established(client.clone(), keystone_types::CRD_NAME, args.crd_wait).await
        {
            tracing::error!(%error, "KeystoneAPI CRD unavailable");
            return Err(error.into());
        }
        health.set_crd_established();
        tracing::info!(crd = keystone_types::CRD_NAME, "CRD established");

        let lease = if election.leader_elect {
            let lease_ns = election
                .lease_namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned());
            let name = crate::lease::lease_name(controller.short_name(), args.watch_namespace());
            let identity = crate::lease::default_identity();
            let gate = LeaseGate::new(client.clone(), &lease_ns, &name, &identity, election.timings());
            metrics.leader.set(0);
            health.set_standby(true);
            tracing::info!(lease = %name, namespace = %lease_ns, %identity, "waiting for the leader lease");
            let mut leadership = tokio::select! {
                held = gate.acquire() => held,
                () = shutdown.clone() => {
                    tracing::info!("stopped while standing by");
                    server.await.context("health server task failed")?.context("health server failed")?;
                    return Ok(None);
                }
            };
            health.set_standby(false);
            let (release_tx, release_rx) = oneshot::channel();
            let leader_gauge = metrics.leader.clone();
            let task = tokio::spawn(async move {
                tokio::select! {
                    ended = leadership.hold() => {
                        leader_gauge.set(0);
                        tracing::error!(
                            reason = ?ended,
                            "lost the leader lease; exiting at once so that the pod restarts clean"
                        );
                        // Not a graceful shutdown: that would let in-flight reconciles (possibly stuck on the
                        // same unresponsive apiserver) go on writing while a standby already leads. As
                        // client-go's controllers do, stop the process now; Kubernetes restarts it as a
                        // fresh candidate.
                        let _ = lost_tx.send(Some(ended));
                        std::process::exit(LEASE_LOST_EXIT_CODE);
                    }
                    _ = release_rx => {
                        leader_gauge.set(0);
                        leadership.release().await;
                    }
                }
            });
            Some(HeldLease {
                release: release_tx,
                lost: lost_rx,
                task,
            })
        } else {
            None
        };
        metrics.leader.set(1);

        Ok(Some(Self {
            client,
            metrics,
            health,
            namespace: args.watch_namespace().map(str::to_owned),
            controller,
            shutdown,
            server,
            lease,
        }))
    }

    /// The KeystoneAPI API handle for the watched scope (one namespace, or all).
    pub fn keystoneapi_api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// An Event recorder reporting as this controller; the instance is the pod (`POD_NAME`, set by the chart).
    pub fn recorder(&self) -> Recorder {
        let reporter = Reporter {
            controller: self.controller.field_manager().into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Recorder::new(self.client.clone(), reporter)
    }

    /// The watched namespace, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Marks the replica ready once the controller's store has its first full list.
    pub fn mark_ready_when_synced<K>(&self, store: Store<K>)
    where
        K: kube::Resource + Clone + Send + Sync + 'static,
        K::DynamicType: std::hash::Hash + Eq + Clone + Send + Sync,
    {
        let health = self.health.clone();
        tokio::spawn(async move {
            // The store's readiness is a oneshot channel that keeps only the last waiter's waker, and the
            // controller's own applier waits on it too; so poll with a short timeout instead of waiting once.
            loop {
                match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
                    Ok(Ok(())) => {
                        health.set_watch_synced();
                        tracing::info!("initial watch sync done; ready");
                        return;
                    }
                    Ok(Err(_)) => return,
                    Err(_elapsed) => continue,
                }
            }
        });
    }

    /// Completes when SIGTERM or SIGINT arrives.
    pub fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        self.shutdown.clone()
    }

    /// Waits for the health server to stop after the shutdown signal, then releases the lease (after the
    /// Controller has finished its in-flight reconciles, so a standby never overlaps with them). Losing the
    /// lease is reported as an error, so the process exits non-zero.
    pub async fn finish(self) -> anyhow::Result<()> {
        self.shutdown.await;
        self.server
            .await
            .context("health server task failed")?
            .context("health server failed")?;
        if let Some(lease) = self.lease {
            if let Some(ended) = lease.lost.borrow().as_ref() {
                anyhow::bail!("lost the leader lease ({ended:?}); exiting so that the pod restarts clean");
            }
            let _ = lease.release.send(());
            lease.task.await.context("lease task failed")?;
        }
        tracing::info!("stopped");
        Ok(())
    }
}
