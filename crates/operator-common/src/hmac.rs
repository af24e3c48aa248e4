//! Hashes that cover secret material are HMACs under a per-instance random key.
//!
//! A plain hash of something that holds a password (the configuration Secret's `my.cnf`, a password in a step's
//! inputs) lets anyone who can read the hash — in status, an annotation or an object name — test password
//! guesses offline. Under a 256-bit key that only the controller and Secret readers hold, the hash tells that
//! the inputs changed and nothing else.
//!
//! Each controller keeps its key in its own Secret (`keystone_types::names::hmac_key_secret`), created once,
//! owned by the KeystoneAPI. A Secret of that name that this operator did not create for this KeystoneAPI (no
//! controller owner reference to it) is never adopted, and a key that is too short is never replaced: both are
//! reported, because the key decides which steps re-run and must not change behind anyone's back.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::Sha256;

use keystone_types::KeystoneAPI;
use keystone_types::labels::{self, Controller};

/// Bytes of a key: 256 bits.
pub const KEY_LEN: usize = 32;
/// The Secret's data key holding the key.
pub const DATA_KEY: &str = "key";

/// A per-instance HMAC key (never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    /// A key from its bytes; `None` when shorter than [`KEY_LEN`].
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Key> {
        (bytes.len() >= KEY_LEN).then_some(Key(bytes))
    }

    /// HMAC-SHA256 of `data`, lowercase hex of the whole 32-byte tag.
    pub fn hex(&self, data: &[u8]) -> String {
        self.tag(|mac| mac.update(data))
    }

    /// HMAC-SHA256 over `parts`, each followed by a NUL byte (so that `["ab", "c"]` and `["a", "bc"]` differ),
    /// lowercase hex of the whole 32-byte tag.
    pub fn hex_parts<'a>(&self, parts: impl IntoIterator<Item = &'a [u8]>) -> String {
        self.tag(|mac| {
            for p in parts {
                mac.update(p);
                mac.update(&[0]);
            }
        })
    }

    fn tag(&self, feed: impl FnOnce(&mut Hmac<Sha256>)) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            // HMAC takes keys of any length; unreachable.
            Err(_) => return String::new(),
        };
        feed(&mut mac);
        mac.finalize()
            .into_bytes()
            .iter()
            .fold(String::with_capacity(64), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }
}

/// Why a controller has no usable key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or creating the Secret failed.
    #[error("Secret {secret}: {source}")]
    Kube {
        /// The key Secret's name.
        secret: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The operating system's random number generator failed.
    #[error("cannot generate the key for Secret {secret}: {message}")]
    Rng {
        /// The key Secret's name.
        secret: String,
        /// The generator's message.
        message: String,
    },
    /// A Secret of the key's name exists that the operator did not create for this KeystoneAPI.
    #[error(
        "Secret {secret} exists but was not created by the operator for this KeystoneAPI (no controller owner \
         reference to it); it is not adopted: delete it (or rename it) and the operator creates its own key"
    )]
    NotOurs {
        /// The key Secret's name.
        secret: String,
    },
    /// The operator's own key Secret holds no usable key (edited by hand?); it is not silently replaced.
    #[error(
        "Secret {secret} holds no key of at least {KEY_LEN} bytes under {DATA_KEY:?}; it is not replaced \
         silently: delete the Secret and the operator creates a new key (every step guarded by it runs once more)"
    )]
    Corrupt {
        /// The key Secret's name.
        secret: String,
    },
}

impl KeyError {
    /// Whether the user must act (a condition, no quick retry) rather than a transient failure.
    pub fn needs_user(&self) -> bool {
        matches!(self, KeyError::NotOurs { .. } | KeyError::Corrupt { .. })
    }
}

/// Whether `secret` is the key Secret this operator created for `ks`: a controller owner reference to its uid.
fn is_ours(secret: &Secret, ks: &KeystoneAPI) -> bool {
    let uid = ks.metadata.uid.as_deref();
    uid.is_some()
        && secret
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
}

/// The key in an existing Secret: ours and well-formed, or why not.
pub fn key_of(secret: &Secret, ks: &KeystoneAPI) -> Result<Key, KeyError> {
    let name = secret.name_any();
    if !is_ours(secret, ks) {
        return Err(KeyError::NotOurs { secret: name });
    }
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(DATA_KEY))
        .and_then(|k| Key::from_bytes(k.0.clone()))
        .ok_or(KeyError::Corrupt { secret: name })
}

/// The key Secret `secret_name` for `ks`, as this operator creates it (labels, controller owner reference).
pub fn key_secret(ks: &KeystoneAPI, secret_name: &str, controller: Controller, key: &Key) -> Secret {
    let name = ks.name_any();
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.to_owned()),
            namespace: ks.namespace(),
            labels: Some(labels::child_labels(
                &name,
                labels::component::HMAC_KEY,
                controller,
            )),
            owner_references: ks.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        data: Some([(DATA_KEY.to_owned(), ByteString(key.0.clone()))].into()),
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    }
}

