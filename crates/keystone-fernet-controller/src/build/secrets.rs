//! The two key Secrets. Their data keys are Keystone's file names, so mounting the whole Secret (no subPath)
//! is the key repository and the kubelet swaps every file at once. The fernet Secret is owned by the
//! KeystoneAPI; the credential Secret is not (it must outlive a deleted KeystoneAPI, like the database whose
//! rows it decrypts) and is adopted by name when a KeystoneAPI of the same name comes back.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use keystone_types::conditions::Controller;
use keystone_types::{KeystoneAPI, labels, names};

use crate::keys::KeySet;

/// Annotation on the fernet Secret: time of the last rotation (RFC 3339), written with the keys.
pub const LAST_ROTATION: &str = "keystone.openstack.org/last-rotation-time";
/// Annotation on the fernet Secret: rotations since creation.
pub const ROTATION_COUNT: &str = "keystone.openstack.org/rotation-count";
/// Annotation on the fernet Secret: when each non-staged key became the primary, `index=RFC 3339` joined by
/// commas (`1=2026-01-01T00:00:00Z,2=…`). A rotation never drops a key before its tokens have expired; these
/// times say when that is.
pub const PROMOTION_TIMES: &str = "keystone.openstack.org/key-promotion-times";
/// Annotation on the fernet Secret: the last manual rotation request value handled.
pub const HANDLED_ROTATE_REQUEST: &str = "keystone.openstack.org/handled-rotate-request";
/// Annotation on the credential Secret: the regeneration acknowledgement that created it, if any.
pub const HANDLED_REGENERATE_ACK: &str = "keystone.openstack.org/handled-regenerate-ack";

/// Annotation on the KeystoneAPI requesting one fernet rotation (any new value).
pub const ROTATE_REQUEST: &str = "keystone.openstack.org/rotate-fernet-keys";
/// Annotation on the KeystoneAPI allowing the operator to take over a `<name>-fernet-keys` Secret it did not
/// create (`"true"`): its keys are kept and the Secret becomes the KeystoneAPI's (owner reference, labels).
pub const ADOPT_FERNET_KEYS: &str = "keystone.openstack.org/adopt-fernet-keys";
/// Annotation on the KeystoneAPI acknowledging that lost credential keys may be regenerated (any new value);
/// credentials stored in Keystone with the old keys are lost for good.
pub const REGENERATE_CREDENTIAL_KEYS: &str = "keystone.openstack.org/regenerate-credential-keys";

/// Annotation on the KeystoneAPI requesting one credential key rotation cycle (any new value).
pub const ROTATE_CREDENTIAL_REQUEST: &str = "keystone.openstack.org/rotate-credential-keys";
/// Annotation on the credential Secret: the cycle's phase (`Idle`, `PreMigrate`, `PostMigrate`).
pub const CREDENTIAL_PHASE: &str = "keystone.openstack.org/credential-rotation-phase";
/// Annotation on the credential Secret: in `PostMigrate`, when the keys were rotated (RFC 3339).
pub const CREDENTIAL_ROTATED_AT: &str = "keystone.openstack.org/credential-rotated-at";
/// Annotation on the credential Secret: in `PostMigrate`, the earliest start of the migration that allows
/// dropping the previous primary (RFC 3339).
pub const CREDENTIAL_MIGRATE_AFTER: &str = "keystone.openstack.org/credential-migrate-after";
/// Annotation on the credential Secret: end of the last completed cycle, or creation (RFC 3339).
pub const CREDENTIAL_LAST_ROTATION: &str = "keystone.openstack.org/credential-last-rotation-time";
/// Annotation on the credential Secret: completed cycles.
pub const CREDENTIAL_ROTATION_COUNT: &str = "keystone.openstack.org/credential-rotation-count";
/// Annotation on the credential Secret: the last manual request handled.
pub const HANDLED_CREDENTIAL_REQUEST: &str = "keystone.openstack.org/handled-rotate-credential-request";

