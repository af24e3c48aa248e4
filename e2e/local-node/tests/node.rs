//! The local node on the real control plane (needs root: namespaces, veth, mounts). Pods are created with
//! `nodeName` set to this test binary's node, so the shared control plane's other tests are not affected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use test_support::{TestNamespace, test_cluster, wait};

struct Node {
    name: String,
    state_dir: PathBuf,
    log_dir: PathBuf,
}

static NODE: OnceCell<Node> = OnceCell::const_new();

/// One node per test binary: its own name, bridge and /24, stopped when the test binary exits.
async fn node() -> &'static Node {
    NODE.get_or_init(|| async {
        let cluster = test_cluster().await;
        let pid = std::process::id();
        let name = format!("ln-{pid}");
        let base = std::env::temp_dir().join(format!("keystone-local-node-test-{pid}"));
        let node = Node {
            name: name.clone(),
            state_dir: base.join("state"),
            log_dir: base.join("logs"),
        };
        let subnet = 100 + (pid % 100);
        let log = std::fs::File::create(base.with_extension("log")).unwrap();
        // Not waited for: it outlives this function and exits with the test binary (--parent-pid).
        #[allow(clippy::zombie_processes)]
        let _node = std::process::Command::new(env!("CARGO_BIN_EXE_keystone-local-node"))
            .env("KUBECONFIG", &cluster.kubeconfig)
            .args(["--node-name", &name, "--bridge", &format!("klt{}", pid % 100000)])
            .args(["--host-address", &format!("10.252.{subnet}.1")])
            .arg("--state-dir")
            .arg(&node.state_dir)
            .arg("--log-dir")
            .arg(&node.log_dir)
            .args(["--parent-pid", &pid.to_string(), "--remove-bridge"])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start keystone-local-node");
        let client = cluster.client().await;
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client);
        wait::until("Node registered", Duration::from_secs(30), || async {
            nodes
                .get_opt(&name)
                .await
                .map_err(|e| e.to_string())?
                .map(|_| ())
                .ok_or_else(|| "not yet".to_string())
        })
        .await;
        node
    })
    .await
}

async fn create_pod(client: &Client, ns: &str, spec: Value) -> Api<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut pod: Pod = serde_json::from_value(spec).unwrap();
    pod.spec.as_mut().unwrap().node_name = Some(node().await.name.clone());
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods
}

async fn wait_pod(pods: &Api<Pod>, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
    wait::until(what, Duration::from_secs(60), || async {
        let p = pods.get(name).await.map_err(|e| e.to_string())?;
        if check(&p) {
            Ok(p)
        } else {
            Err(serde_json::to_string(&p.status).unwrap())
        }
    })
    .await
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn secret(client: &Client, ns: &str, name: &str, data: Value) {
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn volumes_env_user_exit_code_and_termination_message() {
    let client = test_cluster().await.client().await;
    let ns = TestNamespace::new(&client, "ln-vol").await;
    secret(&client, &ns.name, "s1", json!({"a": "secret-a", "b": "secret-b"})).await;
    let cm =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}, "data": {"conf": "x=1"}});
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &serde_json::from_value(cm).unwrap())
        .await
        .unwrap();
    let script = r#"set -e
