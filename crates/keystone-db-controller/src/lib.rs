//! `keystone-db-controller`: the database, db-sync and bootstrap Jobs, and the trust-flush CronJob.
//!
//! The reconcile steps (read → validate → build → apply → status) arrive with the controller's own issue;
//! this crate already has the shape every controller shares: a Context, a typed error with a stable category
//! for metrics and logs, and an `error_policy` that backs off on transient errors.

use std::sync::Arc;
use std::time::Duration;

use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};

use keystone_types::KeystoneAPI;
use keystone_types::conditions::Controller;
use operator_common::metrics::ControllerMetrics;

/// This binary in the condition contract.
pub const CONTROLLER: Controller = Controller::Db;
/// Field manager of every server-side apply this controller makes.
pub const FIELD_MANAGER: &str = "keystone-db-controller";

/// Shared state of all reconciles.
#[derive(Clone)]
#[allow(missing_debug_implementations)]
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// This controller's metrics.
    pub metrics: ControllerMetrics,
}

impl Context {
    /// A context for the given client and metrics.
    pub fn new(client: Client, metrics: ControllerMetrics) -> Self {
        Self { client, metrics }
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object could not be deserialized as a KeystoneAPI (it does not match this controller's schema).
    #[error("KeystoneAPI {name} cannot be read: {message}")]
    InvalidObject {
        /// Object name.
        name: String,
        /// Deserialization error.
        message: String,
    },
    /// A Kubernetes API call failed.
    #[error("Kubernetes API call failed for {name}: {source}")]
    Kube {
        /// Object name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// Short, stable category: the metric label, the log field and the Event reason.
    pub fn category(&self) -> &'static str {
        match self {
            Error::InvalidObject { .. } => "invalid_object",
            Error::Kube { .. } => "kube_api",
        }
    }
}

/// Reconciles one KeystoneAPI.
#[tracing::instrument(skip_all, fields(generation))]
pub async fn reconcile(obj: Arc<DeserializeGuard<KeystoneAPI>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start_reconcile();
    let keystone = match &obj.0 {
        Ok(k) => k,
        Err(invalid) => {
            return Err(Error::InvalidObject {
                name: invalid.metadata.name.clone().unwrap_or_default(),
                message: invalid.error.clone(),
            });
        }
    };
    tracing::Span::current().record("generation", keystone.metadata.generation);
    tracing::info!(name = %keystone.name_any(), namespace = ?keystone.metadata.namespace, "observed");
    // Safety net: re-check periodically even when nothing changes.
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Decides what to do after a failed reconcile.
pub fn error_policy(_obj: Arc<DeserializeGuard<KeystoneAPI>>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.record_failure(error.category());
    match error {
        // The user must fix the object; its next change triggers a reconcile.
        Error::InvalidObject { .. } => Action::await_change(),
        Error::Kube { .. } => Action::requeue(Duration::from_secs(5)),
    }
}
