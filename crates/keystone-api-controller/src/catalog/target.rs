//! Which Keystone a catalog object talks to, and as whom: its KeystoneAPI (named, or the only one in the
//! namespace), that KeystoneAPI's in-cluster internal Service (or the operator's `--keystone-url` override for
//! a controller outside the cluster), and its bootstrap admin with the password from the KeystoneAPI's Secret.
//! The admin password goes only there: never to a URL taken from the spec (`endpointURLs.internal` and so
//! `status.apiEndpoints.internal` are whatever the KeystoneAPI's editor wrote, which could be any host). Clients are cached per
//! KeystoneAPI, with their token, and rebuilt when the URL or the credentials change.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::core::DeserializeGuard;
use kube::{Api, Client, ResourceExt};
use sha2::{Digest, Sha256};

use keystone_client::{Config, KeystoneClient};
use keystone_types::KeystoneAPI;
use keystone_types::catalog::conditions::{KEYSTONE_API_READY, READY, reasons};
use operator_common::conditions::Desired;

/// The domain the bootstrap admin and the service users live in.
pub const DEFAULT_DOMAIN: &str = "Default";

/// Keystone URL overrides: `NAMESPACE/NAME=URL` for one KeystoneAPI, or a bare `URL` for all.
#[derive(Clone, Debug, Default)]
pub struct UrlOverrides {
    all: Option<String>,
    one: HashMap<String, String>,
}

impl UrlOverrides {
    /// Parses the `--keystone-url` values.
    pub fn parse(values: &[String]) -> Result<Self, String> {
        let mut out = Self::default();
        for v in values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            let (target, url) = match v.split_once('=') {
                Some((t, u)) if !t.contains("://") => (Some(t), u),
                _ => (None, v),
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "--keystone-url {v:?}: the URL must start with http:// or https://"
                ));
            }
            match target {
                Some(t) if t.split('/').count() == 2 && !t.starts_with('/') && !t.ends_with('/') => {
                    out.one.insert(t.to_owned(), url.to_owned());
                }
                Some(t) => {
                    return Err(format!("--keystone-url {v:?}: {t:?} is not NAMESPACE/NAME"));
                }
                None => out.all = Some(url.to_owned()),
            }
        }
        Ok(out)
    }

    /// The override for the KeystoneAPI `ns/name`, if any.
    pub fn get(&self, ns: &str, name: &str) -> Option<&str> {
        self.one
            .get(&format!("{ns}/{name}"))
            .or(self.all.as_ref())
            .map(String::as_str)
    }
}

/// Keystone clients per KeystoneAPI.
#[derive(Debug, Default)]
pub struct AdminClients {
    clients: Mutex<HashMap<String, (String, KeystoneClient)>>,
    ca_bundle: Option<Vec<u8>>,
    timeout: Duration,
}

impl AdminClients {
    /// Clients trusting `ca_bundle` (PEM) for https endpoints, with a per-request timeout.
    pub fn new(ca_bundle: Option<Vec<u8>>, timeout: Duration) -> Self {
        Self {
            clients: Mutex::default(),
            ca_bundle,
            timeout,
        }
    }

    /// The client for `key` with these settings: the cached one (and its token) when nothing changed.
    fn get(
        &self,
        key: &str,
        url: &str,
        user: &str,
        password: &str,
    ) -> Result<KeystoneClient, keystone_client::Error> {
        let mut h = Sha256::new();
        for part in [url, user, password] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let fingerprint = hex::encode(h.finalize());
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((f, c)) = clients.get(key)
            && *f == fingerprint
        {
            return Ok(c.clone());
        }
        let mut config = Config::new(url, user, password);
        config.user_domain_name = DEFAULT_DOMAIN.to_owned();
        config.timeout = self.timeout;
        if url.starts_with("https://") {
            config.ca_bundle_pem = self.ca_bundle.clone();
        }
        let client = KeystoneClient::new(config)?;
        clients.insert(key.to_owned(), (fingerprint, client.clone()));
        Ok(client)
    }

