//! Lifecycle checks for the controller binaries, shared by the three controller crates' tests: start against
//! the real control plane, /healthz, /readyz, /metrics with the reconcile counter, SIGTERM → exit 0; and
//! start without the CRD → non-zero exit with the install hint.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use kube::api::{DynamicObject, PostParams};
use kube::core::ApiResource;
use kube::{Api, CustomResourceExt};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use keystone_types::KeystoneAPI;

use crate::cluster::{Cluster, TestNamespace, bare_cluster, test_cluster};
use crate::{http, wait};

fn spawn(binary: &Path, cluster: &Cluster, addr: SocketAddr, namespace: Option<&str>) -> Child {
    let mut cmd = Command::new(binary);
    cmd.env("KUBECONFIG", &cluster.kubeconfig)
        .env_remove("RUST_LOG")
        .args([
            "--metrics-addr",
            &addr.to_string(),
            "--log-format",
            "compact",
            "--crd-wait",
            "5s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(ns) = namespace {
        cmd.args(["--namespace", ns]);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
}

async fn output_of(child: &mut Child) -> String {
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out).await;
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut out).await;
    }
    out
}

fn reconcile_runs(metrics: &str, short: &str) -> Option<u64> {
    let name = format!("keystone_{short}_reconcile_runs_total ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&name))
        .and_then(|v| v.trim().parse().ok())
}

/// Starts `binary`, waits for /readyz, checks /healthz and /metrics (the counter moves when a KeystoneAPI
/// appears), then sends SIGTERM and expects exit code 0.
pub async fn check_lifecycle(binary: &str, short: &str) {
    let cluster = test_cluster().await;
    let client = cluster.client().await;
    let ns = TestNamespace::new(&client, &format!("bin-{short}")).await;
    let addr: SocketAddr = ([127, 0, 0, 1], http::free_port()).into();
    let mut child = spawn(Path::new(binary), cluster, addr, Some(&ns.name));

    wait::until("/readyz to answer 200", Duration::from_secs(60), || async {
        match http::get(addr, "/readyz").await {
            Ok((200, _)) => Ok(()),
            Ok((code, body)) => Err(format!("{code}: {body}")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let (code, _) = http::get(addr, "/healthz").await.expect("healthz");
    assert_eq!(code, 200);
    let (code, metrics) = http::get(addr, "/metrics").await.expect("metrics");
    assert_eq!(code, 200);
    let before =
        reconcile_runs(&metrics, short).unwrap_or_else(|| panic!("no reconcile counter in:\n{metrics}"));
    assert!(
        metrics.contains(&format!("keystone_{short}_ready 1")),
        "{metrics}"
    );

    // A new KeystoneAPI in the watched namespace must be reconciled.
    let ar = ApiResource::erase::<KeystoneAPI>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &ar);
    let obj: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": KeystoneAPI::api_resource().api_version, "kind": "KeystoneAPI",
        "metadata": { "name": "keystone" }, "spec": {}
    }))
    .expect("object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create KeystoneAPI");
    wait::until(
        "the reconcile counter to move",
        Duration::from_secs(30),
        || async {
            let (_, metrics) = http::get(addr, "/metrics").await.map_err(|e| e.to_string())?;
            match reconcile_runs(&metrics, short) {
                Some(n) if n > before => Ok(()),
                other => Err(format!("runs = {other:?}, before = {before}")),
            }
        },
    )
    .await;

    let pid = child.id().expect("pid").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exit within 20s of SIGTERM")
        .expect("wait");
    let out = output_of(&mut child).await;
    assert!(
        status.success(),
        "exit status {status} after SIGTERM; output:\n{out}"
    );
    assert!(out.contains("shutting down"), "{out}");
    ns.delete().await;
}

/// Starts `binary` against a control plane without the CRD: it must exit non-zero and say how to install it.
pub async fn check_missing_crd(binary: &str) {
    let cluster = bare_cluster().await;
    let addr: SocketAddr = ([127, 0, 0, 1], http::free_port()).into();
    let mut child = spawn(Path::new(binary), cluster, addr, None);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exit within 30s when the CRD is missing")
        .expect("wait");
    let out = output_of(&mut child).await;
    assert!(!status.success(), "exited 0 without the CRD; output:\n{out}");
    assert!(
        out.contains("keystoneapis.keystone.openstack.org is not installed"),
        "{out}"
    );
    assert!(
        out.contains("kubectl apply --server-side -f manifests/crds/"),
        "{out}"
    );
    assert!(out.contains("helm install"), "{out}");
}
