//! Every API read of a reconcile. Reads go to the API server, not to a cache: whether a key Secret exists, and
//! what the status last recorded about it, decide between "create", "recreate with a warning" and "refuse to
//! regenerate", so a stale cache must never answer.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use keystone_types::conditions::{CREDENTIAL_KEYS_READY, FERNET_KEYS_READY};
use keystone_types::{KeystoneAPI, names};
use operator_common::backoff::FailedCall;

use crate::Error;

/// What a reconcile works from.
#[derive(Debug)]
pub struct Inputs {
    /// The KeystoneAPI as the API server has it now (None: deleted meanwhile).
    pub keystone: Option<KeystoneAPI>,
    /// The fernet key Secret, if it exists.
    pub fernet_secret: Option<Secret>,
    /// The credential key Secret, if it exists.
    pub credential_secret: Option<Secret>,
}

/// Reads the KeystoneAPI and its two key Secrets.
pub async fn inputs(client: &Client, namespace: &str, name: &str) -> Result<Inputs, Error> {
    let keystones: Api<KeystoneAPI> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let (fernet, credential) = (
        names::fernet_keys_secret(name),
        names::credential_keys_secret(name),
    );
    Ok(Inputs {
        keystone: keystones.get_opt(name).await.map_err(|source| FailedCall {
            name: name.to_owned(),
            condition: None,
            action: "reading",
            object: format!("KeystoneAPI {name}"),
            source,
        })?,
        fernet_secret: secrets.get_opt(&fernet).await.map_err(FailedCall::under(
            name,
            FERNET_KEYS_READY,
            "reading",
            format!("Secret {fernet}"),
        ))?,
        credential_secret: secrets.get_opt(&credential).await.map_err(FailedCall::under(
            name,
            CREDENTIAL_KEYS_READY,
            "reading",
            format!("Secret {credential}"),
        ))?,
    })
}