    /// Drops the client of a KeystoneAPI that is gone.
    pub fn forget(&self, key: &str) {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// A KeystoneAPI a catalog object can be reconciled against.
#[derive(Debug, Clone)]
pub struct Target {
    /// The KeystoneAPI's name.
    pub name: String,
    /// Its `spec.region` (the default region of endpoints).
    pub region: String,
    /// A client authenticated as its bootstrap admin.
    pub keystone: KeystoneClient,
    /// Its `spec.adminUser`: never adopted or changed by a catalog object.
    pub admin_user: String,
    /// The users its `keystone.openstack.org/adopt-service-users` annotation allows a KeystoneService to adopt.
    pub adoptable_users: Vec<String>,
}

/// Why there is no target (yet): a condition to report.
#[derive(Debug, Clone)]
pub struct NoTarget {
    /// `KeystoneAPIReady=False` with the reason.
    pub condition: Desired,
}

fn no_target(reason: &str, message: String) -> NoTarget {
    NoTarget {
        condition: Desired::not_ok(KEYSTONE_API_READY, reason, message),
    }
}

/// The KeystoneAPI named `requested`, or the only one in `ns`. Read from the API server, not from a watch
/// cache: the watch event that woke this reconcile may not have reached another watch's cache yet, and a
/// stale answer (a KeystoneAPI still there, or not yet Ready) would not be corrected until the next event.
pub async fn find_keystone(
    client: &Client,
    ns: &str,
    requested: Option<&str>,
) -> Result<KeystoneAPI, NoTarget> {
    let api: Api<DeserializeGuard<KeystoneAPI>> = Api::namespaced(client.clone(), ns);
    let list = api.list(&Default::default()).await.map_err(|e| {
        no_target(
            reasons::WAITING_FOR_KEYSTONE_API,
            format!("cannot list the KeystoneAPIs of namespace {ns}: {e}"),
        )
    })?;
    let mut candidates: Vec<KeystoneAPI> = list.items.into_iter().filter_map(|g| g.0.ok()).collect();
    candidates.sort_by_key(ResourceExt::name_any);
    match requested {
        Some(name) => candidates
            .into_iter()
            .find(|k| k.name_any() == name)
            .ok_or_else(|| {
                no_target(
                    reasons::KEYSTONE_API_NOT_FOUND,
                    format!("KeystoneAPI {name} (spec.keystoneAPI) does not exist in namespace {ns}"),
                )
            }),
        None => match candidates.len() {
            0 => Err(no_target(
                reasons::KEYSTONE_API_NOT_FOUND,
                format!("there is no KeystoneAPI in namespace {ns}"),
            )),
            1 => Ok(candidates.remove(0)),
            _ => Err(no_target(
                reasons::KEYSTONE_API_AMBIGUOUS,
                format!(
                    "namespace {ns} has several KeystoneAPIs ({}); set spec.keystoneAPI to one of them",
                    candidates
                        .iter()
                        .map(ResourceExt::name_any)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        },
    }
}

/// The KeystoneAPI's Ready condition, if True.
fn is_ready(ks: &KeystoneAPI) -> Result<(), String> {
    let ready = ks
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == READY));
    match ready {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => Err(c.message.clone()),
        None => Err("no status yet".to_owned()),
    }
}

/// Resolves the target of a catalog object: the KeystoneAPI, Ready, with its URL and admin credentials.
pub async fn resolve(
    client: &Client,
    admin: &AdminClients,
    urls: &UrlOverrides,
    ns: &str,
    requested: Option<&str>,
) -> Result<Target, NoTarget> {
    let ks = find_keystone(client, ns, requested).await?;
    let name = ks.name_any();
    if ks.metadata.deletion_timestamp.is_some() {
        return Err(no_target(
            reasons::KEYSTONE_API_NOT_FOUND,
            format!("KeystoneAPI {name} is being deleted"),
        ));
    }
    if let Err(why) = is_ready(&ks) {
        return Err(no_target(
            reasons::WAITING_FOR_KEYSTONE_API,
            format!("KeystoneAPI {name} is not Ready: {why}"),
        ));
    }
    let url = admin_url(&ks, urls);
    let secret_name = &ks.spec.secret;
    let key = &ks.spec.password_selectors.admin;
    let unavailable = |message: String| no_target(reasons::ADMIN_CREDENTIALS_UNAVAILABLE, message);
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(secret_name)
        .await
        .map_err(|e| unavailable(format!("cannot read Secret {secret_name}: {e}")))?
        .ok_or_else(|| {
            unavailable(format!(
                "Secret {secret_name} (KeystoneAPI {name} spec.secret) does not exist"
            ))
        })?;
    let password = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            unavailable(format!(
                "Secret {secret_name} has no key {key} (passwordSelectors.admin)"
            ))
        })?;
    let keystone = admin
        .get(&format!("{ns}/{name}"), &url, &ks.spec.admin_user, &password)
        .map_err(|e| unavailable(format!("cannot build a Keystone client for {url}: {e}")))?;
    let adoptable_users = ks
        .annotations()
        .get(keystone_types::catalog::ADOPT_SERVICE_USERS)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Target {
        region: ks.spec.region.clone(),
        admin_user: ks.spec.admin_user.clone(),
        adoptable_users,
        name,
        keystone,
    })
}

