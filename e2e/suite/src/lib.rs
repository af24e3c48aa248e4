//! The end-to-end environment: a control plane named `e2e`, the local node (MariaDB, memcached, the node
//! agent) for the namespace `keystone-e2e`, the three controller binaries as separate processes, and clients
//! for Keystone: the real `openstack` CLI for the user-facing checks and a small HTTP client for volume.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_debug_implementations)]

pub mod expiry;

use std::process::Command;
use std::time::{Duration, SystemTime};

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
    /// Extra arguments of the api controller (kept across restarts).
    pub api_args: Vec<String>,
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
            api_args: Vec::new(),
        };
        for c in ["api", "fernet", "db"] {
            env.start_controller(c, min_rotation_interval).await;
        }
        env
    }

    /// Starts controller `c` (api, fernet, db) watching the e2e namespace.
    pub async fn start_controller(&mut self, c: &str, min_rotation_interval: &str) {
        let mut extra: Vec<&str> = if c == "fernet" {
            vec!["--min-rotation-interval", min_rotation_interval]
        } else {
            vec![]
        };
        if c == "api" {
            extra.extend(self.api_args.iter().map(String::as_str));
        }
        let mut p = ControllerProcess::start(
            &binary::sibling(&format!("keystone-{c}-controller")),
            &self.cluster,
            Some(NAMESPACE),
            &extra,
        );
        p.wait_ready().await;
        self.controllers.push(p);
    }

    /// SIGKILLs controller `c` (api, fernet, db), as a crash or an OOM kill would, and starts it again;
    /// returns once the new process is ready.
    pub async fn crash_and_restart(&mut self, c: &str, min_rotation_interval: &str) {
        let i = ["api", "fernet", "db"]
            .iter()
            .position(|n| *n == c)
            .expect("a controller name");
        let old = self.controllers.remove(i);
        let _ = old.crash().await;
        self.start_controller(c, min_rotation_interval).await;
        let p = self.controllers.pop().expect("started");
        self.controllers.insert(i, p);
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
        self.openstack_as(auth_url, ("admin", "admin"), password, args)
            .await
    }

    /// `openstack <args> -f json` as `user` scoped to `project` (both in the Default domain).
    pub async fn openstack_as(
        &self,
        auth_url: &str,
        (user, project): (&str, &str),
        password: &str,
        args: &[&str],
    ) -> Result<Value, String> {
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
                user,
                "--os-password",
                password,
                "--os-project-name",
                project,
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

/// An error with its causes (reqwest's own message hides them: "error sending request for url").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

/// A small Keystone client over HTTP, for request volume the CLI's Python start-up cannot sustain.
#[derive(Clone)]
pub struct Keystone {
    http: reqwest::Client,
}

impl Default for Keystone {
    fn default() -> Self {
        Self {
            // Idle connections are dropped before the server's keep-alive timeout (httpd 5 s, the stand-in's
            // uWSGI 4 s), as a well-behaved client does: reusing one the server is closing fails the request.
            http: reqwest::Client::builder()
                // No longer than the expiry margin: a validation sent while a token had more than the margin
                // left is answered (or fails) before the token expires.
                .timeout(expiry::MARGIN)
                .pool_idle_timeout(Duration::from_secs(2))
                .build()
                .unwrap(),
        }
    }
}

/// A token and the `expires_at` Keystone reported for it.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The token (`X-Subject-Token`).
    pub token: String,
    /// When Keystone says it expires.
    pub expires_at: std::time::SystemTime,
}

impl Keystone {
    /// Password auth as admin, project-scoped; returns the token.
    pub async fn issue(&self, ip: &str, password: &str) -> Result<String, String> {
        self.issue_token(ip, password).await.map(|i| i.token)
    }

    /// Password auth as admin, project-scoped; returns the token and its `expires_at`.
    pub async fn issue_token(&self, ip: &str, password: &str) -> Result<Issued, String> {
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
            .map_err(|e| format!("issue on {ip}: {}", chain(&e)))?;
        if r.status().as_u16() != 201 {
            return Err(format!("issue on {ip}: HTTP {}", r.status()));
        }
        let token = r
            .headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| format!("issue on {ip}: no X-Subject-Token"))?;
        let body = r
            .text()
            .await
            .map_err(|e| format!("issue on {ip}: body: {}", chain(&e)))?;
        let body: Value =
            serde_json::from_str(&body).map_err(|e| format!("issue on {ip}: body not JSON: {e}"))?;
        let expires_at = body["token"]["expires_at"]
            .as_str()
            .ok_or_else(|| format!("issue on {ip}: no token.expires_at"))
            .and_then(expiry::parse_expires_at)?;
        Ok(Issued { token, expires_at })
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
            .map_err(|e| format!("validate on {ip}: {}", chain(&e)))?;
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
            .map_err(|e| format!("GET {path} on {ip}: {}", chain(&e)))?;
        let status = r.status().as_u16();
        let body = r.text().await.map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
    }
}

