//! The condition contract between the three controllers: one canonical table. Each controller writes only
//! the conditions it owns, by server-side apply under its own field manager, and bumps `observedGeneration`
//! on each of them for every new generation even when nothing else changed.

use std::fmt;

/// The three controllers; each is a separate binary with its own field manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Controller {
    /// `keystone-api-controller`: config, Services, Deployment.
    Api,
    /// `keystone-fernet-controller`: fernet and credential keys.
    Fernet,
    /// `keystone-db-controller`: database, db-sync, bootstrap, trust-flush.
    Db,
}

impl Controller {
    /// All controllers.
    pub const ALL: [Controller; 3] = [Controller::Api, Controller::Fernet, Controller::Db];

    /// Binary name, field manager, Event reporter and `app.kubernetes.io/managed-by` value.
    pub fn field_manager(self) -> &'static str {
        match self {
            Controller::Api => "keystone-api-controller",
            Controller::Fernet => "keystone-fernet-controller",
            Controller::Db => "keystone-db-controller",
        }
    }

    /// Short name used in metric names (`keystone_<short>_...`), Lease names and the status section.
    pub fn short_name(self) -> &'static str {
        match self {
            Controller::Api => "api",
            Controller::Fernet => "fernet",
            Controller::Db => "db",
        }
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field_manager())
    }
}

/// `ConfigReady`: config for this generation rendered and applied; its name/hash in `status.api`.
pub const CONFIG_READY: &str = "ConfigReady";
/// `ServiceReady`: Services (and Route/Ingress when used) exist; `apiEndpoints` published.
pub const SERVICE_READY: &str = "ServiceReady";
/// `DeploymentReady`: Deployment rolled out with current config and image; all replicas ready.
pub const DEPLOYMENT_READY: &str = "DeploymentReady";
/// `NetworkAttachmentsReady`: every requested NAD exists and every ready pod has an IP on it.
pub const NETWORK_ATTACHMENTS_READY: &str = "NetworkAttachmentsReady";
/// `Ready`: every condition of the contract is True for the current generation.
pub const READY: &str = "Ready";
/// `FernetKeysReady`: a valid token key set exists.
pub const FERNET_KEYS_READY: &str = "FernetKeysReady";
/// `CredentialKeysReady`: a valid credential key set exists.
pub const CREDENTIAL_KEYS_READY: &str = "CredentialKeysReady";
/// `DatabaseReady`: database and user exist with the current password.
pub const DATABASE_READY: &str = "DatabaseReady";
/// `DBSyncReady`: `db_sync` succeeded for the current image and database settings.
pub const DB_SYNC_READY: &str = "DBSyncReady";
/// `BootstrapReady`: bootstrap succeeded for the current inputs.
pub const BOOTSTRAP_READY: &str = "BootstrapReady";
/// `TrustFlushReady`: the trust-flush CronJob matches the spec.
pub const TRUST_FLUSH_READY: &str = "TrustFlushReady";

/// Informational (not part of `Ready`), owned by the fernet controller: True when the rotation settings are
/// safe as written; False when the controller had to rotate less often than `fernet.rotationInterval` (below
/// its `--min-rotation-interval` floor, or too short for `fernet.maxActiveKeys`).
pub const ROTATION_POLICY_SAFE: &str = "RotationPolicySafe";

/// Informational (not part of `Ready`: Keystone serves meanwhile), owned by the db controller: False while a
/// credential key rotation needs a `credential_migrate` that is running, waiting or has failed (the rotation
/// stops where it is until one succeeds); True otherwise.
pub const CREDENTIAL_MIGRATION_READY: &str = "CredentialMigrationReady";

/// One row of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConditionRow {
    /// The condition type.
    pub type_: &'static str,
    /// The only controller allowed to write it.
    pub owner: Controller,
    /// What `True` means.
    pub meaning: &'static str,
}

/// The canonical table. `Ready` is the summary of every other row.
pub const CONTRACT: &[ConditionRow] = &[
    ConditionRow {
        type_: CONFIG_READY,
        owner: Controller::Api,
        meaning: "config for this generation rendered and applied; its name/hash in `status.api`",
    },
    ConditionRow {
        type_: SERVICE_READY,
        owner: Controller::Api,
        meaning: "Services (and Route/Ingress when used) exist; `apiEndpoints` published",
    },
    ConditionRow {
        type_: DEPLOYMENT_READY,
        owner: Controller::Api,
        meaning: "Deployment rolled out with current config and image; all replicas ready (True at 0 replicas once \
                  scaled down)",
    },
    ConditionRow {
        type_: NETWORK_ATTACHMENTS_READY,
        owner: Controller::Api,
        meaning: "every requested NAD exists and every ready pod has an IP on it (True when none requested)",
    },
    ConditionRow {
        type_: READY,
        owner: Controller::Api,
        meaning: "every condition in this table is True with `observedGeneration == metadata.generation`",
    },
    ConditionRow {
        type_: FERNET_KEYS_READY,
        owner: Controller::Fernet,
        meaning: "a valid token key set exists",
    },
    ConditionRow {
        type_: CREDENTIAL_KEYS_READY,
        owner: Controller::Fernet,
        meaning: "a valid credential key set exists",
    },
    ConditionRow {
        type_: DATABASE_READY,
        owner: Controller::Db,
        meaning: "database and user exist with the current password (or, with `create: false`, the database \
                  accepted a connection)",
    },
    ConditionRow {
        type_: DB_SYNC_READY,
        owner: Controller::Db,
        meaning: "`db_sync` succeeded for the current image and database settings (`status.database.syncedImage`)",
    },
    ConditionRow {
        type_: BOOTSTRAP_READY,
        owner: Controller::Db,
        meaning: "bootstrap succeeded for the current inputs",
    },
    ConditionRow {
        type_: TRUST_FLUSH_READY,
        owner: Controller::Db,
        meaning: "the trust-flush CronJob matches the spec",
    },
];