/// Credential rotation bookkeeping stored on the credential Secret, written with the keys.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CredentialRecord {
    /// `Idle`, `PreMigrate` or `PostMigrate`.
    pub phase: String,
    /// RFC 3339, `PostMigrate` only.
    pub rotated_at: Option<String>,
    /// RFC 3339, `PostMigrate` only.
    pub migrate_after: Option<String>,
    /// RFC 3339.
    pub last_rotation: String,
    /// Completed cycles.
    pub count: i64,
    /// Last manual request handled.
    pub handled_request: Option<String>,
}

impl CredentialRecord {
    /// Reads the record from a Secret; a Secret written before credential rotation existed reads as `Idle`,
    /// last rotated when it was created.
    pub fn read(secret: &Secret) -> CredentialRecord {
        let a = secret.annotations();
        let get = |k: &str| a.get(k).cloned();
        CredentialRecord {
            phase: get(CREDENTIAL_PHASE).unwrap_or_else(|| "Idle".into()),
            rotated_at: get(CREDENTIAL_ROTATED_AT),
            migrate_after: get(CREDENTIAL_MIGRATE_AFTER),
            last_rotation: get(CREDENTIAL_LAST_ROTATION)
                .or_else(|| {
                    secret
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                })
                .unwrap_or_default(),
            count: get(CREDENTIAL_ROTATION_COUNT)
                .and_then(|c| c.parse::<i64>().ok())
                .filter(|c| *c >= 0)
                .unwrap_or(0),
            handled_request: get(HANDLED_CREDENTIAL_REQUEST),
        }
    }

    fn annotations(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::from([
            (CREDENTIAL_PHASE.to_owned(), self.phase.clone()),
            (CREDENTIAL_LAST_ROTATION.to_owned(), self.last_rotation.clone()),
            (CREDENTIAL_ROTATION_COUNT.to_owned(), self.count.to_string()),
        ]);
        for (k, v) in [
            (CREDENTIAL_ROTATED_AT, &self.rotated_at),
            (CREDENTIAL_MIGRATE_AFTER, &self.migrate_after),
            (HANDLED_CREDENTIAL_REQUEST, &self.handled_request),
        ] {
            if let Some(v) = v {
                a.insert(k.to_owned(), v.clone());
            }
        }
        a
    }
}

/// Rotation bookkeeping stored on the fernet Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationRecord {
    /// RFC 3339 time of the last rotation (or creation).
    pub last_rotation: String,
    /// Rotations since creation.
    pub count: i64,
    /// Last manual request handled.
    pub handled_request: Option<String>,
    /// Unix time each non-staged key became the primary, where known.
    pub promoted: BTreeMap<u32, i64>,
}

