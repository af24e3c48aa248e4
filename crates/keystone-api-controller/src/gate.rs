//! Pure: whether the Deployment may be created, and with which image. Config and Services never wait; only
//! the Deployment does: it is created once the keys, db-sync and bootstrap are done for this generation, and it
//! rolls to a new image only after db-sync ran for that image. A closed gate never scales down or deletes a
//! serving Deployment: it keeps its current image.

use k8s_openapi::api::apps::v1::Deployment;

use keystone_types::KeystoneAPI;
use keystone_types::conditions::{BOOTSTRAP_READY, DB_SYNC_READY, FERNET_KEYS_READY};

/// Reasons of a waiting `DeploymentReady`.
pub mod reasons {
    /// Waiting for `FernetKeysReady`.
    pub const WAITING_FOR_FERNET_KEYS: &str = "WaitingForFernetKeys";
    /// Waiting for `DBSyncReady` (or for db-sync of a new image).
    pub const WAITING_FOR_DB_SYNC: &str = "WaitingForDBSync";
    /// Waiting for the db controller to apply a changed database password.
    pub const WAITING_FOR_DATABASE_PASSWORD: &str = "WaitingForDatabasePassword";
    /// Waiting for `BootstrapReady`.
    pub const WAITING_FOR_BOOTSTRAP: &str = "WaitingForBootstrap";
    /// Pods are rolling out or not all ready.
    pub const ROLLING_OUT: &str = "RollingOut";
    /// All replicas ready with the current config and image.
    pub const AVAILABLE: &str = "Available";
    /// Not all ready, and some pod cannot start (image pull, crash loop, config error, unschedulable, or still
    /// creating its containers after several minutes): the message names the pod and the kubelet's reason.
    pub const PODS_NOT_STARTING: &str = keystone_types::pod_status::PODS_NOT_STARTING;
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// Apply the Deployment at all (false only while it does not exist and a gate is closed).
    pub apply: bool,
    /// Image to run.
    pub image: Option<String>,
    /// Why the Deployment is not (fully) where the spec wants it: (reason, message).
    pub waiting: Option<(&'static str, String)>,
}

fn true_now(ks: &KeystoneAPI, type_: &str) -> Result<(), String> {
    let c = ks
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_));
    match c {
        Some(c) if c.status == "True" && c.observed_generation == ks.metadata.generation => Ok(()),
        Some(c) if c.status == "True" => Err(format!(
            "{type_} is not yet confirmed for generation {:?}",
            ks.metadata.generation
        )),
        Some(c) => Err(format!("{type_} is {}: {}", c.status, c.message)),
        None => Err(format!("{type_} is not reported yet")),
    }
}

/// Decides for `ks`, given the current Deployment.
pub fn decide(ks: &KeystoneAPI, current: Option<&Deployment>) -> Gate {
    let wanted = &ks.spec.container_image;
    let closed = [
        (FERNET_KEYS_READY, reasons::WAITING_FOR_FERNET_KEYS),
        (DB_SYNC_READY, reasons::WAITING_FOR_DB_SYNC),
        (BOOTSTRAP_READY, reasons::WAITING_FOR_BOOTSTRAP),
    ]
    .into_iter()
    .find_map(|(t, reason)| {
        true_now(ks, t)
            .err()
            .map(|why| (reason, format!("waiting: {why}")))
    });
    let synced = ks
        .status
        .as_ref()
        .and_then(|s| s.database.as_ref())
        .and_then(|d| d.synced_image.as_deref());
    let current_image = current
        .and_then(|d| d.spec.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone());
    match current_image {
        None => match closed {
            Some(w) => Gate {
                apply: false,
                image: None,
                waiting: Some(w),
            },
            None if synced != Some(wanted.as_str()) => Gate {
                apply: false,
                image: None,
                waiting: Some((
                    reasons::WAITING_FOR_DB_SYNC,
                    format!("waiting: db-sync has not run for image {wanted}"),
                )),
            },
            None => Gate {
                apply: true,
                image: Some(wanted.clone()),
                waiting: None,
            },
        },
        Some(running) => {
            if running != *wanted && synced != Some(wanted.as_str()) {
                Gate {
                    apply: true,
                    image: Some(running.clone()),
                    waiting: Some((
                        reasons::WAITING_FOR_DB_SYNC,
                        format!("image {wanted} waits for its db-sync; pods keep running {running}"),
                    )),
                }
            } else {
                Gate {
                    apply: true,
                    image: Some(wanted.clone()),
                    waiting: closed,
                }
            }
        }
    }
}
