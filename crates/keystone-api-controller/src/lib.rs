//! `keystone-api-controller`: turns a KeystoneAPI into a running, reachable Keystone API.
//!
//! A reconcile reads (the user's Secrets, the Deployment, networks, pods) → validates → renders the config →
//! applies config and Services and publishes `apiEndpoints` unconditionally → applies the Deployment only as
//! far as the gate allows (keys, db-sync, bootstrap; a new image only after its db-sync) → writes its status
//! rows and `Ready`.

pub mod apply;
pub mod build;
pub mod catalog;
pub mod config;
pub mod exposure;
pub mod gate;
pub mod read;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::DeleteParams;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Api, Client, ResourceExt};

use keystone_types::KeystoneAPI;
use keystone_types::conditions::{CONFIG_READY, Controller, DEPLOYMENT_READY, SERVICE_READY, reasons};
use keystone_types::names;
use keystone_types::v1beta1::{ApiEndpoints, ApiStatus, Endpoint};
use operator_common::apply::apply_child;
use operator_common::backoff::{FailedCall, describe};
use operator_common::conditions::Desired;
use operator_common::metrics::ControllerMetrics;

use crate::build::deployment::PodInputs;
use crate::config::Templates;

/// This binary in the condition contract.
pub const CONTROLLER: Controller = Controller::Api;
/// Field manager of every server-side apply this controller makes.
pub const FIELD_MANAGER: &str = "keystone-api-controller";

/// Shared state of all reconciles.
#[allow(missing_debug_implementations)]
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Reconcile metrics.
    pub metrics: ControllerMetrics,
    /// The config templates.
    pub templates: Templates,
    /// What was last applied to each child (no-op applies are skipped).
    pub applied: Arc<operator_common::apply::Applied>,
    /// The optional APIs the cluster serves.
    pub discovery: read::Discovery,
    /// Per-KeystoneAPI backoff after failures.
    pub backoff: operator_common::backoff::Backoff,
    /// On OpenShift, the ClusterRole whose SCC the API pods' ServiceAccount is bound to (`--scc-cluster-role`).
    pub scc_cluster_role: String,
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
    /// A template failed to render (a bug: templates are strict and fixed).
    #[error("rendering the configuration of {name} failed: {message}")]
    Render {
        /// Object name.
        name: String,
        /// Renderer message.
        message: String,
    },
}

impl Error {
    /// A transient failure to read or create the HMAC key: an API call (reported under `condition`) or the
    /// random number generator.
    pub fn hmac(name: &str, condition: &'static str, error: operator_common::hmac::KeyError) -> Error {
        match error.into_failed_call(name, condition) {
            Ok(failed) => Error::Kube(failed),
            Err(other) => Error::HmacKey {
                name: name.to_owned(),
                source: other,
            },
        }
    }

    /// Short, stable category: the metric label, the log field and the Event reason.
    pub fn category(&self) -> &'static str {
        match self {
            Error::InvalidObject { .. } => "invalid_object",
            Error::Kube(_) => "kube_api",
            Error::HmacKey { .. } => "hmac_key",
            Error::Render { .. } => "render",
        }
    }
}

/// Reconciles one KeystoneAPI. A failed API call is reported under the condition of the step it belongs to
/// (False, naming the object and the API server's answer; the other conditions keep what they said) and
/// retried with this object's backoff.
#[tracing::instrument(skip_all, fields(generation))]
pub async fn reconcile(obj: Arc<DeserializeGuard<KeystoneAPI>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start_reconcile();
    let ks = operator_common::guard::keystone(&obj)
        .map_err(|(name, message)| Error::InvalidObject { name, message })?;
    tracing::Span::current().record("generation", ks.metadata.generation);
    if ks.metadata.deletion_timestamp.is_some() {
        // Being deleted: the garbage collector removes the children; re-applying them would fight it.
        return Ok(Action::await_change());
    }
    let key = operator_common::backoff::key(ks);
    match reconcile_keystone(ks, &ctx).await {
        Ok(action) => {
            ctx.backoff.reset(&key);
            Ok(action)
        }
        Err(Error::Kube(failed)) if failed.condition.is_some() => {
            let retry_in = operator_common::backoff::report(
                ks,
                CONTROLLER,
                &failed,
                (&ctx.client, &ctx.metrics, &ctx.backoff),
                |c| vec![status::ready_condition(ks, std::slice::from_ref(c))],
            )
            .await?;
            Ok(Action::requeue(retry_in))
        }
        Err(e) => Err(e),
    }
}