/// Where the admin credentials of `ks` may be sent: the operator's override, else the KeystoneAPI's own
/// internal Service — never a URL from its spec or status.
pub fn admin_url(ks: &KeystoneAPI, urls: &UrlOverrides) -> String {
    let ns = ks.namespace().unwrap_or_default();
    match urls.get(&ns, &ks.name_any()) {
        Some(u) => u.to_owned(),
        None => crate::build::service::endpoint_url(ks, keystone_types::v1beta1::Endpoint::Internal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_credentials_go_to_the_internal_service_never_to_a_url_from_the_spec() {
        let ks: KeystoneAPI = serde_json::from_value(serde_json::json!({
            "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI",
            "metadata": {"name": "keystone", "namespace": "tenant"},
            "spec": {"containerImage": "img", "endpointURLs": {"internal": "http://attacker.example:80"}},
            "status": {"apiEndpoints": {"internal": "http://attacker.example:80"}},
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let none = UrlOverrides::default();
        assert_eq!(admin_url(&ks, &none), "http://keystone-internal.tenant.svc:5000");
        let o = UrlOverrides::parse(&["tenant/keystone=http://127.0.0.1:5000".to_owned()])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(admin_url(&ks, &o), "http://127.0.0.1:5000");
    }

    #[test]
    fn url_overrides_per_keystone_and_for_all() {
        let o = UrlOverrides::parse(&[
            "openstack/keystone=http://127.0.0.1:5000".to_owned(),
            "https://keystone.example:5000/".to_owned(),
        ])
        .unwrap();
        assert_eq!(o.get("openstack", "keystone"), Some("http://127.0.0.1:5000"));
        assert_eq!(o.get("other", "keystone"), Some("https://keystone.example:5000/"));
        let none = UrlOverrides::parse(&[]).unwrap();
        assert_eq!(none.get("a", "b"), None);
        let comma = UrlOverrides::parse(&["a/b=http://x:1,c/d=http://y:2".to_owned()]).unwrap();
        assert_eq!(comma.get("c", "d"), Some("http://y:2"));
        assert_eq!(comma.get("e", "f"), None);
    }

    #[test]
    fn url_overrides_are_checked() {
        assert!(
            UrlOverrides::parse(&["keystone:5000".to_owned()])
                .unwrap_err()
                .contains("http://")
        );
        assert!(
            UrlOverrides::parse(&["a/b/c=http://x".to_owned()])
                .unwrap_err()
                .contains("NAMESPACE/NAME")
        );
    }
}