/// This controller's key for `ks`: read from its Secret, or generated and stored on first use. Never adopts a
/// Secret it did not create and never replaces a key.
pub async fn ensure(
    client: &Client,
    ks: &KeystoneAPI,
    secret_name: &str,
    controller: Controller,
) -> Result<Key, KeyError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ks.namespace().unwrap_or_default());
    let kube_err = |source| KeyError::Kube {
        secret: secret_name.to_owned(),
        source,
    };
    if let Some(s) = secrets.get_opt(secret_name).await.map_err(kube_err)? {
        return key_of(&s, ks);
    }
    let mut bytes = vec![0u8; KEY_LEN];
    OsRng.try_fill_bytes(&mut bytes).map_err(|e| KeyError::Rng {
        secret: secret_name.to_owned(),
        message: e.to_string(),
    })?;
    let key = Key(bytes);
    match secrets
        .create(
            &PostParams::default(),
            &key_secret(ks, secret_name, controller, &key),
        )
        .await
    {
        Ok(_) => Ok(key),
        // Another run (or someone else) created it first: judge that one like any existing Secret.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            key_of(&secrets.get(secret_name).await.map_err(kube_err)?, ks)
        }
        Err(e) => Err(kube_err(e)),
    }
}

impl KeyError {
    /// The failed API call behind this error, reported under `condition` of KeystoneAPI `name`; `Err(self)`
    /// when it is not one (the random number generator, or a failure the user must act on).
    pub fn into_failed_call(
        self,
        name: &str,
        condition: &'static str,
    ) -> Result<crate::backoff::FailedCall, KeyError> {
        match self {
            KeyError::Kube { secret, source } => Ok(crate::backoff::FailedCall::under(
                name,
                condition,
                "reading or creating",
                format!("Secret {secret}"),
            )(source)),
            other => Err(other),
        }
    }
}

/// [`ensure`], with the failures a user must act on (a foreign or broken key Secret) separated as their
/// message, for a condition: `Ok(Ok(key))`, `Ok(Err(message))`, or `Err` for a transient failure to retry.
pub async fn ensure_or_refusal(
    client: &Client,
    ks: &KeystoneAPI,
    secret_name: &str,
    controller: Controller,
) -> Result<Result<Key, String>, KeyError> {
    match ensure(client, ks, secret_name, controller).await {
        Ok(key) => Ok(Ok(key)),
        Err(e) if e.needs_user() => Ok(Err(e.to_string())),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ks(uid: &str) -> KeystoneAPI {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI",
            "metadata": {"name": "k", "namespace": "ns", "uid": uid},
            "spec": {"containerImage": "img", "secret": "osp-secret",
                     "database": {"host": "db"}}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn key(b: u8) -> Key {
        Key(vec![b; KEY_LEN])
    }

    #[test]
    fn the_tag_depends_on_key_and_every_part_and_reveals_neither() {
        let parts = |p: &[&'static str]| p.iter().map(|s| s.as_bytes()).collect::<Vec<_>>();
        let a = key(1).hex_parts(parts(&["my.cnf", "password=s3cret"]));
        assert_eq!(a.len(), 64);
        assert_ne!(a, key(2).hex_parts(parts(&["my.cnf", "password=s3cret"])));
        assert_ne!(a, key(1).hex_parts(parts(&["my.cnf", "password=s3cret2"])));
        // Part boundaries count.
        assert_ne!(
            key(1).hex_parts(parts(&["ab", "c"])),
            key(1).hex_parts(parts(&["a", "bc"]))
        );
        assert!(!a.contains("s3cret"));
        assert_eq!(a, key(1).hex_parts(parts(&["my.cnf", "password=s3cret"])));
    }

    #[test]
    fn hex_is_plain_hmac_sha256() {
        // RFC 4231 test case 2 (a short key is fine for the primitive; Key itself requires 32 bytes).
        let k = Key(b"Jefe".to_vec());
        assert_eq!(
            k.hex(b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn short_keys_are_refused_and_keys_never_print() {
        assert!(Key::from_bytes(vec![7; KEY_LEN - 1]).is_none());
        assert!(Key::from_bytes(Vec::new()).is_none());
        assert!(Key::from_bytes(vec![7; KEY_LEN]).is_some());
        assert_eq!(format!("{:?}", key(0x41)), "Key(<redacted>)");
    }

    #[test]
    fn only_our_own_well_formed_secret_is_used() {
        let owner = ks("uid-1");
        let ours = key_secret(&owner, "k-api-hmac-key", Controller::Api, &key(3));
        assert_eq!(key_of(&ours, &owner).ok(), Some(key(3)));

        // Created for an earlier KeystoneAPI of the same name (another uid): not adopted.
        let other = ks("uid-2");
        assert!(matches!(key_of(&ours, &other), Err(KeyError::NotOurs { .. })));

        // Planted by someone else (no owner reference), with a key they know.
        let mut planted = ours.clone();
        planted.metadata.owner_references = None;
        let err = key_of(&planted, &owner).unwrap_err();
        assert!(matches!(err, KeyError::NotOurs { .. }) && err.needs_user());
        assert!(err.to_string().contains("k-api-hmac-key"), "{err}");

        // An owner reference that is not the controller reference does not make it ours.
        let mut weak = ours.clone();
        if let Some(o) = weak.metadata.owner_references.as_mut() {
            o[0].controller = None;
        }
        assert!(matches!(key_of(&weak, &owner), Err(KeyError::NotOurs { .. })));

        // Ours but truncated or emptied: reported, never replaced.
        for data in [Some(vec![1u8; KEY_LEN - 1]), Some(Vec::new()), None] {
            let mut broken = ours.clone();
            broken.data = data.map(|d| [(DATA_KEY.to_owned(), ByteString(d))].into());
            let err = key_of(&broken, &owner).unwrap_err();
            assert!(
                matches!(err, KeyError::Corrupt { .. }) && err.needs_user(),
                "{err}"
            );
        }
    }
}
