//! One pod on the node, from bind to deletion: network namespace, volumes, `/etc/hosts`, containers (init
//! containers in order, then the rest together) as real processes in a private mount namespace, probes,
//! restarts per `restartPolicy`, Secret/ConfigMap refresh (with an optional per-pod lag), `preStop` sleep
//! hooks and the grace period on deletion, and the pod's status, reported the way a kubelet reports it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::env::{self, Sources};
use crate::net::{Bridge, PodNet};
use crate::volumes;
use crate::{hosts, probe, standin};

/// Per-pod lag before a changed Secret or ConfigMap reaches the pod's volumes (e.g. `30s`), to simulate a
/// kubelet that has not synced yet.
pub const VOLUME_LAG_ANNOTATION: &str = "local-node.keystone.openstack.org/volume-lag";

/// Multus' request and report annotations.
const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";

/// The Multus `network-status` for a pod that asks for attachments (`k8s.v1.cni.cncf.io/networks`, either
/// `a,b` or the JSON list form): the default network on eth0 plus one `netN` per attachment with an address
/// from 172.30.N.0/24. The attachments are reported, not plumbed (no extra interfaces exist): enough for the
/// operator's NetworkAttachmentsReady and status.networkAttachments.
pub fn network_status(pod: &Pod, address: std::net::Ipv4Addr, slot: u8) -> Option<String> {
    let ns = pod.namespace().unwrap_or_default();
    let raw = pod.annotations().get(NETWORKS)?.trim().to_owned();
    if raw.is_empty() {
        return None;
    }
    let names: Vec<String> = if raw.starts_with('[') {
        serde_json::from_str::<Vec<serde_json::Value>>(&raw)
            .ok()?
            .iter()
            .filter_map(|v| {
                let name = v.get("name")?.as_str()?;
                let nns = v.get("namespace").and_then(|n| n.as_str()).unwrap_or(&ns);
                Some(format!("{nns}/{name}"))
            })
            .collect()
    } else {
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|n| {
                if n.contains('/') {
                    n.to_owned()
                } else {
                    format!("{ns}/{n}")
                }
            })
            .collect()
    };
    let mut status = vec![
        json!({"name": "local-node", "interface": "eth0", "ips": [address.to_string()], "default": true}),
    ];
    for (i, name) in names.iter().enumerate() {
        status.push(json!({"name": name, "interface": format!("net{}", i + 1), "ips": [format!("172.30.{}.{slot}", i + 1)]}));
    }
    serde_json::to_string(&status).ok()
}

/// What the node knows that every pod needs.
#[derive(Debug)]
pub struct NodeConfig {
    /// The Node object's name.
    pub name: String,
    /// Per-pod state (volumes, hosts files): `<state_dir>/pods/<uid>`.
    pub state_dir: PathBuf,
    /// Container logs: `<log_dir>/<namespace>_<pod>_<uid>/<container>.log`.
    pub log_dir: PathBuf,
    /// The node's bridge.
    pub bridge: Bridge,
    /// Images whose name contains one of these run with the Keystone image stand-in (see `standin`).
    pub standin_images: Vec<String>,
}

/// A container's life so far.
#[derive(Debug, Default)]
struct ContainerRun {
    child: Option<Child>,
    pid: Option<u32>,
    started_at: Option<Timestamp>,
    restarts: i32,
    ready: bool,
    started: bool,
    probe_failures: i32,
    last_probe: Option<Instant>,
    liveness_failures: i32,
    last_liveness: Option<Instant>,
    terminated: Option<Terminated>,
    last_terminated: Option<Terminated>,
    restart_at: Option<Instant>,
    waiting: Option<(String, String)>,
}

#[derive(Clone, Debug)]
struct Terminated {
    exit_code: i32,
    reason: String,
    message: String,
    started_at: Timestamp,
    finished_at: Timestamp,
}

#[derive(Debug)]
struct Volume {
    digest: String,
    pending: Option<(String, Instant)>,
    generation: u64,
}

