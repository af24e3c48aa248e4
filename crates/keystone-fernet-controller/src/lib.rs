//! `keystone-fernet-controller`: the fernet token keys and the credential keys of each KeystoneAPI.
//!
//! A reconcile reads (the KeystoneAPI and both key Secrets, from the API server) → validates (the rotation
//! policy) → creates, checks or rotates the token keys → creates or checks the credential keys → writes its
//! status rows. It requeues for the exact time of the next rotation; there is no timer loop.

pub mod apply;
pub mod build;
pub mod keys;
pub mod metrics;
pub mod read;
pub mod schedule;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::{Api, Client, ResourceExt};

use keystone_types::KeystoneAPI;
use keystone_types::conditions::{Controller, FERNET_KEYS_READY, reasons};
use operator_common::backoff::FailedCall;
use operator_common::conditions::Desired;
use operator_common::metrics::ControllerMetrics;

use crate::apply::{CredentialOutcome, FernetOutcome, Step};
use crate::metrics::FernetMetrics;

/// This binary in the condition contract.
pub const CONTROLLER: Controller = Controller::Fernet;
/// Field manager of every write this controller makes.
pub const FIELD_MANAGER: &str = "keystone-fernet-controller";
/// Default `--min-rotation-interval`: comfortably above the kubelet's Secret refresh (up to ~90 s).
pub const DEFAULT_MIN_ROTATION_INTERVAL: Duration = Duration::from_secs(300);

/// Shared state of all reconciles.
#[derive(Clone)]
#[allow(missing_debug_implementations)]
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Reconcile metrics.
    pub metrics: ControllerMetrics,
    /// Key and rotation metrics.
    pub fernet_metrics: FernetMetrics,
    /// Event recorder.
    pub recorder: Recorder,
    /// `--min-rotation-interval`.
    pub min_rotation_interval: Duration,
    /// `--key-propagation-allowance`.
    pub key_propagation_allowance: Duration,
    /// Per-KeystoneAPI backoff after failures.
    pub backoff: Arc<operator_common::backoff::Backoff>,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object could not be deserialized as a KeystoneAPI.
    #[error("KeystoneAPI {name} cannot be read: {message}")]
    InvalidObject {
        /// Object name.
        name: String,
        /// Deserialization error.
        message: String,
    },
    /// A Kubernetes API call about one object failed.
    #[error(transparent)]
    Kube(#[from] FailedCall),
    /// Generating key material for a rotation failed; nothing was written.
    #[error("cannot generate a fernet key for {name}; nothing was written: {source}")]
    KeyGeneration {
        /// Object name.
        name: String,
        /// What failed.
        #[source]
        source: keys::KeyError,
    },
}

impl Error {
    /// Short, stable category: the metric label, the log field and the Event reason.
    pub fn category(&self) -> &'static str {
        match self {
            Error::InvalidObject { .. } => "invalid_object",
            Error::Kube(_) => "kube_api",
            Error::KeyGeneration { .. } => "key_generation",
        }
    }
}

/// Reconciles one KeystoneAPI's keys. A failed API call about a key Secret is reported under that Secret's
/// condition (False, naming it; the API server's message is not copied for a Secret) and retried with this
/// object's backoff.
#[tracing::instrument(skip_all, fields(generation))]
pub async fn reconcile(obj: Arc<DeserializeGuard<KeystoneAPI>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start_reconcile();
    let watched = operator_common::guard::keystone(&obj)
        .map_err(|(name, message)| Error::InvalidObject { name, message })?;
    let key = operator_common::backoff::key(watched);
    match reconcile_keys(watched, &ctx).await {
        Ok(action) => {
            ctx.backoff.reset(&key);
            Ok(action)
        }
        Err(Error::Kube(failed)) if failed.condition.is_some() => {
            let retry_in = operator_common::backoff::report(
                watched,
                CONTROLLER,
                &failed,
                (&ctx.client, &ctx.metrics, &ctx.backoff),
                |_| Vec::new(),
            )
            .await?;
            Ok(Action::requeue(retry_in))
        }
        Err(e) => Err(e),
    }
}