async fn reconcile_keystone(ks: &KeystoneAPI, ctx: &Context) -> Result<Action, Error> {
    let name = ks.name_any();
    let ns = ks.namespace().unwrap_or_default();
    let apply_err =
        |condition: &'static str, object: String| FailedCall::under(&name, condition, "applying", object);
    let inputs = read::inputs(&ctx.client, &ctx.discovery, ks).await?;

    // 1. Config (never waits). Its hash covers the database password: an HMAC under this instance's key, so
    // the hash in status and in object names tells nothing about the password.
    let key_secret = names::hmac_key_secret(&name, CONTROLLER);
    let key = operator_common::hmac::ensure_or_refusal(&ctx.client, ks, &key_secret, CONTROLLER)
        .await
        .map_err(|e| Error::hmac(&name, CONFIG_READY, e))?;
    let (config_condition, rendered) = match (validate::validate(ks, &inputs), key) {
        (Err(message), _) => (
            Desired::not_ok(CONFIG_READY, reasons::INVALID_SPEC, message),
            None,
        ),
        (Ok(_), Err(message)) => (
            Desired::not_ok(CONFIG_READY, reasons::HMAC_KEY_UNUSABLE, message),
            None,
        ),
        (Ok(v), Ok(key)) => {
            let r = ctx.templates.render(&v, &key).map_err(|e| Error::Render {
                name: name.clone(),
                message: e.to_string(),
            })?;
            let cm = build::config::config_map(ks, &r);
            ctx.applied
                .apply(&ctx.client, CONTROLLER, &cm)
                .await
                .map_err(apply_err(CONFIG_READY, describe(&cm)))?;
            let secret = build::config::config_secret(ks, &r);
            ctx.applied
                .apply(&ctx.client, CONTROLLER, &secret)
                .await
                .map_err(apply_err(CONFIG_READY, describe(&secret)))?;
            let msg = format!(
                "configuration {} and {} rendered (hash {})",
                names::config_map_versioned(&name, &r.hash),
                names::config_secret_versioned(&name, &r.hash),
                r.hash
            );
            (Desired::ok(CONFIG_READY, reasons::SUCCEEDED, msg), Some(r))
        }
    };

    // 2. Services and endpoints (never wait).
    for endpoint in Endpoint::ALL {
        let service = build::service::service(ks, endpoint);
        ctx.applied
            .apply(&ctx.client, CONTROLLER, &service)
            .await
            .map_err(apply_err(SERVICE_READY, describe(&service)))?;
    }
    let (public, public_pending) = exposure::publish_public(&ctx.client, ks, &inputs).await?;
    let internal = ks
        .spec
        .endpoint_urls
        .as_ref()
        .and_then(|o| o.internal.clone())
        .unwrap_or_else(|| build::service::endpoint_url(ks, Endpoint::Internal));
    let endpoints = ApiEndpoints {
        public: public.clone(),
        internal: Some(internal.clone()),
    };
    let service_condition = match public_pending {
        None => Desired::ok(
            SERVICE_READY,
            reasons::SUCCEEDED,
            format!("internal {internal}, public {}", public.unwrap_or_default()),
        ),
        Some(why) => Desired::not_ok(SERVICE_READY, "WaitingForRoute", why),
    };
    if inputs.scc_available {
        let binding = build::exposure::scc_role_binding(ks, &ctx.scc_cluster_role);
        // A RoleBinding's roleRef cannot change: one to another SCC role (an install that moved to the
        // dedicated SCC) is replaced, so the old, broader grant does not stay behind.
        let bindings: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), &ns);
        let binding_name = binding.name_any();
        let existing = bindings.get_opt(&binding_name).await.map_err(FailedCall::under(
            &name,
            DEPLOYMENT_READY,
            "reading",
            describe(&binding),
        ))?;
        if existing.is_some_and(|b| b.role_ref.name != binding.role_ref.name) {
            bindings
                .delete(&binding_name, &DeleteParams::default())
                .await
                .map_err(FailedCall::under(
                    &name,
                    DEPLOYMENT_READY,
                    "deleting",
                    describe(&binding),
                ))?;
        }
        apply_child(&ctx.client, CONTROLLER, &binding)
            .await
            .map_err(apply_err(DEPLOYMENT_READY, describe(&binding)))?;
    }

    // 3. The Deployment, as far as the gate allows.
    let mut gate = gate::decide(ks, inputs.deployment.as_ref());
    let mut deployment = inputs.deployment.clone();
    let mut deployed_image = deployment
        .as_ref()
        .and_then(build::deployment::current_inputs)
        .map(|i| i.image);
    let mut keep = Vec::new();
    if let Some(current) = deployment.as_ref().and_then(build::deployment::current_inputs) {
        keep.push(current.config_map);
        keep.push(current.config_secret);
    }
    match (&rendered, gate.apply, gate.image.clone()) {
        (Some(r), true, Some(image)) => {
            let account = build::deployment::service_account(ks);
            ctx.applied
                .apply(&ctx.client, CONTROLLER, &account)
                .await
                .map_err(apply_err(DEPLOYMENT_READY, describe(&account)))?;
            let mut pod_inputs = PodInputs {
                image: image.clone(),
                config_map: names::config_map_versioned(&name, &r.hash),
                config_secret: names::config_secret_versioned(&name, &r.hash),
                config_hash: r.hash.clone(),
            };
            // A new configuration may carry a new database password: pods move to it only once the db
            // controller reports the database has the password of the Secret version it was rendered from.
            let running = inputs
                .deployment
                .as_ref()
                .and_then(build::deployment::current_inputs);
            if let Some(running) = running.filter(|c| c.config_hash != r.hash) {
                let rendered_from = inputs.password_secret.as_ref().and_then(|s| s.resource_version());
                let applied = ks
                    .status
                    .as_ref()
                    .and_then(|s| s.database.as_ref())
                    .and_then(|d| d.password_secret_version.clone());
                if rendered_from != applied {
                    pod_inputs = PodInputs {
                        image: image.clone(),
                        ..running
                    };
                    gate.waiting.get_or_insert((
                        gate::reasons::WAITING_FOR_DATABASE_PASSWORD,
                        format!(
                            "the new configuration waits until the database has the password of Secret {} \
                             (DatabaseReady)",
                            ks.spec.secret
                        ),
                    ));
                }
            }
            let wanted = build::deployment::deployment(ks, &pod_inputs);
            let applied = ctx
                .applied
                .apply(&ctx.client, CONTROLLER, &wanted)
                .await
                .map_err(apply_err(DEPLOYMENT_READY, describe(&wanted)))?;
            // Skipped (unchanged since our last apply): the Deployment read at the start is current.
            if let Some(applied) = applied {
                deployment = Some(applied);
            }
            deployed_image = Some(image);
            let pdbs: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
            let pdb = format!("PodDisruptionBudget {}", names::deployment(&name));
            if ks.spec.replicas > 1 {
                ctx.applied
                    .apply(
                        &ctx.client,
                        CONTROLLER,
                        &build::deployment::pod_disruption_budget(ks),
                    )
                    .await
                    .map_err(apply_err(DEPLOYMENT_READY, pdb))?;
            } else if pdbs
                .get_opt(&names::deployment(&name))
                .await
                .map_err(FailedCall::under(&name, DEPLOYMENT_READY, "reading", pdb.clone()))?
                .is_some()
            {
                pdbs.delete(&names::deployment(&name), &DeleteParams::default())
                    .await
                    .map_err(FailedCall::under(&name, DEPLOYMENT_READY, "deleting", pdb))?;
                ctx.applied
                    .forget::<PodDisruptionBudget>(&ns, &names::deployment(&name));
            }
        }
        (None, _, _) if gate.waiting.is_none() => {
            gate.waiting = Some((
                "WaitingForConfig",
                "waiting for a valid configuration (see ConfigReady)".into(),
            ));
        }
        _ => {}
    }
    let mut held_for_pods = false;
    if let Some(r) = &rendered {
        keep.push(names::config_map_versioned(&name, &r.hash));
        keep.push(names::config_secret_versioned(&name, &r.hash));
        held_for_pods = apply::collect_old_config(&ctx.client, &ctx.applied, ks, &keep).await?;
    }

    // 4. Status.
    let deployment_condition = status::deployment_condition(
        ks,
        &gate,
        deployment.as_ref(),
        rendered.as_ref().map(|r| r.hash.as_str()),
        &inputs.pods,
        k8s_openapi::jiff::Timestamp::now(),
    );
    let (network_condition, networks) = status::network_condition(ks, &inputs.missing_networks, &inputs.pods);
    let report = status::Report {
        conditions: vec![
            config_condition,
            service_condition,
            deployment_condition.clone(),
            network_condition,
        ],
        api: ApiStatus {
            config_map: rendered
                .as_ref()
                .map(|r| names::config_map_versioned(&name, &r.hash)),
            config_secret: rendered
                .as_ref()
                .map(|r| names::config_secret_versioned(&name, &r.hash)),
            config_hash: rendered.as_ref().map(|r| r.hash.clone()),
            deployed_image,
        },
        endpoints,
        // The same source as DeploymentReady, so the two never disagree.
        ready_count: deployment
            .as_ref()
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        networks,
    };
    let api: Api<KeystoneAPI> = Api::namespaced(ctx.client.clone(), &ns);
    status::write(&api, ks, report).await?;

    // Pods and the Deployment wake us through watches; waiting on the other controllers too (their status
    // writes are KeystoneAPI changes). The requeue is only a safety net.
    let wait = if !deployment_condition.status {
        Duration::from_secs(30)
    } else if held_for_pods {
        // Old config kept for a pod that is still running: collect it soon after it finishes.
        Duration::from_secs(60)
    } else {
        Duration::from_secs(300)
    };
    Ok(Action::requeue(wait))
}

/// Decides what to do after a failed reconcile.
pub fn error_policy(obj: Arc<DeserializeGuard<KeystoneAPI>>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.record_failure(error.category());
    match error {
        Error::InvalidObject { .. } => Action::await_change(),
        Error::Kube(_) | Error::HmacKey { .. } | Error::Render { .. } => {
            let retry_in = ctx
                .backoff
                .next(&operator_common::backoff::guard_key(obj.as_ref()));
            tracing::warn!(%error, ?retry_in, "reconcile failed");
            Action::requeue(retry_in)
        }
    }
}
