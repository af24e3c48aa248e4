//! The catalog controllers: `KeystoneService` and `KeystoneEndpoint`, reconciled against the Keystone API of
//! their KeystoneAPI. They run in this binary as two more kube-runtime controllers, each with its own field
//! manager and metrics (`keystone_api_catalog_*{kind}`), woken by watches on the KeystoneAPIs, the services'
//! password Secrets and (for endpoints) the KeystoneServices — not by polling. A failing Keystone call backs
//! off exponentially per object (5 s doubling to 5 min), and a healthy object is re-checked every 10 minutes
//! to repair drift made in Keystone directly.

pub mod endpoint;
pub mod service;
pub mod target;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::{Client, Resource};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use operator_common::conditions::Desired;

use crate::catalog::target::{AdminClients, UrlOverrides};

/// Field manager of the KeystoneService controller's status writes and finalizer patches.
pub const SERVICE_FIELD_MANAGER: &str = "keystone-api-controller/keystoneservice";
/// Field manager of the KeystoneEndpoint controller's status writes and finalizer patches.
pub const ENDPOINT_FIELD_MANAGER: &str = "keystone-api-controller/keystoneendpoint";

/// How often a Ready object is compared with Keystone again (drift made in Keystone directly).
pub const RESYNC: Duration = Duration::from_secs(600);
/// How long a deletion may keep failing against a reachable-looking Keystone before the finalizer is
/// dropped anyway (with a Warning Event), so that namespace deletion always completes.
pub const CLEANUP_DEADLINE: Duration = Duration::from_secs(300);

/// Metrics of the two catalog controllers, in the api controller's registry.
#[derive(Clone, Debug)]
pub struct CatalogMetrics {
    /// `keystone_api_catalog_reconcile_runs_total{kind}`
    pub runs: IntCounterVec,
    /// `keystone_api_catalog_reconcile_failures_total{kind,category}`
    pub failures: IntCounterVec,
    /// `keystone_api_catalog_reconcile_duration_seconds{kind}`
    pub duration: HistogramVec,
    /// `keystone_api_catalog_keystone_changes_total{kind,change}`: writes made to Keystone.
    pub changes: IntCounterVec,
}

impl CatalogMetrics {
    /// Registers the metrics in `registry` (the controller's, prefixed `keystone_api_`).
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let runs = IntCounterVec::new(
            Opts::new(
                "catalog_reconcile_runs_total",
                "Catalog reconcile runs started, by kind.",
            ),
            &["kind"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "catalog_reconcile_failures_total",
                "Catalog reconcile runs that failed, by kind and error category.",
            ),
            &["kind", "category"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "catalog_reconcile_duration_seconds",
                "Duration of catalog reconcile runs.",
            )
            .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["kind"],
        )?;
        let changes = IntCounterVec::new(
            Opts::new(
                "catalog_keystone_changes_total",
                "Changes made in Keystone by the catalog controllers, by kind and change.",
            ),
            &["kind", "change"],
        )?;
        registry.register(Box::new(runs.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(changes.clone()))?;
        Ok(Self {
            runs,
            failures,
            duration,
            changes,
        })
    }
}

/// Shared state of the two catalog controllers.
#[allow(missing_debug_implementations)]
pub struct Catalog {
    /// Kubernetes client.
    pub client: Client,
    /// Keystone clients per KeystoneAPI, with their cached tokens.
    pub admin: AdminClients,
    /// Where to reach Keystone when the internal endpoint is not reachable from here.
    pub urls: UrlOverrides,
    /// Metrics.
    pub metrics: CatalogMetrics,
    /// Backoff per object.
    pub backoff: operator_common::backoff::Backoff,
    /// Events.
    pub recorder: Recorder,
}

/// Why a catalog reconcile failed (after writing what it could to the status).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API call failed for {name}: {source}")]
    Kube {
        /// Object name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A Keystone API call failed; the object's conditions say which step.
    #[error("{name}: {step}: {source}")]
    Keystone {
        /// Object name.
        name: String,
        /// What was being done.
        step: String,
        /// The Keystone client error (never holds a secret).
        #[source]
        source: keystone_client::Error,
    },
    /// Being deleted, and waiting for its KeystoneAPI to become usable again to remove what it created: an
    /// error only so that kube-runtime's finalizer helper keeps the finalizer (a cleanup that returns `Ok`
    /// removes it); the object's `KeystoneAPIReady` condition says `WaitingToDelete`.
    #[error("{name} waits for its KeystoneAPI to remove {what} it created")]
    DeletionWaiting {
        /// Object name.
        name: String,
        /// What it created.
        what: String,
    },
    /// Adding or removing the finalizer failed.
    #[error("finalizer of {name}: {message}")]
    Finalizer {
        /// Object name.
        name: String,
        /// What failed.
        message: String,
    },
}

