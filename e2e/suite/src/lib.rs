//! The end-to-end environment: a control plane named `e2e`, the local node (MariaDB, memcached, the node
//! agent) for the namespace `keystone-e2e`, the three controller binaries as separate processes, and clients
//! for Keystone: the real `openstack` CLI for the user-facing checks and a small HTTP client for volume.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_debug_implementations)]

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::{Value, json};

use keystone_types::KeystoneAPI;
use test_support::cluster::{Cluster, named_cluster, repo_root};
use test_support::process::ControllerProcess;
use test_support::{binary, wait};

/// The namespace every scenario works in.
pub const NAMESPACE: &str = "keystone-e2e";
/// The node's name (and its bridge and /24).
pub const NODE: &str = "e2e";

/// Passwords with `$`, quotes, backticks, `{{` and `%`: what templates and config files must not mangle.
pub const ADMIN_PASSWORD: &str = "adm$'\"`{{x}}%s pw";
/// The database password (in my.cnf for PyMySQL, and ALTER USER'd by the db-create Job).
pub const DB_PASSWORD: &str = "db$'\"`{{y}}%d pw";
/// MariaDB's root password (the node sets it; the db-create Job uses it).
pub const DB_ROOT_PASSWORD: &str = "root$'\"`{{z}}%";

/// The running environment.
pub struct Env {
    /// The control plane.
    pub cluster: Cluster,
    /// Admin client.
    pub client: Client,
    /// Controller processes: api, fernet, db.
    pub controllers: Vec<ControllerProcess>,
}

fn run_script(script: &str, args: &[&str], kubeconfig: &std::path::Path) -> String {
    let out = Command::new(repo_root().join(script))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Env {
    /// Starts (or reuses) the control plane and the node, and starts the controllers.
    pub async fn start(min_rotation_interval: &str) -> Env {
        let cluster = named_cluster(NODE, &[]).await;
        run_script(
            "hack/local-node.sh",
            &[
                "up",
                "--name",
                NODE,
                "--namespace",
                NAMESPACE,
                "--db-root-password",
                DB_ROOT_PASSWORD,
            ],
            &cluster.kubeconfig,
        );
        let client = cluster.client().await;
        let mut env = Env {
            cluster,
            client,
            controllers: Vec::new(),
        };
        for c in ["api", "fernet", "db"] {
            env.start_controller(c, min_rotation_interval).await;
        }
        env
    }

    /// Starts controller `c` (api, fernet, db) watching the e2e namespace.
    pub async fn start_controller(&mut self, c: &str, min_rotation_interval: &str) {
        let extra: Vec<&str> = if c == "fernet" {
            vec!["--min-rotation-interval", min_rotation_interval]
        } else {
            vec![]
        };
        let mut p = ControllerProcess::start(
            &binary::sibling(&format!("keystone-{c}-controller")),
            &self.cluster,
            Some(NAMESPACE),
            &extra,
        );
        p.wait_ready().await;
        self.controllers.push(p);
    }

    /// The KeystoneAPI API of the namespace.
    pub fn keystones(&self) -> Api<KeystoneAPI> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// Waits until the KeystoneAPI's `type_` condition is `status` for its current generation.
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        timeout: Duration,
    ) -> KeystoneAPI {
        let api = self.keystones();
        wait::until(&format!("{name} {type_}={status}"), timeout, || async {
            let ks = api.get(name).await.map_err(|e| e.to_string())?;
            test_support::keystone::condition_is(&ks, type_, status).map(|()| ks)
        })
        .await
    }

    /// The addresses of the Ready API pods of `name`.
    pub async fn api_pod_ips(&self, name: &str) -> Vec<String> {
        self.api_pods(name).await.into_iter().map(|(_, ip)| ip).collect()
    }

    /// (pod name, address) of the Ready API pods of `name`, sorted by address.
    pub async fn api_pods(&self, name: &str) -> Vec<(String, String)> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        let selector = format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=api");
        let mut ips: Vec<(String, String)> = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|p| Some((p.metadata.name.clone()?, p.status?.pod_ip?)))
            .collect();
        ips.sort_by(|a, b| a.1.cmp(&b.1));
        ips
    }

    /// The fernet key Secret's rotation count.
    pub async fn rotation_count(&self, name: &str) -> i64 {
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(self.client.clone(), NAMESPACE);
        secrets
            .get(&keystone_types::names::fernet_keys_secret(name))
            .await
            .ok()
            .and_then(|s| s.metadata.annotations)
            .and_then(|a| a.get("keystone.openstack.org/rotation-count").cloned())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1)
    }
}

