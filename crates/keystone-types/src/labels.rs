//! Labels on every child object. `managed-by` names the controller that applied the object; a controller
//! cleans up only objects carrying its own value, never another controller's children.

use std::collections::BTreeMap;

pub use crate::conditions::Controller;

/// `app.kubernetes.io/name`
pub const NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`
pub const INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by`
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of `app.kubernetes.io/name` on every child.
pub const APP_NAME: &str = "keystone";

/// Component label values.
pub mod component {
    /// API Deployment, its pods, Services, PDB.
    pub const API: &str = "api";
    /// Rendered configuration.
    pub const CONFIG: &str = "config";
    /// Fernet token keys.
    pub const FERNET_KEYS: &str = "fernet-keys";
    /// Credential keys.
    pub const CREDENTIAL_KEYS: &str = "credential-keys";
    /// Database creation Job.
    pub const DB_CREATE: &str = "db-create";
    /// db-sync Job.
    pub const DB_SYNC: &str = "db-sync";
    /// Bootstrap Job.
    pub const BOOTSTRAP: &str = "bootstrap";
    /// Trust-flush CronJob.
    pub const TRUST_FLUSH: &str = "trust-flush";
    /// credential_migrate Jobs of a credential key rotation.
    pub const CREDENTIAL_MIGRATE: &str = "credential-migrate";
    /// A controller's per-instance HMAC key Secret.
    pub const HMAC_KEY: &str = "hmac-key";
}

/// The full label set of a child object.
pub fn child_labels(instance: &str, component: &str, controller: Controller) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_owned(), APP_NAME.to_owned()),
        (INSTANCE.to_owned(), instance.to_owned()),
        (COMPONENT.to_owned(), component.to_owned()),
        (MANAGED_BY.to_owned(), controller.field_manager().to_owned()),
    ])
}

/// The labels that select a component's pods (stable across controller versions: no `managed-by`).
pub fn selector_labels(instance: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_owned(), APP_NAME.to_owned()),
        (INSTANCE.to_owned(), instance.to_owned()),
        (COMPONENT.to_owned(), component.to_owned()),
    ])
}

/// Label selector string for everything a controller manages for one instance.
pub fn managed_selector(instance: &str, controller: Controller) -> String {
    format!(
        "{NAME}={APP_NAME},{INSTANCE}={instance},{MANAGED_BY}={}",
        controller.field_manager()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_is_a_subset_of_child_labels() {
        let child = child_labels("keystone", component::API, Controller::Api);
        for (k, v) in selector_labels("keystone", component::API) {
            assert_eq!(child.get(&k), Some(&v));
        }
        assert_eq!(child[MANAGED_BY], "keystone-api-controller");
        assert_eq!(
            managed_selector("ks", Controller::Db),
            "app.kubernetes.io/name=keystone,app.kubernetes.io/instance=ks,app.kubernetes.io/managed-by=keystone-db-controller"
        );
    }
}
