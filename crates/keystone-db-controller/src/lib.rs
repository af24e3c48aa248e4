//! `keystone-db-controller`: the database, db-sync and bootstrap Jobs, and the trust-flush CronJob.
//!
//! A reconcile reads (the password Secret, the HMAC key, this instance's Jobs) → computes each step's inputs
//! hash → runs the steps in order, each waiting for the one before: database creation (or the connection
//! check), then — once the api controller published the config for this generation — db-sync, then — once the
//! fernet keys exist and the endpoints are published — bootstrap; the trust-flush CronJob follows the spec.
//! A step is done when the status records a successful run for its current hash; that record, not the
//! existence of a Job, is what counts.

pub mod build;
pub mod inputs;
pub mod steps;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::{Api, Client, ResourceExt};

use keystone_types::conditions::{
    BOOTSTRAP_READY, CONFIG_READY, CREDENTIAL_MIGRATION_READY, Controller, DATABASE_READY, DB_SYNC_READY,
    FERNET_KEYS_READY, TRUST_FLUSH_READY, reasons,
};
use keystone_types::credential_rotation::{self, MigrateStep};
use keystone_types::v1beta1::{CredentialMigrationStatus, DatabaseStatus};
use keystone_types::{KeystoneAPI, KeystoneAPIStatus, labels, names};
use operator_common::backoff::FailedCall;
use operator_common::conditions::{Desired, reconcile as reconcile_conditions};
use operator_common::metrics::ControllerMetrics;

use crate::build::jobs::{self, PublishedConfig};
use crate::steps::{Step, StepState};

/// This binary in the condition contract.
pub const CONTROLLER: Controller = Controller::Db;
/// Field manager of every server-side apply this controller makes.
pub const FIELD_MANAGER: &str = "keystone-db-controller";
/// Annotation on the KeystoneAPI: a new value retries failed Jobs at once.
pub const RETRY_ANNOTATION: &str = "keystone.openstack.org/retry-jobs";

/// Shared state of all reconciles.
#[allow(missing_debug_implementations)]
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Reconcile metrics.
    pub metrics: ControllerMetrics,
    /// Event recorder.
    pub recorder: Recorder,
    /// What was last applied to each child (no-op applies are skipped).
    pub applied: std::sync::Arc<operator_common::apply::Applied>,
    /// Per-KeystoneAPI backoff after failures.
    pub backoff: operator_common::backoff::Backoff,
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
    /// Reading or creating the HMAC key failed (a transient failure: the API server, the RNG).
    #[error("the HMAC key of {name}: {source}")]
    HmacKey {
        /// Object name.
        name: String,
        /// What failed.
        #[source]
        source: operator_common::hmac::KeyError,
    },
}

impl Error {
    /// Short, stable category: the metric label, the log field and the Event reason.
    pub fn category(&self) -> &'static str {
        match self {
            Error::InvalidObject { .. } => "invalid_object",
            Error::Kube(_) => "kube_api",
            Error::HmacKey { .. } => "hmac_key",
        }
    }
}

fn condition_true_now(ks: &KeystoneAPI, type_: &str) -> bool {
    ks.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == type_ && c.status == "True" && c.observed_generation == ks.metadata.generation
            })
        })
}

