//! Startup check: the KeystoneAPI CRD must be installed and Established before a controller watches it. A
//! missing CRD is fatal, with a message that says how to install it; a controller never creates its own CRD.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};

/// How to install the CRDs, shown when they are missing.
pub const INSTALL_HINT: &str = "install the CRDs first: `kubectl apply --server-side -f manifests/crds/` from the \
     keystone-operator repository, or `helm install` the keystone-operator chart (which ships them)";

/// Why the CRD check failed.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// The CRD does not exist.
    #[error("CustomResourceDefinition {name} is not installed; {INSTALL_HINT}")]
    NotInstalled {
        /// CRD name.
        name: String,
    },
    /// The CRD exists but did not become Established in time.
    #[error("CustomResourceDefinition {name} exists but is not Established after {waited:?}: {reason}")]
    NotEstablished {
        /// CRD name.
        name: String,
        /// How long we waited.
        waited: Duration,
        /// The Established condition's message, if any.
        reason: String,
    },
    /// The API server could not be asked.
    #[error("cannot read CustomResourceDefinition {name}: {source}")]
    Api {
        /// CRD name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// Waits until the CRD `name` is Established, for at most `timeout`. A CRD that does not exist fails at once.
pub async fn ensure_established(client: Client, name: &str, timeout: Duration) -> Result<(), CrdError> {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    // A timeout too large to add is as good as none.
    let deadline = tokio::time::Instant::now().checked_add(timeout);
    loop {
        let crd = api
            .get_opt(name)
            .await
            .map_err(|source| CrdError::Api {
                name: name.to_owned(),
                source,
            })?
            .ok_or_else(|| CrdError::NotInstalled {
                name: name.to_owned(),
            })?;
        let established = crd
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Established"));
        if established.is_some_and(|c| c.status == "True") {
            return Ok(());
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Err(CrdError::NotEstablished {
                name: name.to_owned(),
                waited: timeout,
                reason: established
                    .and_then(|c| c.message.clone())
                    .unwrap_or_else(|| "no condition yet".into()),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
