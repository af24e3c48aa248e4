//! The operator as the chart installs it, on a fresh local control plane: the chart's ServiceAccounts and RBAC
//! (default values), and each controller as a separate process with its own ServiceAccount token and leader
//! election in the release namespace, with the chart's timings. Replicas can be started, stopped and measured
//! one by one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use kube::Client;

use test_support::cluster::{Cluster, named_cluster, repo_root};
use test_support::process::ControllerProcess;

use crate::procstat::{self, Usage};

/// The namespace the controllers' ServiceAccounts and Leases live in (the chart's release namespace).
pub const OPERATOR_NS: &str = "keystone-operator";
/// The three controllers, by short name.
pub const CONTROLLERS: [&str; 3] = ["api", "fernet", "db"];

/// The audit-log user of a controller.
pub fn user(controller: &str) -> String {
    format!("system:serviceaccount:{OPERATOR_NS}:keystone-operator-{controller}")
}

/// One running controller process.
pub struct Replica {
    /// `api`, `fernet` or `db`.
    pub controller: &'static str,
    /// Its POD_NAME (the base of its leader-election identity).
    pub name: String,
    /// The process.
    pub process: ControllerProcess,
}

impl Replica {
    /// CPU seconds and memory of the process.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        procstat::usage(self.process.pid())
    }

    /// The value of metric `keystone_<controller>_<suffix>` (a counter or gauge without labels), if exported.
    pub async fn metric(&self, suffix: &str) -> Option<f64> {
        let name = format!("keystone_{}_{suffix} ", self.controller);
        self.process
            .metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&name)?.trim().parse().ok())
    }
}

/// A control plane with the operator installed.
pub struct Operator {
    /// The control plane.
    pub cluster: Cluster,
    /// Its admin client.
    pub admin: Client,
    /// The running replicas, in start order.
    pub replicas: Vec<Replica>,
    name: String,
    bin_dir: PathBuf,
    started: usize,
}

fn cache_dir() -> PathBuf {
    if let Ok(c) = std::env::var("KEYSTONE_OPERATOR_CACHE") {
        return PathBuf::from(c);
    }
    let base = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache"));
    base.join("keystone-operator")
}

fn cluster_script(args: &[&str]) {
    let _ = Command::new(repo_root().join("hack/local-cluster.sh"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs a `hack/` script that prints a path on its last line (a tool it built or found in the cache).
pub fn tool(script: &str) -> anyhow::Result<PathBuf> {
    let out = Command::new(repo_root().join(script))
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {script}"))?;
    anyhow::ensure!(out.status.success(), "{script} failed");
    Ok(PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .lines()
            .last()
            .unwrap_or_default(),
    ))
}

/// The chart's ServiceAccounts and RBAC (default values), applied with kubectl.
fn install_rbac(kubeconfig: &Path) -> anyhow::Result<()> {
    let helm = tool("hack/build-helm.sh")?;
    let kubectl = tool("hack/build-control-plane.sh")?.join("kubectl");
    let rendered = Command::new(&helm)
        .args(["template", "keystone-operator"])
        .arg(repo_root().join("charts/keystone-operator"))
        .args(["--namespace", OPERATOR_NS])
        .args([
            "--show-only",
            "templates/serviceaccounts.yaml",
            "--show-only",
            "templates/rbac.yaml",
        ])
        .output()?;
    anyhow::ensure!(
        rendered.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let _ = Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["create", "namespace", OPERATOR_NS])
        .output()?;
    let mut apply = Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["apply", "--server-side", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    std::io::Write::write_all(apply.stdin.as_mut().context("stdin")?, &rendered.stdout)?;
    anyhow::ensure!(
        apply.wait()?.success(),
        "kubectl apply of the chart's RBAC failed"
    );
    Ok(())
}

impl Operator {
    /// Starts control plane `name` from scratch (its old state deleted; `--audit` when `audit`) and installs
    /// the chart's RBAC; no controller runs yet.
    pub async fn install(name: &str, audit: bool, bin_dir: &Path) -> anyhow::Result<Operator> {
        cluster_script(&["down", "--name", name]);
        let dir = cache_dir().join("clusters").join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        let extra: &[&str] = if audit { &["--audit"] } else { &[] };
        let cluster = named_cluster(name, extra).await;
        let admin = cluster.client().await;
        install_rbac(&cluster.kubeconfig)?;
        Ok(Operator {
            cluster,
            admin,
            replicas: Vec::new(),
            name: name.to_owned(),
            bin_dir: bin_dir.to_owned(),
            started: 0,
        })
    }

    /// Starts one more replica of `controller` and waits until it answers /readyz (a standby is ready too).
    pub async fn start(&mut self, controller: &'static str) -> anyhow::Result<&Replica> {
        let kubeconfig = self
            .cluster
            .service_account_kubeconfig(OPERATOR_NS, &format!("keystone-operator-{controller}"))
            .await;
        let mut args = vec![
            "--leader-elect",
            "--leader-election-namespace",
            OPERATOR_NS,
            "--log-level",
            "warn",
        ];
        if controller == "fernet" {
            // Low enough for the rotation benchmark's 30 s interval; no other phase rotates.
            args.extend(["--min-rotation-interval", "20s"]);
        }
        let binary = self.bin_dir.join(format!("keystone-{controller}-controller"));
        self.started += 1;
        let name = format!("bench-{controller}-{}", self.started);
        let mut process = ControllerProcess::start_with_env(
            &binary.to_string_lossy(),
            &kubeconfig,
            None,
            &args,
            &[("POD_NAME".to_owned(), name.clone())],
        );
        process.wait_ready().await;
        self.replicas.push(Replica {
            controller,
            name,
            process,
        });
        self.replicas.last().context("just pushed")
    }

    /// One replica of each controller.
    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        for c in CONTROLLERS {
            self.start(c).await?;
        }
        Ok(())
    }

    /// Stops replica `index` with `signal` (`TERM` as Kubernetes does, `KILL` as a crash or OOM kill does),
    /// waits for it to exit and forgets it.
    pub async fn stop(&mut self, index: usize, signal: &str) -> Replica {
        let mut r = self.replicas.remove(index);
        r.process.signal(signal);
        r.process.wait_exit(Duration::from_secs(60)).await;
        r
    }

    /// Stops every replica gracefully.
    pub async fn stop_all(&mut self) {
        while !self.replicas.is_empty() {
            self.stop(0, "TERM").await;
        }
    }

    /// The replica of `controller` holding the lease, by its `keystone_<c>_leader` gauge.
    pub async fn leader(&self, controller: &str) -> Option<usize> {
        for (i, r) in self.replicas.iter().enumerate() {
            if r.controller == controller && r.metric("leader").await == Some(1.0) {
                return Some(i);
            }
        }
        None
    }

    /// CPU seconds used so far by the control plane's processes (etcd, kube-apiserver,
    /// kube-controller-manager), for context: most of the work the operator causes is theirs.
    pub fn control_plane_cpu(&self) -> f64 {
        let dir = self.cluster.kubeconfig.with_file_name("");
        ["etcd", "kube-apiserver", "kube-controller-manager"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(dir.join(format!("{p}.pid"))).ok())
            .filter_map(|pid| pid.trim().parse::<u32>().ok())
            .filter_map(|pid| procstat::usage(pid).ok())
            .map(|u| u.cpu_seconds)
            .sum()
    }

    /// Stops the replicas and the control plane.
    pub async fn uninstall(mut self) {
        self.stop_all().await;
        cluster_script(&["down", "--name", &self.name]);
    }
}