async fn reconcile_keys(watched: &KeystoneAPI, ctx: &Context) -> Result<Action, Error> {
    let (namespace, name) = (watched.namespace().unwrap_or_default(), watched.name_any());
    // A few rounds at most: each Retry means another writer changed a Secret between our read and write.
    for _ in 0..3 {
        let inputs = read::inputs(&ctx.client, &namespace, &name).await?;
        let Some(ks) = inputs.keystone else {
            return Ok(Action::await_change());
        };
        tracing::Span::current().record("generation", ks.metadata.generation);
        let now = Timestamp::now();
        let api: Api<KeystoneAPI> = Api::namespaced(ctx.client.clone(), &namespace);

        let policy =
            match validate::policy(&ks.spec, ctx.min_rotation_interval, ctx.key_propagation_allowance) {
                Ok(p) => p,
                Err(message) => {
                    // Leave the keys alone; say why nothing happens.
                    let fernet = FernetOutcome {
                        condition: Desired::not_ok(FERNET_KEYS_READY, reasons::INVALID_SPEC, message),
                        active_keys: None,
                        hash: None,
                        last_rotation: None,
                        rotation_count: None,
                        next_due: None,
                        wake_at: None,
                    };
                    let cred =
                        match apply::credential_keys(ctx, &ks, inputs.credential_secret, now.as_second())
                            .await?
                        {
                            Step::Done(c) => c,
                            Step::Retry => continue,
                        };
                    let (status, changed) = status::desired(&ks, &fernet, &cred, None, None, now);
                    status::write(&api, &name, &status, changed).await?;
                    return Ok(Action::await_change());
                }
            };

        let fernet =
            match apply::fernet_keys(ctx, &ks, inputs.fernet_secret, &policy, now.as_second()).await? {
                Step::Done(f) => f,
                Step::Retry => continue,
            };
        let cred: CredentialOutcome =
            match apply::credential_keys(ctx, &ks, inputs.credential_secret, now.as_second()).await? {
                Step::Done(c) => c,
                Step::Retry => continue,
            };
        let policy_condition = status::policy_condition(&policy);
        let (status, changed) = status::desired(
            &ks,
            &fernet,
            &cred,
            Some(&policy_condition),
            Some(policy.effective().0),
            now,
        );
        status::write(&api, &name, &status, changed).await?;
        observe(ctx, &namespace, &name, &fernet, now.as_second());

        let wake_at = match (fernet.wake_at, cred.wake_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let wait = wake_at.map_or(Duration::from_secs(300), |at| until(at, now));
        return Ok(Action::requeue(wait));
    }
    Ok(Action::requeue(Duration::from_millis(500)))
}

/// How long from `now` until unix second `at`, to the millisecond: a rotation due at `at` runs within
/// milliseconds of it rather than up to a second late (the schedule itself is in whole seconds). One second
/// when `at` has passed, so that a wake-up time that cannot be met never turns into a busy loop.
fn until(at: i64, now: Timestamp) -> Duration {
    let ms = at.saturating_mul(1000).saturating_sub(now.as_millisecond());
    match u64::try_from(ms) {
        Ok(ms) if ms > 0 => Duration::from_millis(ms),
        _ => Duration::from_secs(1),
    }
}

fn observe(ctx: &Context, namespace: &str, name: &str, fernet: &FernetOutcome, now: i64) {
    let l = [namespace, name];
    if let Some(n) = fernet.active_keys {
        ctx.fernet_metrics
            .active_keys
            .with_label_values(&l)
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    if let Some(last) = fernet.last_rotation {
        ctx.fernet_metrics
            .last_rotation
            .with_label_values(&l)
            .set(last as f64);
    }
    if let Some(next) = fernet.next_due {
        ctx.fernet_metrics
            .until_next
            .with_label_values(&l)
            .set((next - now).max(0) as f64);
    }
}

/// Decides what to do after a failed reconcile.
pub fn error_policy(obj: Arc<DeserializeGuard<KeystoneAPI>>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.record_failure(error.category());
    match error {
        Error::InvalidObject { .. } => Action::await_change(),
        Error::Kube(_) | Error::KeyGeneration { .. } => {
            let retry_in = ctx
                .backoff
                .next(&operator_common::backoff::guard_key(obj.as_ref()));
            tracing::warn!(%error, ?retry_in, "reconcile failed");
            Action::requeue(retry_in)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_at_the_millisecond_the_rotation_is_due() {
        let now = Timestamp::from_millisecond(1_000_250).unwrap();
        assert_eq!(until(1_030, now), Duration::from_millis(29_750));
        assert_eq!(until(1_000, now), Duration::from_secs(1));
        assert_eq!(
            until(1_001, Timestamp::from_second(1_001).unwrap()),
            Duration::from_secs(1)
        );
    }
}