/// Reconciles one KeystoneAPI's database steps. A failed API call is reported under the condition of the step
/// it belongs to (False, naming the object and the API server's answer) and retried with this object's
/// backoff; the other steps go on and what they finished is recorded, so a later step's failure never makes an
/// earlier one run again.
#[tracing::instrument(skip_all, fields(generation))]
pub async fn reconcile(obj: Arc<DeserializeGuard<KeystoneAPI>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start_reconcile();
    let ks = operator_common::guard::keystone(&obj)
        .map_err(|(name, message)| Error::InvalidObject { name, message })?;
    tracing::Span::current().record("generation", ks.metadata.generation);
    if ks.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let key = operator_common::backoff::key(ks);
    match reconcile_steps(ks, &ctx).await {
        Ok((action, failed)) => {
            if !failed {
                ctx.backoff.reset(&key);
            }
            Ok(action)
        }
        Err(Error::Kube(failed)) if failed.condition.is_some() => {
            let retry_in = operator_common::backoff::report(
                ks,
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

async fn write_status(ctx: &Context, ks: &KeystoneAPI, status: &KeystoneAPIStatus) -> Result<(), Error> {
    let name = ks.name_any();
    let api: Api<KeystoneAPI> = Api::namespaced(ctx.client.clone(), &ks.namespace().unwrap_or_default());
    operator_common::apply::apply_status(&api, &name, CONTROLLER, status)
        .await
        .map(|_| ())
        .map_err(|e| FailedCall::status_write(&name)(e).into())
}

/// The steps; also whether an API call failed on the way (reported in its step's condition).
async fn reconcile_steps(ks: &KeystoneAPI, ctx: &Context) -> Result<(Action, bool), Error> {
    let name = ks.name_any();
    let ns = ks.namespace().unwrap_or_default();
    let now = Timestamp::now();
    let spec = &ks.spec;
    let prev = ks
        .status
        .as_ref()
        .and_then(|s| s.database.clone())
        .unwrap_or_default();
    let mut db = DatabaseStatus {
        hostname: Some(spec.database.host.clone()),
        ..prev.clone()
    };
    let mut wake = Duration::from_secs(300);

    // Passwords, as HMACs only.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let password_secret = secrets.get_opt(&spec.secret).await.map_err(FailedCall::under(
        &name,
        DATABASE_READY,
        "reading",
        format!("Secret {}", spec.secret),
    ))?;
    // A key Secret someone else planted, or ours made unusable, stops every step that hashes a password: the
    // user must act (the message says how); anything else is transient.
    let key_secret = names::hmac_key_secret(&name, CONTROLLER);
    let key = operator_common::hmac::ensure_or_refusal(&ctx.client, ks, &key_secret, CONTROLLER)
        .await
        .map_err(|e| match e.into_failed_call(&name, DATABASE_READY) {
            Ok(failed) => Error::Kube(failed),
            Err(other) => Error::HmacKey {
                name: name.clone(),
                source: other,
            },
        })?
        .map_err(|message| StepState::Blocked(reasons::HMAC_KEY_UNUSABLE, message));
    let mac_of = |selector: &str| -> Option<String> {
        let value = password_secret.as_ref()?.data.as_ref()?.get(selector)?;
        Some(key.as_ref().ok()?.hex(&value.0))
    };
    let missing = |selector: &str| {
        format!(
            "Secret {} has no key {selector} (spec.passwordSelectors); waiting for it",
            spec.secret
        )
    };
    let step_ctx = steps::StepContext {
        ctx,
        ks,
        now,
        backoff_key: operator_common::backoff::key(ks),
    };

    // 1. The database and its user.
    let database = match (
        &key,
        mac_of(&spec.password_selectors.database),
        spec.database.create,
        mac_of(&spec.password_selectors.database_root),
    ) {
        (Err(blocked), ..) => blocked.clone(),
        (_, None, _, _) => StepState::Waiting(missing(&spec.password_selectors.database)),
        (_, Some(_), true, None) => StepState::Waiting(missing(&spec.password_selectors.database_root)),
        (_, Some(db_mac), _, root_mac) => {
            let root_mac = if spec.database.create {
                root_mac.unwrap_or_default()
            } else {
                String::new()
            };
            let hash = inputs::db_create(ks, &db_mac, &root_mac);
            let step = Step {
                kind: "database",
                recorded: prev.db_create_hash.as_deref(),
                hash: &hash,
            };
            let state = steps::run(&step_ctx, &step, |attempt| {
                jobs::db_create_job(ks, &hash, attempt)
            })
            .await;
            if matches!(state, StepState::Done) {
                if prev.db_create_hash.as_deref() != Some(hash.as_str()) {
                    // Finished just now: what it found in the database, before any credential key is made.
                    if let Some(n) = steps::stored_credentials(&step_ctx, &hash).await {
                        db.stored_credentials = Some(n);
                    }
                }
                db.db_create_hash = Some(hash.clone());
                // The database has the password of this version of the Secret (its HMAC is in the hash).
                db.password_secret_version = password_secret.as_ref().and_then(|s| s.resource_version());
            }
            state
        }
    };

    // 2. db-sync, with the configuration the api controller published for this generation.
    let config = match (
        condition_true_now(ks, CONFIG_READY),
        ks.status.as_ref().and_then(|s| s.api.as_ref()),
    ) {
        (true, Some(api)) => match (&api.config_map, &api.config_secret) {
            (Some(cm), Some(s)) => Some(PublishedConfig {
                config_map: cm.clone(),
                config_secret: s.clone(),
            }),
            _ => None,
        },
        _ => None,
    };
    let sync_hash = inputs::db_sync(ks);
    let db_sync = match (&database, &config) {
        (StepState::Done, Some(config)) => {
            let step = Step {
                kind: "db-sync",
                recorded: prev.db_sync_hash.as_deref(),
                hash: &sync_hash,
            };
            let state = steps::run(&step_ctx, &step, |attempt| {
                jobs::db_sync_job(ks, config, &sync_hash, attempt)
            })
            .await;
            if matches!(state, StepState::Done) {
                db.db_sync_hash = Some(sync_hash.clone());
                db.synced_image = Some(spec.container_image.clone());
            }
            state
        }
        (StepState::Done, None) => StepState::Waiting(
            "waiting for the api controller to publish the configuration (ConfigReady)".into(),
        ),
        _ => StepState::Waiting("waiting for the database (DatabaseReady)".into()),
    };

    // 3. bootstrap, once the keys exist and the endpoints are published.
    let endpoints = ks
        .status
        .as_ref()
        .and_then(|s| s.api_endpoints.clone())
        .unwrap_or_default();
    let bootstrap = match (
        &db_sync,
        &config,
        endpoints.public.as_deref(),
        endpoints.internal.as_deref(),
    ) {
        (StepState::Done, Some(config), Some(public), Some(internal)) => {
            if let Err(blocked) = &key {
                blocked.clone()
            } else if !condition_true_now(ks, FERNET_KEYS_READY) {
                StepState::Waiting("waiting for the fernet keys (FernetKeysReady)".into())
            } else if let Some(admin_mac) = mac_of(&spec.password_selectors.admin) {
                let hash = inputs::bootstrap(ks, public, internal, &admin_mac);
                let step = Step {
                    kind: "bootstrap",
                    recorded: prev.bootstrap_hash.as_deref(),
                    hash: &hash,
                };
                let state = steps::run(&step_ctx, &step, |attempt| {
                    jobs::bootstrap_job(ks, config, public, internal, &hash, attempt)
                })
                .await;
                if matches!(state, StepState::Done) {
                    db.bootstrap_hash = Some(hash.clone());
                }
                state
            } else {
                StepState::Waiting(missing(&spec.password_selectors.admin))
            }
        }
        (StepState::Done, _, _, _) => {
            StepState::Waiting("waiting for the api controller to publish apiEndpoints".into())
        }
        _ => StepState::Waiting("waiting for db-sync (DBSyncReady)".into()),
    };

    // 4. trust-flush.
    let mut call_failed = false;
    let cronjob = config
        .as_ref()
        .map(|config| jobs::trust_flush_cronjob(ks, config));
    let trust_flush = match &cronjob {
        Some(cronjob) => match ctx.applied.apply(&ctx.client, CONTROLLER, cronjob).await {
            Err(source) => {
                call_failed = true;
                let retry_in = ctx.backoff.next(&step_ctx.backoff_key);
                wake = wake.min(retry_in);
                let object = operator_common::backoff::describe(cronjob);
                tracing::warn!(%name, %object, error = %source, ?retry_in, "API call failed");
                operator_common::backoff::failed_call(
                    TRUST_FLUSH_READY,
                    "applying",
                    &object,
                    &source,
                    retry_in,
                )
            }
            Ok(_) => Desired::ok(
                TRUST_FLUSH_READY,
                reasons::SUCCEEDED,
                format!(
                    "schedule {:?}{}",
                    spec.trust_flush.schedule,
                    if spec.trust_flush.suspend {
                        ", suspended"
                    } else {
                        ""
                    }
                ),
            ),
        },
        None => Desired::not_ok(
            TRUST_FLUSH_READY,
            "WaitingForConfig",
            "waiting for the published configuration (ConfigReady)",
        ),
    };

    // 5. credential_migrate, when the fernet controller's credential key rotation asks for it.
    let migration = match credential_rotation::cycle_from_status(ks) {
        None => StepState::Done,
        Some(cycle) => match credential_rotation::migrate_step(
            &cycle,
            credential_rotation::migrated_from_status(ks).as_ref(),
            now.as_second(),
        ) {
            MigrateStep::Nothing => StepState::Done,
            MigrateStep::WaitUntil(at) => {
                let left = u64::try_from(at.saturating_sub(now.as_second())).unwrap_or(0);
                wake = wake.min(Duration::from_secs(left.max(1)));
                StepState::Waiting(format!(
                    "the credential keys were rotated; credential_migrate runs at {} (when every pod has the new \
                     primary key)",
                    Timestamp::from_second(at).unwrap_or(now)
                ))
            }
            MigrateStep::Run { keys_hash } => match &config {
                None => StepState::Waiting(
                    "waiting for the published configuration (ConfigReady) to run credential_migrate".into(),
                ),
                Some(config) => {
                    let not_before = match cycle.phase {
                        credential_rotation::Phase::PostMigrate => cycle.migrate_after,
                        _ => None,
                    };
                    let run_hash = inputs::credential_migrate(ks, &keys_hash, not_before);
                    let step = Step {
                        kind: "credential-migrate",
                        recorded: None,
                        hash: &run_hash,
                    };
                    let state = steps::run(&step_ctx, &step, |attempt| {
                        jobs::credential_migrate_job(ks, config, &keys_hash, &run_hash, attempt)
                    })
                    .await;
                    if !matches!(state, StepState::Done) {
                        state
                    } else {
                        match steps::latest(&step_ctx, labels::component::CREDENTIAL_MIGRATE, &run_hash).await
                        {
                            Err(failed) => steps::call_failed(&step_ctx, "credential-migrate", &failed),
                            Ok(job) => {
                                let started = job.as_ref().and_then(|j| {
                                    j.status
                                        .as_ref()
                                        .and_then(|s| s.start_time.clone())
                                        .or_else(|| j.metadata.creation_timestamp.clone())
                                });
                                if let Some(started_at) = started {
                                    db.credential_migration = Some(CredentialMigrationStatus {
                                        keys_hash: keys_hash.clone(),
                                        started_at,
                                    });
                                }
                                state
                            }
                        }
                    }
                }
            },
        },
    };

    for s in [&database, &db_sync, &bootstrap, &migration] {
        if let Some(at) = s.wake_after() {
            wake = wake.min(at);
        }
        call_failed |= matches!(s, StepState::CallFailed(..));
    }
    let desired = vec![
        database.condition(DATABASE_READY, "database and user ready"),
        db_sync.condition(
            DB_SYNC_READY,
            &format!("db_sync done for image {}", spec.container_image),
        ),
        bootstrap.condition(BOOTSTRAP_READY, "bootstrap done"),
        trust_flush,
        migration.condition(
            CREDENTIAL_MIGRATION_READY,
            "no credential key rotation is waiting for credential_migrate",
        ),
    ];
    let existing = ks
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let (conds, changed) = reconcile_conditions(&existing, &desired, ks.metadata.generation, now);
    if changed || prev != db {
        let status = KeystoneAPIStatus {
            conditions: Some(conds),
            database: Some(db),
            ..Default::default()
        };
        write_status(ctx, ks, &status).await?;
    }
    Ok((Action::requeue(wake), call_failed))
}

/// Decides what to do after a failed reconcile.
pub fn error_policy(obj: Arc<DeserializeGuard<KeystoneAPI>>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.record_failure(error.category());
    match error {
        Error::InvalidObject { .. } => Action::await_change(),
        Error::Kube(_) | Error::HmacKey { .. } => {
            let retry_in = ctx
                .backoff
                .next(&operator_common::backoff::guard_key(obj.as_ref()));
            tracing::warn!(%error, ?retry_in, "reconcile failed");
            Action::requeue(retry_in)
        }
    }
}