/// The node's host address (MariaDB and memcached listen there).
pub fn node_address() -> String {
    let out = Command::new(repo_root().join("hack/local-node.sh"))
        .args(["address", "--name", NODE])
        .output()
        .unwrap();
    assert!(out.status.success(), "local-node.sh address failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Empties the node's memcached (`flush_all`): the next validation on any replica decrypts the token.
pub async fn flush_memcached() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect((node_address().as_str(), 11211))
        .await
        .expect("memcached");
    s.write_all(b"flush_all\r\n").await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("memcached answers flush_all")
        .unwrap();
    assert_eq!(&buf[..n], b"OK\r\n", "flush_all");
}

/// The node's state directory for the e2e node (as `hack/local-node.sh` places it).
fn node_state_dir() -> std::path::PathBuf {
    let cache = std::env::var_os("KEYSTONE_OPERATOR_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| std::path::PathBuf::from(d).join("keystone-operator"))
        })
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/keystone-operator")
        });
    cache.join("node").join(NODE).join("state")
}

/// The files a pod currently sees in volume `volume` (name → content), read from the node's pod directory:
/// what the container reads, including any refresh lag.
pub fn pod_volume(uid: &str, volume: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let dir = node_state_dir()
        .join("pods")
        .join(uid)
        .join("volumes")
        .join(volume);
    let mut files = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            continue;
        }
        if let Ok(content) = std::fs::read(entry.path()) {
            files.insert(name, content);
        }
    }
    files
}

/// Where the load sends its requests.
#[derive(Clone, Debug)]
pub enum Targets {
    /// These pod addresses, all of them for every check (every replica must answer).
    Pods(Vec<String>),
    /// The ready endpoints of this Service at the time of each request, as a client going through the
    /// Service would reach them.
    Service(String),
}

/// What a load run did.
#[derive(Clone, Debug, Default)]
pub struct LoadStats {
    /// Tokens issued.
    pub issued: u64,
    /// Successful validations.
    pub validated: u64,
    /// Successful validations of a token issued before at least one rotation since (per `rotation`).
    pub validated_across_rotations: u64,
    /// Successful validations sent within [`expiry::MARGIN`] of the token's `expires_at` (included in
    /// `validated`).
    pub validated_near_expiry: u64,
    /// Refusals of tokens sent within the margin and answered after `expires_at`: expected, not failures.
    pub refused_after_expiry: u64,
    /// Every failed request, with the time since the start.
    pub failures: Vec<String>,
}