/// The [`PROMOTION_TIMES`] value for `promoted`.
pub fn format_promotions(promoted: &BTreeMap<u32, i64>) -> String {
    promoted
        .iter()
        .filter_map(|(i, t)| Some(format!("{i}={}", Timestamp::from_second(*t).ok()?)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads a [`PROMOTION_TIMES`] value. Entries that do not parse are left out: a key without a known time is
/// treated as promoted as late as it can have been, never earlier.
pub fn parse_promotions(value: &str) -> BTreeMap<u32, i64> {
    value
        .split(',')
        .filter_map(|entry| {
            let (i, t) = entry.trim().split_once('=')?;
            Some((i.parse().ok()?, t.parse::<Timestamp>().ok()?.as_second()))
        })
        .collect()
}

fn data(set: &KeySet) -> BTreeMap<String, ByteString> {
    set.to_data()
        .into_iter()
        .map(|(k, v)| (k, ByteString(v)))
        .collect()
}

/// The fernet token key Secret, owned by the KeystoneAPI.
pub fn fernet_keys_secret(ks: &KeystoneAPI, set: &KeySet, record: &RotationRecord) -> Secret {
    let mut annotations = BTreeMap::from([
        (LAST_ROTATION.to_owned(), record.last_rotation.clone()),
        (ROTATION_COUNT.to_owned(), record.count.to_string()),
        (PROMOTION_TIMES.to_owned(), format_promotions(&record.promoted)),
    ]);
    if let Some(r) = &record.handled_request {
        annotations.insert(HANDLED_ROTATE_REQUEST.to_owned(), r.clone());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(names::fernet_keys_secret(&ks.name_any())),
            namespace: ks.namespace(),
            labels: Some(labels::child_labels(
                &ks.name_any(),
                labels::component::FERNET_KEYS,
                Controller::Fernet,
            )),
            annotations: Some(annotations),
            owner_references: ks.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data(set)),
        ..Default::default()
    }
}

/// The credential key Secret: labelled, never owned.
pub fn credential_keys_secret(
    ks: &KeystoneAPI,
    set: &KeySet,
    regenerate_ack: Option<&str>,
    record: &CredentialRecord,
) -> Secret {
    let mut annotations = record.annotations();
    annotations.extend([(
        "keystone.openstack.org/retention".to_owned(),
        "kept when the KeystoneAPI is deleted: stored credentials cannot be decrypted without these keys"
            .to_owned(),
    )]);
    if let Some(ack) = regenerate_ack {
        annotations.insert(HANDLED_REGENERATE_ACK.to_owned(), ack.to_owned());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(names::credential_keys_secret(&ks.name_any())),
            namespace: ks.namespace(),
            labels: Some(labels::child_labels(
                &ks.name_any(),
                labels::component::CREDENTIAL_KEYS,
                Controller::Fernet,
            )),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data(set)),
        ..Default::default()
    }
}

/// Keeps the identity of an existing Secret (resourceVersion as the write precondition, uid) on a rebuilt one.
pub fn as_replacement(mut new: Secret, existing: &Secret) -> Secret {
    new.metadata.resource_version = existing.resource_version();
    new.metadata.uid = existing.metadata.uid.clone();
    new
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn keystone() -> KeystoneAPI {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI",
            "metadata": { "name": "keystone", "namespace": "openstack", "uid": "0b3b3b3b-0000-4000-8000-000000000001" },
            "spec": {}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn fernet_secret_is_owned_and_credential_secret_is_not() {
        let ks = keystone();
        let set =
            KeySet::initial(&mut rand::rngs::StdRng::seed_from_u64(1)).unwrap_or_else(|e| panic!("{e}"));
        let record = RotationRecord {
            last_rotation: "2026-01-01T00:00:00Z".into(),
            count: 0,
            handled_request: None,
            promoted: BTreeMap::from([(1, 1_767_225_600)]),
        };
        let f = fernet_keys_secret(&ks, &set, &record);
        assert_eq!(f.metadata.name.as_deref(), Some("keystone-fernet-keys"));
        assert_eq!(f.metadata.owner_references.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            f.data.as_ref().map(|d| d.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["0".into(), "1".into()])
        );
        assert_eq!(
            f.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ROTATION_COUNT))
                .map(String::as_str),
            Some("0")
        );
        assert_eq!(
            f.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(PROMOTION_TIMES))
                .map(String::as_str),
            Some("1=2026-01-01T00:00:00Z")
        );
        let c = credential_keys_secret(&ks, &set, None, &CredentialRecord::default());
        assert_eq!(c.metadata.name.as_deref(), Some("keystone-credential-keys"));
        assert!(c.metadata.owner_references.is_none());
        assert_eq!(
            c.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::MANAGED_BY))
                .map(String::as_str),
            Some("keystone-fernet-controller")
        );
    }

    #[test]
    fn promotion_times_round_trip_and_bad_entries_are_unknown() {
        let promoted = BTreeMap::from([(3, 1_767_225_600), (4, 1_767_229_200)]);
        assert_eq!(parse_promotions(&format_promotions(&promoted)), promoted);
        assert_eq!(
            parse_promotions(
                "3=2026-01-01T00:00:00Z, x=2026-01-01T00:00:00Z,4=yesterday,5,6=2026-01-01T01:00:00Z"
            ),
            BTreeMap::from([(3, 1_767_225_600), (6, 1_767_229_200)])
        );
        assert!(parse_promotions("").is_empty());
    }
}
