//! The real node tier (`make test-node`, root): a real kubelet with containerd runs the operator as users run
//! it — installed by Helm from the images `hack/images.sh` built here — and the sample KeystoneAPI with the
//! Keystone image built from `hack/images/keystone` (Debian's Keystone under httpd + mod_wsgi, with kolla's own
//! scripts as in the TCIB image). `hack/test-node.sh` starts the node, loads the images and runs this with
//! `KUBECONFIG` and `HELM` set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use test_support::cluster::repo_root;

const OPERATOR_NS: &str = "keystone-operator";
const NS: &str = "openstack";
const KEYSTONE_IMAGE: &str = "localhost/keystone-operator/openstack-keystone:dev";

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// Runs a command that must succeed; its stdout.
fn ok(program: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(program, args, stdin);
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kubectl(args: &[&str]) -> String {
    ok("kubectl", args, None)
}

fn kubectl_in(args: &[&str], stdin: &str) -> String {
    ok("kubectl", args, Some(stdin))
}

/// Polls `check` until it returns Some, at most `timeout`.
fn until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn restricted_namespace(name: &str) {
    kubectl_in(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    \
             pod-security.kubernetes.io/enforce: restricted\n    pod-security.kubernetes.io/warn: restricted\n"
        ),
    );
}

/// The admin password of the sample Secret.
fn admin_password() -> String {
    let b64 = kubectl(&[
        "-n",
        NS,
        "get",
        "secret",
        "osp-secret",
        "-o",
        "jsonpath={.data.AdminPassword}",
    ]);
    let out = ok("base64", &["-d"], Some(&b64));
    assert!(!out.is_empty());
    out
}