impl Error {
    /// Short, stable category: the metric label and the log field.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube_api",
            Error::Keystone { source, .. } if source.is_transient() => "keystone_unavailable",
            Error::Keystone { .. } => "keystone_request",
            Error::DeletionWaiting { .. } => "deletion_waiting",
            Error::Finalizer { .. } => "finalizer",
        }
    }
}

/// Maps kube-runtime's finalizer wrapper onto our error.
pub(crate) fn from_finalizer(name: &str, e: kube::runtime::finalizer::Error<Error>) -> Error {
    use kube::runtime::finalizer::Error as F;
    match e {
        F::ApplyFailed(e) | F::CleanupFailed(e) => e,
        other => Error::Finalizer {
            name: name.to_owned(),
            message: other.to_string(),
        },
    }
}

/// The condition for a failed Keystone call: unreachable/5xx/timeouts are `KeystoneUnavailable`, refusals
/// `KeystoneRequestFailed`; the message is the client's (secrets already redacted).
pub(crate) fn keystone_condition(type_: &'static str, step: &str, e: &keystone_client::Error) -> Desired {
    use keystone_types::catalog::conditions::reasons;
    let reason = if e.is_transient() {
        reasons::KEYSTONE_UNAVAILABLE
    } else {
        reasons::KEYSTONE_REQUEST_FAILED
    };
    Desired::not_ok(type_, reason, format!("{step}: {e} (retrying with backoff)"))
}

/// `Ready` from the other conditions: True when all are True, else the first False one's message.
pub(crate) fn ready(conditions: &[Desired]) -> Desired {
    use keystone_types::catalog::conditions::{READY, reasons};
    match conditions.iter().find(|c| !c.status) {
        None => Desired::ok(READY, reasons::SUCCEEDED, "registered in Keystone"),
        Some(c) => Desired::not_ok(READY, c.reason.clone(), format!("{}: {}", c.type_, c.message)),
    }
}

/// The conditions to write, and whether they (or the generation) differ from `current`.
pub(crate) fn next_conditions(
    current: Option<&Vec<Condition>>,
    desired: &[Desired],
    generation: Option<i64>,
) -> (Vec<Condition>, bool) {
    operator_common::conditions::reconcile(
        current.map(Vec::as_slice).unwrap_or_default(),
        desired,
        generation,
        Timestamp::now(),
    )
}

/// What a catalog object writes into [`keystone_client::OWNER_ATTRIBUTE`] of the Keystone objects it creates
/// (`KeystoneService <namespace>/<name>`): it survives controller restarts and a lost status, and marks what
/// the object may change and delete. Keystone objects without it (or with another owner) were found, and are
/// left alone.
pub(crate) fn owner_of<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{} {}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// Whether a KeystoneAPI that cannot be used (the reason of its `KeystoneAPIReady` condition) still exists and
/// may become usable: not Ready yet, or its admin credentials missing. Gone or being deleted is final.
pub(crate) fn keystone_api_still_there(condition: &Desired) -> bool {
    use keystone_types::catalog::conditions::reasons;
    condition.reason == reasons::WAITING_FOR_KEYSTONE_API
        || condition.reason == reasons::ADMIN_CREDENTIALS_UNAVAILABLE
}

