//! Names of the objects the controllers create for a KeystoneAPI. Builders take names from here, never from
//! ad-hoc string formatting, so that every controller and test agrees on them. The CRD limits KeystoneAPI
//! names to 40 characters, which keeps every derived name within its Kubernetes limit (52 for CronJobs).

/// ConfigMap with the non-secret configuration (`keystone.conf`, `logging.conf`, `policy.yaml`, ...).
pub fn config_map(instance: &str) -> String {
    format!("{instance}-config")
}

/// Secret with the configuration parts that hold secrets (the `[database]` drop-in, transport URL).
pub fn config_secret(instance: &str) -> String {
    format!("{instance}-config-secret")
}

/// The ConfigMap of one rendered configuration: `<instance>-config-<first 8 hex digits of its hash>`.
/// Config objects are immutable; a changed configuration gets a new name.
pub fn config_map_versioned(instance: &str, hash: &str) -> String {
    format!("{}-{}", config_map(instance), &hash[..hash.len().min(8)])
}

/// The Secret of one rendered configuration: `<instance>-config-secret-<hash8>`.
pub fn config_secret_versioned(instance: &str, hash: &str) -> String {
    format!("{}-{}", config_secret(instance), &hash[..hash.len().min(8)])
}

/// Secret of fernet token keys; data keys are Keystone's file names `0`, `1`, ...
pub fn fernet_keys_secret(instance: &str) -> String {
    format!("{instance}-fernet-keys")
}

/// Secret of credential encryption keys, laid out like the fernet keys.
pub fn credential_keys_secret(instance: &str) -> String {
    format!("{instance}-credential-keys")
}

/// Secret holding `controller`'s per-instance HMAC key (`<instance>-api-hmac-key`, `<instance>-db-hmac-key`):
/// every hash that covers a password is an HMAC under it.
pub fn hmac_key_secret(instance: &str, controller: crate::conditions::Controller) -> String {
    format!("{instance}-{}-hmac-key", controller.short_name())
}

/// Service of one endpoint: `<instance>-internal` or `<instance>-public`.
pub fn service(instance: &str, endpoint: crate::v1beta1::Endpoint) -> String {
    format!("{instance}-{}", endpoint.as_str())
}

/// The API Deployment (and its PodDisruptionBudget).
pub fn deployment(instance: &str) -> String {
    format!("{instance}-api")
}

/// ServiceAccount the Keystone pods run as.
pub fn service_account(instance: &str) -> String {
    format!("{instance}-keystone")
}

/// Job that creates the database and user.
pub fn db_create_job(instance: &str) -> String {
    format!("{instance}-db-create")
}

/// Job that runs `keystone-manage db_sync`.
pub fn db_sync_job(instance: &str) -> String {
    format!("{instance}-db-sync")
}

/// Job that runs `keystone-manage bootstrap`.
pub fn bootstrap_job(instance: &str) -> String {
    format!("{instance}-bootstrap")
}

/// Job that runs `keystone-manage credential_migrate` during a credential key rotation (short: a Job name
/// with its hash and attempt suffix must fit 63 characters).
pub fn credential_migrate_job(instance: &str) -> String {
    format!("{instance}-cred-mig")
}

/// CronJob that runs `keystone-manage trust_flush`.
pub fn trust_flush_cronjob(instance: &str) -> String {
    format!("{instance}-trust-flush")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1beta1::Endpoint;

    #[test]
    fn longest_instance_name_fits_every_limit() {
        let instance = "a".repeat(40);
        assert!(trust_flush_cronjob(&instance).len() <= 52);
        for endpoint in Endpoint::ALL {
            assert!(service(&instance, endpoint).len() <= 63);
        }
        for name in [
            config_map(&instance),
            config_secret(&instance),
            fernet_keys_secret(&instance),
            credential_keys_secret(&instance),
            deployment(&instance),
            db_create_job(&instance),
            db_sync_job(&instance),
            bootstrap_job(&instance),
        ] {
            assert!(name.len() <= 63, "{name} too long for a label value");
        }
        // Jobs get `-<hash8>-<attempt>`; the Job name is a label value on its pods.
        for job in [
            db_create_job(&instance),
            db_sync_job(&instance),
            bootstrap_job(&instance),
            credential_migrate_job(&instance),
        ] {
            assert!(job.len() + "-12345678-99".len() <= 63, "{job}");
        }
    }
}