/// Continuous token traffic from `workers` concurrent clients: each round issues a token (round-robin over the
/// targets) and validates it and two older, still unexpired tokens on every target (Pods) or on the ready
/// endpoints (Service). Which tokens must validate is judged at each validation from the `expires_at` Keystone
/// reported (see [`expiry`]). Runs until stopped, bounded by `max_duration`.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stats: std::sync::Arc<std::sync::Mutex<LoadStats>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the load. `rotation` is read to count validations across rotations.
    pub fn start(
        client: Client,
        targets: Targets,
        password: String,
        rotation: std::sync::Arc<std::sync::atomic::AtomicI64>,
        max_duration: Duration,
        workers: usize,
    ) -> Load {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stats = std::sync::Arc::new(std::sync::Mutex::new(LoadStats::default()));
        let mut tasks = Vec::new();
        for worker in 0..workers {
            let (stop2, stats2) = (stop.clone(), stats.clone());
            let (client, targets, password, rotation) = (
                client.clone(),
                targets.clone(),
                password.clone(),
                rotation.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let ksc = Keystone::default();
                let start = std::time::Instant::now();
                // (token, expires_at, rotation count at issue)
                let mut tokens: Vec<(String, SystemTime, i64)> = Vec::new();
                let mut round = worker;
                let fail = |what: String| {
                    let line = format!("{:>7.1}s {what}", start.elapsed().as_secs_f64());
                    eprintln!("e2e load: FAILED {line}");
                    stats2.lock().unwrap().failures.push(line);
                };
                while !stop2.load(Ordering::Relaxed) && start.elapsed() < max_duration {
                    round += 1;
                    let addrs = match &targets {
                        Targets::Pods(p) => p.clone(),
                        Targets::Service(svc) => match ready_endpoints(&client, svc).await {
                            Ok(a) if !a.is_empty() => a,
                            Ok(_) => {
                                fail(format!("service {svc}: no ready endpoint"));
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                continue;
                            }
                            Err(e) => {
                                // The API server, not Keystone: retry.
                                eprintln!("e2e load: endpoints of {svc}: {e}");
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                continue;
                            }
                        },
                    };
                    let issuer = &addrs[round % addrs.len()];
                    let rotation_now = rotation.load(Ordering::Relaxed);
                    let issued = match ksc.issue_token(issuer, &password).await {
                        Ok(t) => t,
                        Err(e) => {
                            fail(e);
                            continue;
                        }
                    };
                    stats2.lock().unwrap().issued += 1;
                    tokens.retain(|(_, expires_at, _)| expiry::keep(*expires_at, SystemTime::now()));
                    let mut checks = vec![(issued.token.clone(), issued.expires_at, rotation_now)];
                    if let Some(t) = tokens.first() {
                        checks.push(t.clone());
                    }
                    if tokens.len() > 1 {
                        checks.push(tokens[round % tokens.len()].clone());
                    }
                    tokens.push((issued.token.clone(), issued.expires_at, rotation_now));
                    // The ready endpoints again: a Service client would route each request anew.
                    let validators = match &targets {
                        Targets::Pods(p) => p.clone(),
                        Targets::Service(svc) => ready_endpoints(&client, svc).await.unwrap_or(addrs),
                    };
                    for ip in &validators {
                        for (subject, expires_at, issued_rotation) in &checks {
                            // Judged at the moment of each validation: earlier ones may have taken seconds.
                            let expected = expiry::expect(*expires_at, SystemTime::now());
                            if expected == expiry::Expect::Expired {
                                continue;
                            }
                            let status = ksc.validate(ip, &issued.token, subject, false).await;
                            let answered = SystemTime::now();
                            let code = match status {
                                Ok(code) => code,
                                Err(e) => {
                                    fail(e);
                                    continue;
                                }
                            };
                            let outcome = expiry::judge(expected, *expires_at, code, answered);
                            let mut s = stats2.lock().unwrap();
                            match outcome {
                                expiry::Outcome::Validated | expiry::Outcome::ValidatedNearExpiry => {
                                    s.validated += 1;
                                    if outcome == expiry::Outcome::ValidatedNearExpiry {
                                        s.validated_near_expiry += 1;
                                    }
                                    if *issued_rotation < rotation.load(Ordering::Relaxed) {
                                        s.validated_across_rotations += 1;
                                    }
                                }
                                expiry::Outcome::RefusedAfterExpiry => s.refused_after_expiry += 1,
                                expiry::Outcome::Failed { before_expiry } => {
                                    drop(s);
                                    fail(format!(
                                        "validate on {ip}: HTTP {code} for a token issued at rotation \
                                     {issued_rotation}, answered {:.1} s before its expires_at",
                                        before_expiry.as_secs_f64()
                                    ));
                                }
                            }
                        }
                    }
                }
            }));
        }
        Load { stop, stats, tasks }
    }

    /// What the load has done so far.
    pub fn stats(&self) -> LoadStats {
        self.stats.lock().unwrap().clone()
    }

    /// Stops the load and returns its totals.
    pub async fn finish(self) -> LoadStats {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.stats.lock().unwrap().clone()
    }
}

/// The ready endpoint addresses of Service `svc` in the e2e namespace.
pub async fn ready_endpoints(client: &Client, svc: &str) -> Result<Vec<String>, String> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={svc}"));
    let mut out = Vec::new();
    for s in slices.list(&lp).await.map_err(|e| e.to_string())? {
        for e in s.endpoints.into_iter().flatten() {
            if e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false) {
                out.extend(e.addresses);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A TCP proxy on 127.0.0.1 to the ready endpoints of a Service of the e2e namespace (what kube-proxy does in
/// a cluster), for a controller running on the host: each connection goes to the next ready endpoint, looked
/// up when it is accepted. Stops when dropped.
pub struct ServiceProxy {
    /// The local address.
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ServiceProxy {
    /// Proxies 127.0.0.1:<free port> to port `port` of the ready endpoints of Service `svc`.
    pub async fn start(client: &Client, svc: &str, port: u16) -> ServiceProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, svc) = (client.clone(), svc.to_owned());
        let task = tokio::spawn(async move {
            let mut next = 0usize;
            while let Ok((mut inbound, _)) = listener.accept().await {
                let endpoints = ready_endpoints(&client, &svc).await.unwrap_or_default();
                if endpoints.is_empty() {
                    continue;
                }
                let target = format!("{}:{port}", endpoints[next % endpoints.len()]);
                next = next.wrapping_add(1);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        ServiceProxy { addr, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ServiceProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