id -u; id -G
stat -c '%a %g' /etc/sec/dir/a.txt
cat /etc/sec/dir/a.txt; echo
[ ! -e /etc/sec/b ] && echo "b not projected"
cat /etc/conf/conf; echo
echo "B=$B C=$C NS=$NS EXP=$EXP"
echo "custom message" > /dev/termination-log
exit 7"#;
    let pods = create_pod(&client, &ns.name, json!({
        "metadata": {"name": "p"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 42425, "runAsGroup": 42425, "fsGroup": 42425},
            "automountServiceAccountToken": false,
            "volumes": [
                {"name": "sec", "secret": {"secretName": "s1", "defaultMode": 0o440, "items": [{"key": "a", "path": "dir/a.txt"}]}},
                {"name": "cfg", "configMap": {"name": "c1", "defaultMode": 0o444}}
            ],
            "containers": [{
                "name": "c", "image": "debian", "command": ["/bin/sh", "-c", script],
                "env": [
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "b"}}},
                    {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "c1", "key": "conf"}}},
                    {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "EXP", "value": "$(NS)-x"}
                ],
                "volumeMounts": [
                    {"name": "sec", "mountPath": "/etc/sec", "readOnly": true},
                    {"name": "cfg", "mountPath": "/etc/conf", "readOnly": true}
                ]
            }]
        }
    })).await;
    let p = wait_pod(&pods, "p", "Failed", |p| phase(p) == "Failed").await;
    let state = p.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap();
    let terminated = state.terminated.unwrap();
    assert_eq!(terminated.exit_code, 7);
    assert_eq!(
        terminated.message.as_deref().map(str::trim),
        Some("custom message")
    );
    let logs = std::fs::read_to_string(
        std::fs::read_dir(&node().await.log_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains(&format!("{}_p_", ns.name)))
            .unwrap()
            .join("c.log"),
    )
    .unwrap();
    for want in [
        "42425\n42425\n",
        "440 42425",
        "secret-a",
        "b not projected",
        "x=1",
        &format!("B=secret-b C=x=1 NS={ns} EXP={ns}-x", ns = ns.name),
    ] {
        assert!(logs.contains(want), "{want:?} not in:\n{logs}");
    }
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_from_the_pods_own_probe_and_two_pods_on_one_port() {
    let client = test_cluster().await.client().await;
    let (a, b) = (
        TestNamespace::new(&client, "ln-port-a").await,
        TestNamespace::new(&client, "ln-port-b").await,
    );
    let server = |name: &str, probe_port: u16| {
        json!({
            "metadata": {"name": name},
            "spec": {
                "automountServiceAccountToken": false,
                "containers": [{
                    "name": "web", "image": "debian",
                    "command": ["/usr/bin/python3", "-m", "http.server", "5000", "--bind", "0.0.0.0", "--directory", "/etc"],
                    "readinessProbe": {"httpGet": {"path": "/hostname", "port": probe_port}, "periodSeconds": 1}
                }]
            }
        })
    };
    let pods_a = create_pod(&client, &a.name, server("web", 5000)).await;
    let pods_b = create_pod(&client, &b.name, server("web", 5000)).await;
    let broken = create_pod(&client, &a.name, server("wrong-probe", 5001)).await;
    let pa = wait_pod(&pods_a, "web", "Ready", ready).await;
    let pb = wait_pod(&pods_b, "web", "Ready", ready).await;
    let (ip_a, ip_b) = (
        pa.status.unwrap().pod_ip.unwrap(),
        pb.status.unwrap().pod_ip.unwrap(),
    );
    assert_ne!(ip_a, ip_b);
    for ip in [&ip_a, &ip_b] {
        let (code, _) = test_support::http::get(format!("{ip}:5000").parse().unwrap(), "/hostname")
            .await
            .unwrap();
        assert_eq!(code, 200, "{ip}");
    }
    // The pod whose probe points at a closed port runs but never becomes Ready.
    let p = wait_pod(&broken, "wrong-probe", "Running", |p| phase(p) == "Running").await;
    assert!(!ready(&p));
    a.delete().await;
    b.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restarts_with_restart_policy_always() {
    let client = test_cluster().await.client().await;
    let ns = TestNamespace::new(&client, "ln-restart").await;
    let pods = create_pod(&client, &ns.name, json!({
        "metadata": {"name": "crash"},
        "spec": {"automountServiceAccountToken": false,
                 "containers": [{"name": "c", "image": "debian", "command": ["/bin/sh", "-c", "sleep 0.2; exit 1"]}]}
    }))
    .await;
    let p = wait_pod(&pods, "crash", "two restarts", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|c| c[0].restart_count >= 2)
    })
    .await;
    let cs = &p.status.unwrap().container_statuses.unwrap()[0];
    assert_eq!(
        cs.last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        1
    );
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_updates_reach_the_volume_atomically_after_the_pods_lag() {
    let client = test_cluster().await.client().await;
    let ns = TestNamespace::new(&client, "ln-lag").await;
    secret(&client, &ns.name, "keys", json!({"0": "old-0", "1": "old-1"})).await;
    let spec = |name: &str, lag: &str| {
        json!({
            "metadata": {"name": name, "annotations": {"local-node.keystone.openstack.org/volume-lag": lag}},
            "spec": {"automountServiceAccountToken": false,
                "volumes": [{"name": "keys", "secret": {"secretName": "keys"}}],
                "containers": [{"name": "c", "image": "debian", "command": ["/bin/sleep", "3600"],
                                "volumeMounts": [{"name": "keys", "mountPath": "/keys", "readOnly": true}]}]}
        })
    };
    let pods = create_pod(&client, &ns.name, spec("prompt", "0s")).await;
    create_pod(&client, &ns.name, spec("lagging", "8s")).await;
    let prompt = wait_pod(&pods, "prompt", "Running", |p| phase(p) == "Running").await;
    let lagging = wait_pod(&pods, "lagging", "Running", |p| phase(p) == "Running").await;
    let volume = |p: &Pod| node_state(p).join("volumes/keys");
    let read = |dir: PathBuf| async move {
        let mut v: Vec<(String, String)> = ["0", "1", "2"]
            .iter()
            .filter_map(|k| {
                std::fs::read_to_string(dir.join(k))
                    .ok()
                    .map(|c| (k.to_string(), c))
            })
            .collect();
        v.sort();
        v
    };
    // A rotation: 0 becomes 2, a new 0 appears.
    Api::<Secret>::namespaced(client.clone(), &ns.name)
        .patch(
            "keys",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"0": "new-0", "2": "old-0"}})),
        )
        .await
        .unwrap();
    let want_new = vec![
        ("0".to_string(), "new-0".to_string()),
        ("1".to_string(), "old-1".to_string()),
        ("2".to_string(), "old-0".to_string()),
    ];
    wait::until(
        "prompt pod sees the rotation",
        Duration::from_secs(20),
        || async {
            let now = read(volume(&prompt)).await;
            if now == want_new {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        },
    )
    .await;
    // The lagging pod still has the complete old set (never a mix), then the new one.
    let old = read(volume(&lagging)).await;
    assert_eq!(
        old,
        vec![
            ("0".to_string(), "old-0".to_string()),
            ("1".to_string(), "old-1".to_string())
        ]
    );
    wait::until(
        "lagging pod sees the rotation",
        Duration::from_secs(30),
        || async {
            let now = read(volume(&lagging)).await;
            if now == want_new {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        },
    )
    .await;
    ns.delete().await;
}

fn node_state(p: &Pod) -> PathBuf {
    NODE.get()
        .unwrap()
        .state_dir
        .join("pods")
        .join(p.metadata.uid.as_ref().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn network_status_is_reported_for_requested_attachments() {
    let client = test_cluster().await.client().await;
    let ns = TestNamespace::new(&client, "ln-nets").await;
    let pods = create_pod(&client, &ns.name, json!({
        "metadata": {"name": "multi", "annotations": {"k8s.v1.cni.cncf.io/networks": "internalapi, other/storage"}},
        "spec": {"automountServiceAccountToken": false,
                 "containers": [{"name": "c", "image": "debian", "command": ["/bin/sleep", "3600"]}]}
    }))
    .await;
    let p = wait_pod(&pods, "multi", "network-status", |p| {
        p.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("k8s.v1.cni.cncf.io/network-status"))
    })
    .await;
    let status: Vec<Value> =
        serde_json::from_str(&p.metadata.annotations.unwrap()["k8s.v1.cni.cncf.io/network-status"]).unwrap();
    let names: Vec<&str> = status.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["local-node", &format!("{}/internalapi", ns.name), "other/storage"]
    );
    assert_eq!(status[1]["interface"], "net1");
    ns.delete().await;
}
