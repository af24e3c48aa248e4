//! Pure: what each step depends on, as a hash. A step re-runs exactly when its hash changes: database creation
//! on the database settings or either password, db-sync on the image or the database settings, bootstrap on the
//! image, the admin identity, the region, the endpoints or the admin password. Passwords enter a hash only as
//! an HMAC under the per-instance random key of `operator_common::hmac` (a plain hash of a password, on a Job
//! or in status, could be brute-forced).

use sha2::{Digest, Sha256};

use keystone_types::KeystoneAPI;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 over the parts, NUL-separated, first 16 hex digits.
pub fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize()[..8])
}

/// A `credential_migrate` run: the key set, the image, and for the run after a rotation the time it may start
/// at (so that an earlier run with the same keys is never taken for it).
pub fn credential_migrate(ks: &KeystoneAPI, keys_hash: &str, not_before: Option<i64>) -> String {
    let not_before = not_before.map(|t| t.to_string()).unwrap_or_default();
    hash(&[
        "credential-migrate",
        keys_hash,
        &not_before,
        &ks.spec.container_image,
    ])
}

/// Database creation (or, with `create: false`, the connection check).
pub fn db_create(ks: &KeystoneAPI, db_password_mac: &str, root_password_mac: &str) -> String {
    let d = &ks.spec.database;
    let create = d.create.to_string();
    let port = d.port.to_string();
    hash(&[
        "db-create",
        &d.host,
        &port,
        &d.name,
        &d.user,
        &create,
        db_password_mac,
        root_password_mac,
    ])
}

/// db-sync.
pub fn db_sync(ks: &KeystoneAPI) -> String {
    let d = &ks.spec.database;
    let port = d.port.to_string();
    hash(&[
        "db-sync",
        &ks.spec.container_image,
        &d.host,
        &port,
        &d.name,
        &d.user,
    ])
}

/// Bootstrap.
pub fn bootstrap(ks: &KeystoneAPI, public: &str, internal: &str, admin_password_mac: &str) -> String {
    let s = &ks.spec;
    hash(&[
        "bootstrap",
        &s.container_image,
        &s.admin_user,
        &s.admin_project,
        &s.region,
        public,
        internal,
        admin_password_mac,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ks(spec: serde_json::Value) -> KeystoneAPI {
        let mut full = serde_json::json!({
            "containerImage": "img:1", "adminUser": "admin", "adminProject": "admin", "region": "regionOne",
            "replicas": 1,
            "database": {"host": "openstack", "port": 3306, "name": "keystone", "user": "keystone", "create": true},
        });
        for (k, v) in spec.as_object().cloned().unwrap_or_default() {
            full[k] = v;
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI",
            "metadata": {"name": "k"}, "spec": full
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn steps_rerun_exactly_on_their_inputs() {
        let base = ks(serde_json::json!({}));
        let replicas = ks(serde_json::json!({"replicas": 3}));
        let image = ks(serde_json::json!({"containerImage": "img:2"}));
        let region = ks(serde_json::json!({"region": "two"}));
        assert_eq!(
            db_sync(&base),
            db_sync(&replicas),
            "a replica change must not re-run db-sync"
        );
        assert_ne!(db_sync(&base), db_sync(&image));
        assert_eq!(db_sync(&base), db_sync(&region));
        assert_eq!(
            bootstrap(&base, "p", "i", "m"),
            bootstrap(&replicas, "p", "i", "m")
        );
        assert_ne!(bootstrap(&base, "p", "i", "m"), bootstrap(&region, "p", "i", "m"));
        assert_ne!(bootstrap(&base, "p", "i", "m"), bootstrap(&base, "p2", "i", "m"));
        assert_ne!(bootstrap(&base, "p", "i", "m"), bootstrap(&base, "p", "i", "m2"));
        assert_eq!(db_create(&base, "a", "b"), db_create(&image, "a", "b"));
        assert_ne!(db_create(&base, "a", "b"), db_create(&base, "a2", "b"));
    }
}
