//! Lifecycle checks for the controller binaries, shared by the three controller crates' tests: start against
//! the real control plane, /healthz, /readyz, /metrics with the reconcile counter, SIGTERM → exit 0; and
//! start without the CRD → non-zero exit with the install hint.

use std::time::Duration;

use kube::api::{DynamicObject, PostParams};
use kube::core::ApiResource;
use kube::{Api, CustomResourceExt};

use keystone_types::KeystoneAPI;

use crate::cluster::{TestNamespace, bare_cluster, test_cluster};
use crate::http;
use crate::process::ControllerProcess;

/// The path of a workspace binary built next to the running test (`cargo test --workspace` builds the
/// three controllers' binaries into the same target directory).
pub fn sibling(name: &str) -> String {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target directory")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built; run the tests with `cargo test --workspace`",
        path.display()
    );
    path.to_string_lossy().into_owned()
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
    let mut proc = ControllerProcess::start(binary, cluster, Some(&ns.name), &[]);
    proc.wait_ready().await;

    let (code, _) = http::get(proc.addr, "/healthz").await.expect("healthz");
    assert_eq!(code, 200);
    let metrics = proc.metrics().await;
    let before =
        reconcile_runs(&metrics, short).unwrap_or_else(|| panic!("no reconcile counter in:\n{metrics}"));
    assert!(
        metrics.contains(&format!("keystone_{short}_ready 1"))
            && metrics.contains(&format!("keystone_{short}_leader 1")),
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
    proc.wait_metric(
        &format!("keystone_{short}_reconcile_runs_total"),
        (before + 1) as f64,
    )
    .await;

    proc.signal("TERM");
    let status = proc.wait_exit(Duration::from_secs(20)).await;
    let out = proc.output();
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
    let mut proc = ControllerProcess::start(binary, cluster, None, &[]);
    let status = proc.wait_exit(Duration::from_secs(30)).await;
    // the output readers may still be draining the pipes
    let out = crate::wait::until(
        "the install hint in the output",
        Duration::from_secs(5),
        || async {
            let out = proc.output();
            if out.contains("helm install") {
                Ok(out)
            } else {
                Err(out)
            }
        },
    )
    .await;
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