#[test]
fn helm_installed_operator_runs_the_sample_keystone_on_the_real_node() {
    let helm = std::env::var("HELM").expect("HELM: the helm binary (hack/test-node.sh sets it)");
    let t0 = Instant::now();

    // The operator as users install it, in a namespace enforcing the restricted Pod Security profile: the
    // apiserver admits its pods only if every one of them meets it.
    restricted_namespace(OPERATOR_NS);
    ok(
        &helm,
        &[
            "upgrade",
            "--install",
            "keystone-operator",
            "charts/keystone-operator",
            "-n",
            OPERATOR_NS,
            "--set",
            "image.registry=localhost/keystone-operator",
            "--set",
            "image.tag=dev",
            "--set",
            "image.pullPolicy=Never",
            "--wait",
            "--timeout",
            "5m",
        ],
        None,
    );
    for c in ["api", "fernet", "db"] {
        let deploy = format!("deploy/keystone-operator-{c}");
        kubectl(&[
            "-n",
            OPERATOR_NS,
            "rollout",
            "status",
            &deploy,
            "--timeout",
            "120s",
        ]);
        // leading: the controller's Lease is held by its pod
        let lease = format!("keystone-{c}");
        let holder = until(
            &format!("the {c} controller to lead"),
            Duration::from_secs(60),
            || {
                let h = run(
                    "kubectl",
                    &[
                        "-n",
                        OPERATOR_NS,
                        "get",
                        "lease",
                        &lease,
                        "-o",
                        "jsonpath={.spec.holderIdentity}",
                    ],
                    None,
                );
                let h = String::from_utf8_lossy(&h.stdout).into_owned();
                (!h.is_empty()).then_some(h)
            },
        );
        assert!(
            holder.starts_with(&format!("keystone-operator-{c}-")),
            "{lease} held by {holder}"
        );
    }
    println!(
        "node: three controller pods Ready and leading {:?} after the install began",
        t0.elapsed()
    );

    // MariaDB, memcached and the sample KeystoneAPI (two replicas, the local Keystone image) in a restricted
    // namespace.
    restricted_namespace(NS);
    kubectl(&[
        "-n",
        NS,
        "apply",
        "-f",
        "manifests/samples/osp-secret.yaml",
        "-f",
        "e2e/node/infra.yaml",
    ]);
    for d in ["openstack-mariadb", "memcached"] {
        kubectl(&[
            "-n",
            NS,
            "rollout",
            "status",
            &format!("deploy/{d}"),
            "--timeout",
            "180s",
        ]);
    }
    let sample = std::fs::read_to_string(repo_root().join("manifests/samples/keystoneapi.yaml")).unwrap();
    let sample = sample
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("containerImage:") {
                format!("  containerImage: {KEYSTONE_IMAGE}")
            } else if l.trim_start().starts_with("replicas:") {
                "  replicas: 2".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let applied = Instant::now();
    kubectl_in(&["-n", NS, "apply", "-f", "-"], &sample);
    let ready = run(
        "kubectl",
        &[
            "-n",
            NS,
            "wait",
            "keystoneapi/keystone",
            "--for=condition=Ready",
            "--timeout=600s",
        ],
        None,
    );
    if !ready.status.success() {
        let conditions = run(
            "kubectl",
            &[
                "-n",
                NS,
                "get",
                "keystoneapi",
                "keystone",
                "-o",
                "jsonpath={range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{\"\\n\"}{end}",
            ],
            None,
        );
        let pods = run("kubectl", &["-n", NS, "get", "pods", "-o", "wide"], None);
        panic!(
            "the sample KeystoneAPI did not become Ready:\n{}\n{}",
            String::from_utf8_lossy(&conditions.stdout),
            String::from_utf8_lossy(&pods.stdout)
        );
    }
    println!(
        "node: sample KeystoneAPI Ready {:?} after apply",
        applied.elapsed()
    );

    // db-create, db-sync and bootstrap ran as Job pods; `kubectl logs` shows keystone-manage's own output.
    let sync_job = kubectl(&[
        "-n",
        NS,
        "get",
        "jobs",
        "-l",
        "app.kubernetes.io/component=db-sync",
        "-o",
        "jsonpath={.items[-1:].metadata.name}",
    ]);
    assert!(!sync_job.is_empty(), "no db-sync Job");
    let logs = kubectl(&["-n", NS, "logs", &format!("job/{sync_job}")]);
    assert!(
        logs.contains("keystone") || logs.contains("alembic"),
        "db-sync logs: {logs}"
    );

    // A client pod issues a token through the public Service's DNS name.
    // e2e/node/client.yaml: the client pod users run (restricted profile)
    kubectl(&["-n", NS, "apply", "-f", "e2e/node/client.yaml"]);
    kubectl(&[
        "-n",
        NS,
        "wait",
        "pod/client",
        "--for=condition=Ready",
        "--timeout=120s",
    ]);
    let password = admin_password();
    let issue = format!(
        "openstack --os-auth-url http://keystone-public.{NS}.svc:5000/v3 --os-identity-api-version 3 \
         --os-username admin --os-password \"$(cat)\" --os-project-name admin --os-user-domain-name Default \
         --os-project-domain-name Default token issue -f value -c id"
    );
    let token = kubectl_in(
        &["-n", NS, "exec", "-i", "client", "--", "sh", "-c", &issue],
        &password,
    )
    .trim()
    .to_owned();
    assert!(token.len() > 100, "token: {token}");

    // It validates on every replica (each pod directly, by its address).
    let ips = kubectl(&[
        "-n",
        NS,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/component=api",
        "-o",
        "jsonpath={.items[*].status.podIP}",
    ]);
    let ips: Vec<&str> = ips.split_whitespace().collect();
    assert_eq!(ips.len(), 2, "two API pods: {ips:?}");
    for ip in &ips {
        let check = format!(
            "T=$(cat); curl -s -o /dev/null -w '%{{http_code}}' -H \"X-Auth-Token: $T\" -H \"X-Subject-Token: $T\" \
             http://{ip}:5000/v3/auth/tokens"
        );
        let code = kubectl_in(
            &["-n", NS, "exec", "-i", "client", "--", "sh", "-c", &check],
            &token,
        );
        assert_eq!(code.trim(), "200", "token validation on {ip}");
    }
    println!(
        "node: token issued through keystone-public.{NS}.svc, validated on {ips:?}; total {:?}",
        t0.elapsed()
    );
}