impl Env {
    /// Runs the real `openstack` CLI (Debian's python-openstackclient) as admin, as a client inside the
    /// cluster would: `auth_url` may name Services (`keystone-internal.<ns>.svc`), which resolve through an
    /// `/etc/hosts` bind-mounted in a private mount namespace to each Service's ready endpoint, like the
    /// node's pods see them. Returns the JSON output. The environment is cleared (stray OS_* variables
    /// would redirect it).
    pub async fn openstack(&self, auth_url: &str, password: &str, args: &[&str]) -> Result<Value, String> {
        let hosts = std::env::temp_dir().join(format!("keystone-e2e-hosts-{}", std::process::id()));
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), NAMESPACE);
        let mut text = String::from("127.0.0.1 localhost\n");
        for s in slices
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
        {
            if let Some((svc, addr)) = keystone_local_node::hosts::ready_endpoint(&s) {
                text.push_str(&format!(
                    "{addr} {svc}.{NAMESPACE}.svc {svc}.{NAMESPACE}.svc.cluster.local\n"
                ));
            }
        }
        std::fs::write(&hosts, text).map_err(|e| e.to_string())?;
        let mut cmd = tokio::process::Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
            .arg(&hosts)
            .arg("/usr/bin/openstack")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", std::env::temp_dir())
            .args([
                "--os-auth-url",
                auth_url,
                "--os-identity-api-version",
                "3",
                "--os-username",
                "admin",
                "--os-password",
                password,
                "--os-project-name",
                "admin",
                "--os-user-domain-name",
                "Default",
                "--os-project-domain-name",
                "Default",
                "--os-interface",
                "internal",
            ])
            .args(args)
            .args(["-f", "json"]);
        let out = cmd
            .output()
            .await
            .map_err(|e| format!("cannot run openstack: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "openstack {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("openstack {args:?}: not JSON ({e})"))
    }
}

/// A small Keystone client over HTTP, for request volume the CLI's Python start-up cannot sustain.
#[derive(Clone)]
pub struct Keystone {
    http: reqwest::Client,
}

impl Default for Keystone {
    fn default() -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }
}

impl Keystone {
    /// Password auth as admin, project-scoped; returns the token.
    pub async fn issue(&self, ip: &str, password: &str) -> Result<String, String> {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}
        }});
        let r = self
            .http
            .post(format!("http://{ip}:5000/v3/auth/tokens"))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("issue on {ip}: {e}"))?;
        if r.status().as_u16() != 201 {
            return Err(format!("issue on {ip}: HTTP {}", r.status()));
        }
        r.headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| "no X-Subject-Token".to_string())
    }

    /// Validates `subject` on `ip` with `auth` as the caller's token; returns the HTTP status.
    pub async fn validate(
        &self,
        ip: &str,
        auth: &str,
        subject: &str,
        allow_expired: bool,
    ) -> Result<u16, String> {
        let url = if allow_expired {
            format!("http://{ip}:5000/v3/auth/tokens?allow_expired=1")
        } else {
            format!("http://{ip}:5000/v3/auth/tokens")
        };
        let r = self
            .http
            .get(url)
            .header("X-Auth-Token", auth)
            .header("X-Subject-Token", subject)
            .send()
            .await
            .map_err(|e| format!("validate on {ip}: {e}"))?;
        Ok(r.status().as_u16())
    }

    /// GET `path` with `token`; returns status and JSON body.
    pub async fn get(&self, ip: &str, token: &str, path: &str) -> Result<(u16, Value), String> {
        let r = self
            .http
            .get(format!("http://{ip}:5000{path}"))
            .header("X-Auth-Token", token)
            .send()
            .await
            .map_err(|e| format!("GET {path} on {ip}: {e}"))?;
        let status = r.status().as_u16();
        let body = r.text().await.map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
    }
}