/// Drives one pod until it is deleted. `updates` carries the latest pod object (`None`: deleted).
pub async fn run(
    client: Client,
    cfg: Arc<NodeConfig>,
    mut pod: Pod,
    slot: u8,
    mut updates: watch::Receiver<Option<Pod>>,
) {
    let uid = pod.uid().unwrap_or_default();
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let id = uid.replace('-', "").chars().take(8).collect::<String>();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let dir = cfg.state_dir.join("pods").join(&uid);
    let log_dir = cfg.log_dir.join(format!("{ns}_{name}_{uid}"));
    let mut worker = Worker {
        client: client.clone(),
        cfg: cfg.clone(),
        pods: pods.clone(),
        dir: dir.clone(),
        log_dir,
        net: None,
        address: cfg.bridge.pod_address(slot),
        volumes: BTreeMap::new(),
        init: Vec::new(),
        containers: Vec::new(),
        start_time: Timestamp::now(),
        last_status: None,
        init_done: false,
        tokens: BTreeMap::new(),
    };
    tracing::info!(pod = %format!("{ns}/{name}"), ip = %worker.address, "starting pod");
    if let Err(error) = std::fs::create_dir_all(&dir) {
        tracing::error!(%error, dir = %dir.display(), "cannot create the pod directory");
    }
    match PodNet::create(&cfg.bridge, &id, worker.address) {
        Ok(net) => worker.net = Some(net),
        Err(error) => {
            tracing::error!(%error, "cannot create the pod network");
            worker.fail_pod(&pod, "NetworkNotReady", &error.to_string()).await;
        }
    }
    if worker.net.is_some()
        && let Some(status) = network_status(&pod, worker.address, slot)
    {
        let patch = json!({"metadata": {"annotations": {NETWORK_STATUS: status}}});
        if let Err(error) = pods
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(%error, "cannot write the network-status annotation");
        }
    }
    let spec = pod.spec.clone().unwrap_or_default();
    worker.init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|_| ContainerRun::default())
        .collect();
    worker.containers = spec.containers.iter().map(|_| ContainerRun::default()).collect();
    worker.init_done = worker.init.is_empty();

    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() { break; }
                let latest = updates.borrow().clone();
                match latest {
                    Some(p) if p.metadata.deletion_timestamp.is_none() => pod = p,
                    Some(p) => { pod = p; break; }
                    None => break,
                }
            }
            _ = tick.tick() => {
                if worker.net.is_some() {
                    worker.step(&pod).await;
                }
            }
        }
    }
    // Deleted: stop the containers (SIGTERM, grace period, SIGKILL), tear down, and finish the deletion as
    // the kubelet does.
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .or(spec.termination_grace_period_seconds)
        .unwrap_or(30)
        .clamp(0, 30) as u64;
    // preStop `sleep` hooks run first, inside the grace period, as the kubelet runs them before SIGTERM: the
    // pod keeps serving while the endpoint controllers take it out of its Services.
    let grace = Duration::from_secs(grace);
    let pre_stop = pre_stop_sleep(&spec).min(grace);
    if !pre_stop.is_zero() && worker.containers.iter().any(|c| c.child.is_some()) {
        tracing::info!(pod = %format!("{ns}/{name}"), seconds = pre_stop.as_secs(), "preStop sleep");
        tokio::time::sleep(pre_stop).await;
    }
    worker.stop_all(grace.saturating_sub(pre_stop)).await;
    if let Some(net) = worker.net.take() {
        net.remove();
    }
    let _ = std::fs::remove_dir_all(&dir);
    if pod.metadata.deletion_timestamp.is_some() {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(kube::api::Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let _ = pods.delete(&name, &dp).await;
    }
    tracing::info!(pod = %format!("{ns}/{name}"), "pod gone");
}

struct Worker {
    client: Client,
    cfg: Arc<NodeConfig>,
    pods: Api<Pod>,
    dir: PathBuf,
    log_dir: PathBuf,
    net: Option<PodNet>,
    address: std::net::Ipv4Addr,
    volumes: BTreeMap<String, Volume>,
    init: Vec<ContainerRun>,
    containers: Vec<ContainerRun>,
    start_time: Timestamp,
    last_status: Option<serde_json::Value>,
    init_done: bool,
    tokens: BTreeMap<String, String>,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The longest `lifecycle.preStop.sleep` of the pod's containers (other hook kinds are not supported).
fn pre_stop_sleep(spec: &k8s_openapi::api::core::v1::PodSpec) -> Duration {
    spec.containers
        .iter()
        .filter_map(|c| c.lifecycle.as_ref()?.pre_stop.as_ref()?.sleep.as_ref())
        .map(|s| Duration::from_secs(u64::try_from(s.seconds).unwrap_or(0)))
        .max()
        .unwrap_or_default()
}

fn parse_lag(pod: &Pod) -> Duration {
    pod.annotations()
        .get(VOLUME_LAG_ANNOTATION)
        .and_then(|v| {
            let v = v.trim();
            let (n, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit())?);
            let n: u64 = n.parse().ok()?;
            match unit {
                "ms" => Some(Duration::from_millis(n)),
                "s" => Some(Duration::from_secs(n)),
                "m" => Some(Duration::from_secs(n * 60)),
                _ => None,
            }
        })
        .unwrap_or_default()
}

