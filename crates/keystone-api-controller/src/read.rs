//! Every API read of a reconcile: the user's Secrets (GET by name: they carry no labels of ours and are not
//! cached), the current Deployment, the requested NetworkAttachmentDefinitions and the API pods; and which
//! optional APIs the cluster serves (cached for a minute).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client, ResourceExt};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use keystone_types::conditions::{CONFIG_READY, DEPLOYMENT_READY, NETWORK_ATTACHMENTS_READY, SERVICE_READY};
use keystone_types::{KeystoneAPI, labels, names};

use operator_common::backoff::FailedCall;

use crate::Error;

/// What a reconcile works from.
#[derive(Debug, Default)]
pub struct Inputs {
    /// `spec.secret`.
    pub password_secret: Option<Secret>,
    /// `spec.customServiceConfigSecret`.
    pub custom_secret: Option<Secret>,
    /// `spec.notifications.secret`.
    pub notifications_secret: Option<Secret>,
    /// The API Deployment, if it exists.
    pub deployment: Option<Deployment>,
    /// Requested NetworkAttachmentDefinitions that do not exist.
    pub missing_networks: Vec<String>,
    /// The API pods.
    pub pods: Vec<Pod>,
    /// The cluster serves `route.openshift.io/v1` (OpenShift).
    pub routes_available: bool,
    /// The cluster serves `security.openshift.io/v1` (SecurityContextConstraints).
    pub scc_available: bool,
}

/// Which optional APIs (OpenShift's) the cluster serves, looked up at most once per [`Discovery::TTL`]: two API
/// reads per reconcile saved, and an API installed or removed later is seen within the TTL.
#[derive(Debug, Default)]
pub struct Discovery {
    known: Mutex<HashMap<String, (bool, Instant)>>,
}

impl Discovery {
    /// How long an answer is reused.
    pub const TTL: Duration = Duration::from_secs(60);

    /// Whether the cluster serves `group_version`.
    pub async fn serves(&self, client: &Client, group_version: &str) -> Result<bool, kube::Error> {
        let cached = self
            .known
            .lock()
            .ok()
            .and_then(|k| k.get(group_version).copied())
            .filter(|(_, at)| at.elapsed() < Self::TTL);
        if let Some((served, _)) = cached {
            return Ok(served);
        }
        let served = serves(client, group_version).await?;
        if let Ok(mut k) = self.known.lock() {
            k.insert(group_version.to_owned(), (served, Instant::now()));
        }
        Ok(served)
    }
}

/// Whether the cluster serves `group_version` (one discovery request).
pub async fn serves(client: &Client, group_version: &str) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(group_version).await {
        Ok(list) => Ok(!list.resources.is_empty()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// NetworkAttachmentDefinition (Multus).
pub fn nad_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition"),
        "network-attachment-definitions",
    )
}

/// Reads everything the KeystoneAPI refers to.
pub async fn inputs(client: &Client, discovery: &Discovery, ks: &KeystoneAPI) -> Result<Inputs, Error> {
    let ns = ks.namespace().unwrap_or_default();
    let name = ks.name_any();
    let read_err = |condition, object: String| FailedCall::under(&name, condition, "reading", object);
    let secret_err =
        |n: &Option<String>| read_err(CONFIG_READY, format!("Secret {}", n.clone().unwrap_or_default()));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let get = |n: Option<String>| {
        let secrets = secrets.clone();
        async move {
            match n {
                Some(n) => secrets.get_opt(&n).await,
                None => Ok(None),
            }
        }
    };
    let spec = &ks.spec;
    let mut missing_networks = Vec::new();
    let nads: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &nad_resource());
    for net in &spec.network_attachments {
        match nads.get_opt(net).await {
            Ok(Some(_)) => {}
            // 404 both when the object and when the whole API (Multus not installed) is missing
            Ok(None) | Err(kube::Error::Api(_)) => missing_networks.push(net.clone()),
            Err(e) => {
                return Err(read_err(
                    NETWORK_ATTACHMENTS_READY,
                    format!("NetworkAttachmentDefinition {net}"),
                )(e)
                .into());
            }
        }
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let selector = labels::selector_labels(&name, labels::component::API)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let password = Some(spec.secret.clone());
    let custom = spec.custom_service_config_secret.clone();
    let notifications = spec.notifications.as_ref().map(|n| n.secret.clone());
    let discover = |gv: &str| FailedCall::under(&name, SERVICE_READY, "discovering", format!("API {gv}"));
    Ok(Inputs {
        password_secret: get(password.clone()).await.map_err(secret_err(&password))?,
        custom_secret: get(custom.clone()).await.map_err(secret_err(&custom))?,
        notifications_secret: get(notifications.clone())
            .await
            .map_err(secret_err(&notifications))?,
        deployment: Api::<Deployment>::namespaced(client.clone(), &ns)
            .get_opt(&names::deployment(&name))
            .await
            .map_err(read_err(
                DEPLOYMENT_READY,
                format!("Deployment {}", names::deployment(&name)),
            ))?,
        missing_networks,
        routes_available: discovery
            .serves(client, "route.openshift.io/v1")
            .await
            .map_err(discover("route.openshift.io/v1"))?,
        scc_available: discovery
            .serves(client, "security.openshift.io/v1")
            .await
            .map_err(discover("security.openshift.io/v1"))?,
        pods: pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(FailedCall::under(
                &name,
                DEPLOYMENT_READY,
                "listing",
                format!("Pods {selector}"),
            ))?
            .items,
    })
}