/// The conditions a controller owns, in table order.
pub fn owned_by(controller: Controller) -> impl Iterator<Item = &'static str> {
    CONTRACT
        .iter()
        .filter(move |row| row.owner == controller)
        .map(|row| row.type_)
}

/// The owner of a condition type of the contract; `None` for informational conditions outside it.
pub fn owner_of(type_: &str) -> Option<Controller> {
    CONTRACT
        .iter()
        .find(|row| row.type_ == type_)
        .map(|row| row.owner)
}

/// The controller that writes a condition type: the contract's owner, or for the informational conditions
/// outside the contract, the controller documented above; `None` for types no controller writes.
pub fn writer_of(type_: &str) -> Option<Controller> {
    match type_ {
        ROTATION_POLICY_SAFE => Some(Controller::Fernet),
        CREDENTIAL_MIGRATION_READY => Some(Controller::Db),
        other => owner_of(other),
    }
}

/// Every condition type `controller` writes: its rows of the contract and the informational ones.
pub fn written_by(controller: Controller) -> impl Iterator<Item = &'static str> {
    CONTRACT
        .iter()
        .map(|row| row.type_)
        .chain([ROTATION_POLICY_SAFE, CREDENTIAL_MIGRATION_READY])
        .filter(move |t| writer_of(t) == Some(controller))
}

/// The conditions that `Ready` summarises: every row but `Ready` itself.
pub fn ready_inputs() -> impl Iterator<Item = &'static str> {
    CONTRACT.iter().map(|row| row.type_).filter(|t| *t != READY)
}

/// The table as Markdown, as the README shows it (a test keeps the README in step).
pub fn contract_markdown() -> String {
    let mut out = String::from("| Condition | Owner | True means |\n|---|---|---|\n");
    for row in CONTRACT {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            row.type_,
            row.owner.short_name(),
            row.meaning
        ));
    }
    out
}

/// Condition reasons shared by the controllers. PascalCase, stable: they are API.
pub mod reasons {
    /// The controller has not acted on this generation yet.
    pub const PENDING: &str = "Pending";
    /// The step finished for the current generation.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The spec cannot be acted on as written; the message says which field.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Keys exist and are valid.
    pub const KEYS_READY: &str = "KeysReady";
    /// A key Secret holds malformed or incomplete keys; left for a human.
    pub const KEYS_CORRUPTED: &str = "KeysCorrupted";
    /// Credential keys were deleted or corrupted; regeneration needs an explicit acknowledgement.
    pub const KEYS_LOST: &str = "KeysLost";
    /// The database already holds encrypted credentials but the KeystoneAPI has no credential keys: new keys
    /// are made only on an explicit acknowledgement (restoring the Secret is the other way out).
    pub const CREDENTIALS_WITHOUT_KEYS: &str = "CredentialsWithoutKeys";
    /// Waiting for the database step to report whether the database holds encrypted credentials.
    pub const WAITING_FOR_DATABASE: &str = "WaitingForDatabase";
    /// The key Secret exists but the operator did not create it for this KeystoneAPI; used only on request.
    pub const KEYS_NOT_OURS: &str = "KeysNotOurs";
    /// Generating key material failed; nothing was written.
    pub const KEY_GENERATION_FAILED: &str = "KeyGenerationFailed";
    /// The rotation settings are used as written.
    pub const POLICY_AS_WRITTEN: &str = "AsWritten";
    /// The interval was raised to the controller's floor.
    pub const INTERVAL_BELOW_FLOOR: &str = "IntervalBelowFloor";
    /// The interval was raised so that `maxActiveKeys` covers the token lifetime.
    pub const TOO_FEW_KEYS: &str = "TooFewKeys";
    /// The controller's HMAC key Secret was not created by the operator for this KeystoneAPI, or holds no
    /// usable key; it is neither adopted nor replaced (the message says what to do).
    pub const HMAC_KEY_UNUSABLE: &str = "HMACKeyUnusable";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_controller_owns_conditions_and_types_are_unique() {
        for c in Controller::ALL {
            assert!(owned_by(c).count() >= 2, "{c} owns too few conditions");
        }
        let mut types: Vec<_> = CONTRACT.iter().map(|r| r.type_).collect();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), CONTRACT.len());
        assert_eq!(owner_of(READY), Some(Controller::Api));
        assert_eq!(owner_of("RotationPolicyWarning"), None);
        assert_eq!(ready_inputs().count(), CONTRACT.len() - 1);
    }

    #[test]
    fn markdown_has_one_row_per_condition() {
        let md = contract_markdown();
        assert_eq!(md.lines().count(), CONTRACT.len() + 2);
        assert!(md.contains("| `DBSyncReady` | db |"));
    }
}
