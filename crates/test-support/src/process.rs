//! A controller binary running as a separate process against a test control plane, with its output captured
//! (for assertions and for scanning logs for secrets) and its health endpoint at hand.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::cluster::Cluster;
use crate::{http, wait};

/// Leader-election flags with short timings (lease 4s, renew deadline 3s, retry 500ms) and the Lease in
/// `namespace`, for tests that kill or outlive a leader.
pub fn fast_leader_election(namespace: &str) -> Vec<String> {
    [
        "--leader-elect",
        "--leader-election-namespace",
        namespace,
        "--leader-election-lease-duration",
        "4s",
        "--leader-election-renew-deadline",
        "3s",
        "--leader-election-retry-period",
        "500ms",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A running controller process.
pub struct ControllerProcess {
    child: Child,
    /// Address of its /metrics, /healthz, /readyz server.
    pub addr: SocketAddr,
    output: Arc<Mutex<String>>,
}

fn capture(stream: impl AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut out = into.lock().expect("output lock");
            out.push_str(&line);
            out.push('\n');
        }
    });
}

impl ControllerProcess {
    /// Starts `binary` against `cluster`, restricted to `namespace` when given, with `extra` arguments.
    pub fn start(binary: &str, cluster: &Cluster, namespace: Option<&str>, extra: &[&str]) -> Self {
        Self::start_with_kubeconfig(binary, &cluster.kubeconfig, namespace, extra)
    }

    /// Like [`ControllerProcess::start`], with another identity (e.g. a ServiceAccount's kubeconfig).
    pub fn start_with_kubeconfig(
        binary: &str,
        kubeconfig: &Path,
        namespace: Option<&str>,
        extra: &[&str],
    ) -> Self {
        Self::start_with_env(binary, kubeconfig, namespace, extra, &[])
    }

    /// Like [`Self::start_with_kubeconfig`], with extra environment variables (as a pod spec's `env` would
    /// set them).
    pub fn start_with_env(
        binary: &str,
        kubeconfig: &Path,
        namespace: Option<&str>,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], http::free_port()).into();
        let mut cmd = Command::new(Path::new(binary));
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .args([
                "--metrics-addr",
                &addr.to_string(),
                "--log-format",
                "json",
                "--crd-wait",
                "5s",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(ns) = namespace {
            cmd.args(["--namespace", ns]);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(s) = child.stdout.take() {
            capture(s, output.clone());
        }
        if let Some(s) = child.stderr.take() {
            capture(s, output.clone());
        }
        Self { child, addr, output }
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.output.lock().expect("output lock").clone()
    }

    /// Waits until /readyz answers 200 (panics with the output if the process exits first).
    pub async fn wait_ready(&mut self) {
        let addr = self.addr;
        let output = self.output.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "controller exited with {status} before ready:\n{}",
                    output.lock().expect("lock")
                );
            }
            if let Ok((200, _)) = http::get(addr, "/readyz").await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not ready after 60s:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The /metrics page.
    pub async fn metrics(&self) -> String {
        http::get(self.addr, "/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Waits until a metric line starting with `prefix` has a value ≥ `min`.
    pub async fn wait_metric(&self, prefix: &str, min: f64) {
        wait::until(&format!("{prefix} >= {min}"), Duration::from_secs(60), || async {
            let page = self.metrics().await;
            let v = page
                .lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .fold(0.0, f64::max);
            if v >= min {
                Ok(())
            } else {
                Err(format!("{prefix} = {v}"))
            }
        })
        .await;
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running process has a pid")
    }

    /// Sends a signal (`TERM`, `KILL`, …) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill -{name} failed");
    }

    /// The exit status, if the process has exited.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("still running after {timeout:?}:\n{}", self.output()))
            .expect("wait")
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub async fn crash(mut self) -> String {
        self.signal("KILL");
        let _ = self.wait_exit(Duration::from_secs(10)).await;
        self.output()
    }
}