/// Deletion of `obj` found no usable KeystoneAPI (`condition` says why). When `obj` created something in
/// Keystone (`created`, e.g. "the user and service") and its KeystoneAPI still exists, deletion waits for it
/// until [`CLEANUP_DEADLINE`]: the `KeystoneAPIReady` condition to report is returned. Otherwise the finalizer
/// may go (with a Warning Event when what it created stays behind): `None`.
pub(crate) async fn wait_to_delete<K: Resource<DynamicType = ()>>(
    ctx: &Catalog,
    obj: &K,
    condition: &Desired,
    created: Option<&str>,
) -> Option<Desired> {
    use keystone_types::catalog::conditions::{KEYSTONE_API_READY, reasons};
    let created = created.filter(|_| keystone_api_still_there(condition))?;
    if !service::past_deadline(obj) {
        return Some(Desired::not_ok(
            KEYSTONE_API_READY,
            reasons::DELETION_WAITING,
            format!(
                "being deleted: waiting for the KeystoneAPI to remove {created} this object created ({}); \
                 giving up {}s after the deletion started",
                condition.message,
                CLEANUP_DEADLINE.as_secs()
            ),
        ));
    }
    publish(
        ctx,
        obj,
        EventType::Warning,
        "CleanupAbandoned",
        format!(
            "the KeystoneAPI stayed unusable for {}s since deletion started ({}); the finalizer is removed and \
             {created} this object created remain in Keystone",
            CLEANUP_DEADLINE.as_secs(),
            condition.message
        ),
    )
    .await;
    None
}

/// Whether a Keystone object is this catalog object's: it carries our owner mark, or (created by a version
/// before the mark) the status recorded creating exactly it.
pub(crate) fn is_ours(owner: Option<&str>, mark: &str, id: &str, created_id: Option<&str>) -> bool {
    owner == Some(mark) || (owner.is_none() && created_id == Some(id))
}

pub(crate) use operator_common::backoff::key;

/// After a failure: count it and retry with this object's backoff.
pub(crate) fn retry<K: Resource<DynamicType = ()>>(
    kind: &str,
    obj: &K,
    error: &Error,
    ctx: &Catalog,
) -> Action {
    ctx.metrics
        .failures
        .with_label_values(&[kind, error.category()])
        .inc();
    let delay = ctx.backoff.next(&key(obj));
    tracing::warn!(%error, category = error.category(), retry_in = ?delay, "{kind} reconcile failed");
    Action::requeue(delay)
}

/// Publishes an Event about a catalog object (never with a secret in the note).
pub(crate) async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Catalog,
    obj: &K,
    type_: kube::runtime::events::EventType,
    reason: &str,
    note: String,
) {
    operator_common::events::publish(&ctx.recorder, &obj.object_ref(&()), type_, reason, note).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_carries_our_mark_or_our_recorded_creation_is_ours() {
        let mark = "KeystoneService openstack/placement";
        // Marked by us.
        assert!(is_ours(Some(mark), mark, "u1", None));
        // Marked by someone else (another KeystoneService), even if our status names the id.
        assert!(!is_ours(
            Some("KeystoneService openstack/nova"),
            mark,
            "u1",
            Some("u1")
        ));
        // No mark: found (the admin user, bootstrap's identity service, one made by hand)...
        assert!(!is_ours(None, mark, "u1", None));
        assert!(!is_ours(None, mark, "u1", Some("u2")));
        // ...unless an earlier version of the operator recorded creating exactly it.
        assert!(is_ours(None, mark, "u1", Some("u1")));
    }

    #[test]
    fn deletion_waits_only_for_a_keystone_api_that_still_exists() {
        use keystone_types::catalog::conditions::{KEYSTONE_API_READY, reasons};
        let c = |reason: &str| Desired::not_ok(KEYSTONE_API_READY, reason.to_owned(), "m");
        assert!(keystone_api_still_there(&c(reasons::WAITING_FOR_KEYSTONE_API)));
        assert!(keystone_api_still_there(&c(
            reasons::ADMIN_CREDENTIALS_UNAVAILABLE
        )));
        assert!(!keystone_api_still_there(&c(reasons::KEYSTONE_API_NOT_FOUND)));
        assert!(!keystone_api_still_there(&c(reasons::KEYSTONE_API_AMBIGUOUS)));
    }

    #[test]
    fn ready_summarises_the_first_false_condition() {
        let ok = Desired::ok("A", "Succeeded", "fine");
        let bad = Desired::not_ok("B", "KeystoneUnavailable", "down");
        assert!(ready(std::slice::from_ref(&ok)).status);
        let r = ready(&[ok, bad]);
        assert!(!r.status);
        assert_eq!(r.reason, "KeystoneUnavailable");
        assert_eq!(r.message, "B: down");
    }
}