impl Worker {
    fn phase_done(&self, policy: &str) -> Option<&'static str> {
        if !self.init_done
            && policy == "Never"
            && self
                .init
                .iter()
                .any(|c| c.terminated.as_ref().is_some_and(|t| t.exit_code != 0))
        {
            return Some("Failed");
        }
        if policy == "Always" || self.containers.is_empty() {
            return None;
        }
        let all_done = self
            .containers
            .iter()
            .all(|c| c.terminated.is_some() && c.child.is_none());
        if !all_done {
            return None;
        }
        let ok = self
            .containers
            .iter()
            .all(|c| c.terminated.as_ref().is_some_and(|t| t.exit_code == 0));
        if ok {
            Some("Succeeded")
        } else if policy == "Never" {
            Some("Failed")
        } else {
            None
        }
    }

    async fn sources(&self, pod: &Pod) -> Sources {
        let ns = pod.namespace().unwrap_or_default();
        let (secret_names, cm_names) = env::referenced(pod);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
        let mut sources = Sources::default();
        for n in secret_names {
            if let Ok(Some(s)) = secrets.get_opt(&n).await {
                sources.secrets.insert(n, s);
            }
        }
        for n in cm_names {
            if let Ok(Some(c)) = cms.get_opt(&n).await {
                sources.config_maps.insert(n, c);
            }
        }
        sources
    }

    /// Brings the volumes up to date; an error names what is missing (the pod waits).
    fn sync_volumes(&mut self, pod: &Pod, sources: &Sources, lag: Duration) -> Result<(), String> {
        let spec = pod.spec.clone().unwrap_or_default();
        let fs_group = spec
            .security_context
            .as_ref()
            .and_then(|s| s.fs_group)
            .map(|g| g as u32);
        for v in spec.volumes.iter().flatten() {
            let path = self.dir.join("volumes").join(&v.name);
            let files = if let Some(s) = &v.secret {
                let name = s.secret_name.clone().unwrap_or_default();
                volumes::secret_files(sources.secrets.get(&name), s)?
            } else if let Some(c) = &v.config_map {
                volumes::config_map_files(sources.config_maps.get(&c.name), c)?
            } else if v.empty_dir.is_some() {
                if !path.exists() {
                    std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o1777))
                        .map_err(|e| e.to_string())?;
                }
                continue;
            } else if let Some(p) = &v.projected {
                self.projected_files(pod, p, sources)?
            } else {
                return Err(format!(
                    "volume {:?}: only secret, configMap, projected and emptyDir volumes are supported",
                    v.name
                ));
            };
            let digest = volumes::digest(&files);
            let now = Instant::now();
            let write = match self.volumes.get_mut(&v.name) {
                None => true,
                Some(vol) if vol.digest == digest => {
                    vol.pending = None;
                    false
                }
                Some(vol) => match &vol.pending {
                    Some((d, since)) if *d == digest => now.duration_since(*since) >= lag,
                    _ => {
                        vol.pending = Some((digest.clone(), now));
                        lag.is_zero()
                    }
                },
            };
            if write {
                let generation = self.volumes.get(&v.name).map_or(1, |v| v.generation + 1);
                volumes::write_atomic(&path, &files, fs_group, generation)
                    .map_err(|e| format!("volume {:?}: {e}", v.name))?;
                if generation > 1 {
                    tracing::info!(pod = %pod.name_any(), volume = %v.name, "volume updated");
                }
                self.volumes.insert(
                    v.name.clone(),
                    Volume {
                        digest,
                        pending: None,
                        generation,
                    },
                );
            }
        }
        Ok(())
    }

    /// A projected volume: Secrets, ConfigMaps, downward API fields, and the ServiceAccount token (the
    /// admission plugin's `kube-api-access-*`; the token comes from the TokenRequest API, bound to the pod).
    fn projected_files(
        &self,
        pod: &Pod,
        p: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
        sources: &Sources,
    ) -> Result<volumes::Files, String> {
        let mode = p.default_mode.map_or(0o644, |m| m as u32);
        let mut files = Vec::new();
        for src in p.sources.iter().flatten() {
            if let Some(s) = &src.secret {
                let source = k8s_openapi::api::core::v1::SecretVolumeSource {
                    secret_name: Some(s.name.clone()),
                    items: s.items.clone(),
                    optional: s.optional,
                    default_mode: Some(mode as i32),
                    ..Default::default()
                };
                files.extend(volumes::secret_files(sources.secrets.get(&s.name), &source)?);
            }
            if let Some(c) = &src.config_map {
                let source = k8s_openapi::api::core::v1::ConfigMapVolumeSource {
                    name: c.name.clone(),
                    items: c.items.clone(),
                    optional: c.optional,
                    default_mode: Some(mode as i32),
                    ..Default::default()
                };
                files.extend(volumes::config_map_files(
                    sources.config_maps.get(&c.name),
                    &source,
                )?);
            }
            if let Some(d) = &src.downward_api {
                for item in d.items.iter().flatten() {
                    let value = item
                        .field_ref
                        .as_ref()
                        .and_then(|f| {
                            env::field(pod, &f.field_path, &self.address.to_string(), &self.cfg.name)
                        })
                        .unwrap_or_default();
                    files.push(volumes::File {
                        path: item.path.clone(),
                        data: value.into_bytes(),
                        mode: item.mode.map_or(mode, |m| m as u32),
                    });
                }
            }
            if let Some(t) = &src.service_account_token {
                let token = self.tokens.get(&t.path).cloned().unwrap_or_default();
                files.push(volumes::File {
                    path: t.path.clone(),
                    data: token.into_bytes(),
                    mode,
                });
            }
        }
        Ok(files)
    }

    /// Requests ServiceAccount tokens for the pod's projected volumes (once; an hour is plenty here).
    async fn ensure_tokens(&mut self, pod: &Pod) {
        use k8s_openapi::api::core::v1::ServiceAccount;
        let spec = pod.spec.clone().unwrap_or_default();
        let sa = spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into());
        let sas: Api<ServiceAccount> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        for v in spec.volumes.iter().flatten() {
            for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
                let Some(t) = &src.service_account_token else {
                    continue;
                };
                if self.tokens.contains_key(&t.path) {
                    continue;
                }
                let request: Result<k8s_openapi::api::authentication::v1::TokenRequest, _> =
                    serde_json::from_value(json!({
                        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                        "spec": {"audiences": t.audience.iter().collect::<Vec<_>>(), "expirationSeconds": t.expiration_seconds.unwrap_or(3607),
                                 "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod.name_any(), "uid": pod.uid()}}
                    }));
                let Ok(request) = request else { continue };
                match sas
                    .create_token_request(&sa, &kube::api::PostParams::default(), &request)
                    .await
                {
                    Ok(r) => {
                        if let Some(token) = r.status.and_then(|s| s.token) {
                            self.tokens.insert(t.path.clone(), token);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(pod = %pod.name_any(), %error, "cannot request a ServiceAccount token")
                    }
                }
            }
        }
    }

    /// The shell script that sets up the container's mount namespace (as root) and then drops to the
    /// container's user to exec its command.
    fn setup_script(&self, pod: &Pod, c: &Container, standin: bool) -> Result<String, String> {
        let spec = pod.spec.clone().unwrap_or_default();
        let psc = spec.security_context.clone().unwrap_or_default();
        let csc = c.security_context.clone().unwrap_or_default();
        let uid = csc.run_as_user.or(psc.run_as_user).unwrap_or(0);
        let gid = csc.run_as_group.or(psc.run_as_group).unwrap_or(0);
        let mut groups: Vec<i64> = psc.supplemental_groups.clone().unwrap_or_default();
        if let Some(g) = psc.fs_group {
            groups.push(g);
        }
        let mut s = String::from("set -e\n");
        if standin {
            s.push_str(&standin::mount_script(&self.dir));
        }
        for m in c.volume_mounts.iter().flatten() {
            let mut src = self.dir.join("volumes").join(&m.name);
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                src = src.join(sub);
            }
            if !spec.volumes.iter().flatten().any(|v| v.name == m.name) {
                return Err(format!("volumeMount {:?} names no volume", m.name));
            }
            let target = quote(&m.mount_path);
            let is_file = src.is_file();
            if is_file {
                let _ = writeln!(
                    s,
                    "mkdir -p \"$(dirname {target})\"; [ -e {target} ] || touch {target}"
                );
            } else {
                let _ = writeln!(s, "mkdir -p {target}");
            }
            let _ = writeln!(s, "mount --bind {} {target}", quote(&src.to_string_lossy()));
            if m.read_only.unwrap_or(false) {
                let _ = writeln!(s, "mount -o remount,bind,ro {target}");
            }
        }
        let hosts = self.dir.join("hosts");
        let _ = writeln!(s, "mount --bind {} /etc/hosts", quote(&hosts.to_string_lossy()));
        let term = self.dir.join(format!("termination-{}", c.name));
        let term_path = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        let _ = writeln!(
            s,
            "[ -e {p} ] || touch {p}; mount --bind {} {p}",
            quote(&term.to_string_lossy()),
            p = quote(&term_path)
        );
        let wd = c.working_dir.clone().unwrap_or_else(|| "/".into());
        let _ = writeln!(s, "cd {}", quote(&wd));
        let groups = if groups.is_empty() {
            "--clear-groups".to_owned()
        } else {
            format!(
                "--groups {}",
                groups.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
            )
        };
        let nnp = if csc.allow_privilege_escalation == Some(false) {
            " --no-new-privs"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "exec setpriv --reuid {uid} --regid {gid} {groups}{nnp} -- \"$@\""
        );
        Ok(s)
    }

    async fn start_container(
        &mut self,
        pod: &Pod,
        sources: &Sources,
        index: usize,
        init: bool,
    ) -> Result<(), (String, String)> {
        let spec = pod.spec.clone().unwrap_or_default();
        let c = if init {
            spec.init_containers.clone().unwrap_or_default()[index].clone()
        } else {
            spec.containers[index].clone()
        };
        let image = c.image.clone().unwrap_or_default();
        let standin = self.cfg.standin_images.iter().any(|i| image.contains(i.as_str()));
        let envs = env::resolve(pod, &c, sources, &self.address.to_string(), &self.cfg.name)
            .map_err(|m| ("CreateContainerConfigError".to_owned(), m))?;
        let mut argv: Vec<String> = c.command.clone().unwrap_or_default();
        argv.extend(c.args.clone().unwrap_or_default());
        if standin && argv.first().map(String::as_str) == Some(standin::IMAGE_HTTPD) {
            argv[0] = standin::HTTPD.to_owned();
        }
        if argv.is_empty() {
            return Err((
                "CreateContainerError".into(),
                format!("image {image:?}: no command (the local node has no images)"),
            ));
        }
        let argv: Vec<String> = argv.iter().map(|a| env::expand(a, &envs)).collect();
        let script = self
            .setup_script(pod, &c, standin)
            .map_err(|m| ("CreateContainerConfigError".to_owned(), m))?;
        let script_path = self.dir.join(format!("setup-{}.sh", c.name));
        std::fs::write(&script_path, script).map_err(|e| ("CreateContainerError".into(), e.to_string()))?;
        // The termination message file is the container's to write, whatever its user (0666, as kubelet).
        let term = self.dir.join(format!("termination-{}", c.name));
        let _ = std::fs::write(&term, b"");
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&term, std::fs::Permissions::from_mode(0o666));
        }
        std::fs::create_dir_all(&self.log_dir).map_err(|e| ("CreateContainerError".into(), e.to_string()))?;
        let log_path = self.log_dir.join(format!("{}.log", c.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| ("CreateContainerError".into(), e.to_string()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| ("CreateContainerError".into(), e.to_string()))?;
        let netns = self.net.as_ref().map(|n| n.netns.clone()).unwrap_or_default();
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &netns,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
        ])
        .arg(&script_path)
        .args(&argv)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOSTNAME", pod.name_any())
        .env("HOME", "/")
        .envs(envs)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .process_group(0)
        .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| ("RunContainerError".into(), e.to_string()))?;
        let run = if init {
            &mut self.init[index]
        } else {
            &mut self.containers[index]
        };
        run.pid = child.id();
        run.child = Some(child);
        run.started_at = Some(Timestamp::now());
        run.ready = false;
        run.started = false;
        run.probe_failures = 0;
        run.liveness_failures = 0;
        run.last_probe = None;
        run.last_liveness = None;
        run.waiting = None;
        if let Some(t) = run.terminated.take() {
            run.last_terminated = Some(t);
        }
        tracing::info!(pod = %pod.name_any(), container = %c.name, log = %log_path.display(), "container started");
        Ok(())
    }

    fn termination_message(&self, c: &Container, exit_code: i32) -> String {
        let mut msg =
            std::fs::read_to_string(self.dir.join(format!("termination-{}", c.name))).unwrap_or_default();
        if msg.trim().is_empty()
            && exit_code != 0
            && c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        {
            let log = std::fs::read(self.log_dir.join(format!("{}.log", c.name))).unwrap_or_default();
            let tail: Vec<&str> = std::str::from_utf8(&log)
                .unwrap_or_default()
                .lines()
                .rev()
                .take(80)
                .collect();
            msg = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        }
        if msg.len() > 4096 {
            let cut = msg.len() - 4096;
            let cut = (cut..msg.len())
                .find(|i| msg.is_char_boundary(*i))
                .unwrap_or(msg.len());
            msg = msg[cut..].to_owned();
        }
        msg
    }

    /// Reaps exited processes; returns whether anything changed.
    fn reap(&mut self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        let inits = spec.init_containers.clone().unwrap_or_default();
        for (i, c) in inits.iter().chain(spec.containers.iter()).enumerate() {
            let (is_init, idx) = if i < inits.len() {
                (true, i)
            } else {
                (false, i - inits.len())
            };
            let exit = {
                let run = if is_init {
                    &mut self.init[idx]
                } else {
                    &mut self.containers[idx]
                };
                match run.child.as_mut().map(Child::try_wait) {
                    Some(Ok(Some(status))) => Some(status.code().unwrap_or(128 + 9)),
                    _ => None,
                }
            };
            if let Some(code) = exit {
                let message = self.termination_message(c, code);
                let run = if is_init {
                    &mut self.init[idx]
                } else {
                    &mut self.containers[idx]
                };
                run.child = None;
                run.pid = None;
                run.ready = false;
                run.terminated = Some(Terminated {
                    exit_code: code,
                    reason: if code == 0 {
                        "Completed".into()
                    } else {
                        "Error".into()
                    },
                    message,
                    started_at: run.started_at.unwrap_or_else(Timestamp::now),
                    finished_at: Timestamp::now(),
                });
                tracing::info!(pod = %pod.name_any(), container = %c.name, exit_code = code, "container exited");
            }
        }
    }

    async fn step(&mut self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        if self.phase_done(&policy).is_some() {
            return;
        }
        let sources = self.sources(pod).await;
        self.ensure_tokens(pod).await;
        if let Err(message) = self.sync_volumes(pod, &sources, parse_lag(pod)) {
            for run in self.init.iter_mut().chain(self.containers.iter_mut()) {
                if run.child.is_none() && run.terminated.is_none() {
                    run.waiting = Some(("ContainerCreating".into(), message.clone()));
                }
            }
            self.report(pod).await;
            return;
        }
        let _ = hosts::write(
            &self.dir.join("hosts"),
            &self.client,
            pod,
            &self.address.to_string(),
        )
        .await;
        if standin::applies(&self.cfg.standin_images, pod) {
            let _ = standin::write_files(&self.dir);
        }
        self.reap(pod);

        // Init containers, one at a time.
        if !self.init_done {
            let inits = spec.init_containers.clone().unwrap_or_default();
            for i in 0..inits.len() {
                let done_ok = self.init[i].terminated.as_ref().is_some_and(|t| t.exit_code == 0);
                if done_ok {
                    continue;
                }
                if self.init[i].child.is_some() {
                    break;
                }
                let failed = self.init[i].terminated.is_some();
                if failed && policy == "Never" {
                    break;
                }
                if !failed || self.backoff_elapsed(true, i) {
                    if let Err((reason, msg)) = self.start_container(pod, &sources, i, true).await {
                        self.init[i].waiting = Some((reason, msg));
                    } else if failed {
                        self.init[i].restarts += 1;
                    }
                }
                break;
            }
            self.init_done = self
                .init
                .iter()
                .all(|r| r.terminated.as_ref().is_some_and(|t| t.exit_code == 0));
        }
        if self.init_done {
            for i in 0..spec.containers.len() {
                let run = &self.containers[i];
                if run.child.is_some() {
                    continue;
                }
                let restart = match (&run.terminated, policy.as_str()) {
                    (None, _) => true,
                    (Some(_), "Always") => true,
                    (Some(t), "OnFailure") => t.exit_code != 0,
                    _ => false,
                };
                if !restart {
                    continue;
                }
                let is_restart = run.terminated.is_some();
                if is_restart && !self.backoff_elapsed(false, i) {
                    continue;
                }
                match self.start_container(pod, &sources, i, false).await {
                    Ok(()) if is_restart => self.containers[i].restarts += 1,
                    Ok(()) => {}
                    Err((reason, msg)) => self.containers[i].waiting = Some((reason, msg)),
                }
            }
            self.probe(pod).await;
        }
        self.report(pod).await;
    }

    /// CrashLoopBackOff, shortened for a test node: 1s·2^restarts, at most 30s.
    fn backoff_elapsed(&mut self, init: bool, i: usize) -> bool {
        let run = if init {
            &mut self.init[i]
        } else {
            &mut self.containers[i]
        };
        let delay = Duration::from_secs(1u64 << run.restarts.clamp(0, 5) as u32).min(Duration::from_secs(30));
        match run.restart_at {
            None => {
                run.restart_at = Some(Instant::now() + delay);
                run.waiting = Some((
                    "CrashLoopBackOff".into(),
                    format!("back-off {delay:?} restarting failed container"),
                ));
                false
            }
            Some(at) if Instant::now() >= at => {
                run.restart_at = None;
                true
            }
            Some(_) => false,
        }
    }

    async fn probe(&mut self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        let ip = IpAddr::V4(self.address);
        for (i, c) in spec.containers.iter().enumerate() {
            let run = &mut self.containers[i];
            if run.child.is_none() {
                continue;
            }
            let started_for = run
                .started_at
                .map(|s| (Timestamp::now() - s).get_seconds())
                .unwrap_or_default();
            // startup probe first (gates the others), then readiness; liveness restarts the container.
            if !run.started {
                match &c.startup_probe {
                    None => run.started = true,
                    Some(p) => {
                        if started_for < i64::from(p.initial_delay_seconds.unwrap_or(0))
                            || !due(run.last_probe, p.period_seconds.unwrap_or(10))
                        {
                            continue;
                        }
                        run.last_probe = Some(Instant::now());
                        if probe::run(p, c, ip, run.pid).await.is_ok() {
                            run.started = true;
                            run.last_probe = None;
                        }
                        continue;
                    }
                }
            }
            match &c.readiness_probe {
                None => run.ready = true,
                Some(p) => {
                    let delay = i64::from(p.initial_delay_seconds.unwrap_or(0));
                    // Probe quickly until first ready, then at the pod's period.
                    let period = if run.ready {
                        p.period_seconds.unwrap_or(10)
                    } else {
                        1
                    };
                    if started_for >= delay && due(run.last_probe, period) {
                        run.last_probe = Some(Instant::now());
                        match probe::run(p, c, ip, run.pid).await {
                            Ok(()) => {
                                run.probe_failures = 0;
                                run.ready = true;
                            }
                            Err(why) => {
                                run.probe_failures += 1;
                                if run.probe_failures >= p.failure_threshold.unwrap_or(3) || !run.ready {
                                    if run.ready {
                                        tracing::info!(pod = %pod.name_any(), container = %c.name, %why, "readiness probe failed");
                                    }
                                    run.ready = false;
                                }
                            }
                        }
                    }
                }
            }
            if let Some(p) = &c.liveness_probe
                && due(run.last_liveness, p.period_seconds.unwrap_or(10))
            {
                run.last_liveness = Some(Instant::now());
                match probe::run(p, c, ip, run.pid).await {
                    Ok(()) => run.liveness_failures = 0,
                    Err(why) => {
                        run.liveness_failures += 1;
                        if run.liveness_failures >= p.failure_threshold.unwrap_or(3) {
                            tracing::warn!(pod = %pod.name_any(), container = %c.name, %why, "liveness probe failed; restarting");
                            if let Some(pid) = run.pid {
                                signal_group(pid, "KILL");
                            }
                        }
                    }
                }
            }
        }
    }

    fn container_status(&self, c: &Container, run: &ContainerRun) -> serde_json::Value {
        let state = if run.child.is_some() {
            json!({"running": {"startedAt": run.started_at.map(|t| t.to_string())}})
        } else if let Some((reason, message)) = &run.waiting {
            json!({"waiting": {"reason": reason, "message": message}})
        } else if let Some(t) = &run.terminated {
            terminated_json(t)
        } else {
            json!({"waiting": {"reason": "ContainerCreating"}})
        };
        let mut status = json!({
            "name": c.name,
            "image": c.image.clone().unwrap_or_default(),
            "imageID": "",
            "containerID": run.pid.map(|p| format!("local-node://{p}")),
            "restartCount": run.restarts,
            "ready": run.child.is_some() && run.ready,
            "started": run.child.is_some() && run.started,
            "state": state,
        });
        if let Some(t) = &run.last_terminated {
            status["lastState"] = terminated_json(t);
        }
        status
    }

    async fn report(&mut self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        let inits = spec.init_containers.clone().unwrap_or_default();
        let phase = self.phase_done(&policy).unwrap_or_else(|| {
            if self.init_done
                && self
                    .containers
                    .iter()
                    .any(|c| c.child.is_some() || c.terminated.is_some())
            {
                "Running"
            } else {
                "Pending"
            }
        });
        let ready = phase == "Running" && self.containers.iter().all(|c| c.child.is_some() && c.ready);
        let cond = |t: &str, ok: bool, reason: Option<&str>| {
            let mut c = json!({"type": t, "status": if ok { "True" } else { "False" }});
            if let Some(r) = reason {
                c["reason"] = json!(r);
            }
            c
        };
        let not_ready_reason = if phase == "Succeeded" || phase == "Failed" {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        };
        let mut status = json!({
            "phase": phase,
            "hostIP": self.cfg.bridge.host.to_string(),
            "hostIPs": [{"ip": self.cfg.bridge.host.to_string()}],
            "podIP": self.address.to_string(),
            "podIPs": [{"ip": self.address.to_string()}],
            "startTime": self.start_time.to_string(),
            "conditions": [
                cond("PodScheduled", true, None),
                cond("Initialized", self.init_done, None),
                cond("ContainersReady", ready, (!ready).then_some(not_ready_reason)),
                cond("Ready", ready, (!ready).then_some(not_ready_reason)),
            ],
            "containerStatuses": spec.containers.iter().zip(&self.containers).map(|(c, r)| self.container_status(c, r)).collect::<Vec<_>>(),
        });
        if !inits.is_empty() {
            status["initContainerStatuses"] = json!(
                inits
                    .iter()
                    .zip(&self.init)
                    .map(|(c, r)| self.container_status(c, r))
                    .collect::<Vec<_>>()
            );
        }
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        // Transition times only change with the status, as the kubelet does.
        let mut with_times = status.clone();
        let now = Timestamp::now().to_string();
        if let Some(conds) = with_times["conditions"].as_array_mut() {
            let old = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            for c in conds {
                let same = old.iter().find(|o| {
                    Some(o.type_.as_str()) == c["type"].as_str()
                        && Some(o.status.as_str()) == c["status"].as_str()
                });
                c["lastTransitionTime"] = json!(
                    same.and_then(|o| o.last_transition_time.as_ref().map(|t| t.0.to_string()))
                        .unwrap_or_else(|| now.clone())
                );
            }
        }
        match self
            .pods
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": with_times})),
            )
            .await
        {
            Ok(_) => self.last_status = Some(status),
            Err(error) => tracing::warn!(pod = %pod.name_any(), %error, "cannot report pod status"),
        }
        if phase == "Succeeded" || phase == "Failed" {
            // The pod is done: its sandbox goes (the volumes stay until the pod is deleted).
            if let Some(net) = self.net.as_ref() {
                net.remove();
            }
        }
    }

    async fn fail_pod(&mut self, pod: &Pod, reason: &str, message: &str) {
        let status = json!({"status": {"phase": "Failed", "reason": reason, "message": message}});
        let _ = self
            .pods
            .patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&status))
            .await;
    }

    async fn stop_all(&mut self, grace: Duration) {
        let pids: Vec<u32> = self
            .init
            .iter()
            .chain(self.containers.iter())
            .filter_map(|r| r.pid)
            .collect();
        for pid in &pids {
            signal_group(*pid, "TERM");
        }
        let deadline = Instant::now() + grace;
        for run in self.init.iter_mut().chain(self.containers.iter_mut()) {
            if let Some(child) = run.child.as_mut() {
                let left = deadline.saturating_duration_since(Instant::now());
                if tokio::time::timeout(left, child.wait()).await.is_err() {
                    if let Some(pid) = run.pid {
                        signal_group(pid, "KILL");
                    }
                    let _ = child.wait().await;
                }
            }
            run.child = None;
        }
    }
}

fn due(last: Option<Instant>, period: i32) -> bool {
    last.is_none_or(|l| l.elapsed() >= Duration::from_secs(period.max(1) as u64))
}

fn terminated_json(t: &Terminated) -> serde_json::Value {
    let mut v = json!({"terminated": {
        "exitCode": t.exit_code, "reason": t.reason,
        "startedAt": t.started_at.to_string(), "finishedAt": t.finished_at.to_string(),
    }});
    if !t.message.is_empty() {
        v["terminated"]["message"] = json!(t.message);
    }
    v
}

/// Signals the process group led by `pid` (each container is started as a group leader).
fn signal_group(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{pid}")])
        .status();
}
