//! The Helm chart: lint, its values schema, strict server-side validation of every rendering against the
//! local apiserver, the restricted Pod Security profile enforced by the apiserver, and the install manifest
//! rendered from it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{Patch, PatchParams};

use packaging::{chart_dir, documents, helm, kubectl, repo_root, run, template};
use test_support::{TestNamespace, test_cluster};

/// Value sets the tests render: defaults, namespaced with a ServiceMonitor, scaled out, election off.
fn variants(watch: &[&str]) -> Vec<Vec<String>> {
    vec![
        vec![],
        vec![
            format!("watchNamespaces={{{}}}", watch.join(",")),
            "metrics.serviceMonitor.enabled=true".into(),
            "metrics.serviceMonitor.labels.release=prometheus".into(),
        ],
        vec![
            "controllers.api.replicas=3".into(),
            "controllers.fernet.replicas=2".into(),
            "controllers.db.enabled=false".into(),
            "logFormat=compact".into(),
            "image.tag=dev".into(),
        ],
        vec!["leaderElection.enabled=false".into()],
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn helm_lint_is_clean_for_every_values_variant() {
    for sets in variants(&["openstack", "tenant-b"]) {
        let mut cmd = Command::new(helm());
        cmd.args(["lint", "--strict"]).arg(chart_dir());
        for s in &sets {
            cmd.args(["--set", s]);
        }
        let out = run(&mut cmd, None);
        assert!(
            out.status.success(),
            "helm lint {sets:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn values_schema_and_template_checks_reject_bad_values_naming_the_field() {
    for (set, expect) in [
        ("controllers.api.replica=2", "'replica' not allowed"),
        ("leaderElection.leaseDuration=15", "/leaderElection/leaseDuration"),
        ("watchNamespaces={Bad_NS}", "/watchNamespaces/0"),
        ("logFormat=text", "/logFormat"),
        (
            "controllers.fernet.minRotationInterval=5 minutes",
            "/controllers/fernet/minRotationInterval",
        ),
        ("metrics.port=80", "/metrics/port"),
    ] {
        let err = template("ko", "ops", &[set]).expect_err(set);
        assert!(err.contains(expect), "{set}: {err}");
    }
    let err = template(
        "ko",
        "ops",
        &["controllers.fernet.replicas=2", "leaderElection.enabled=false"],
    )
    .expect_err("replicas without election");
    assert!(
        err.contains("controllers.fernet.replicas is 2 but leaderElection.enabled is false"),
        "{err}"
    );
}

#[test]
fn rendering_has_one_deployment_and_lease_per_controller_and_scope() {
    let yaml = template("ko", "ops", &["watchNamespaces={a,b}"]).unwrap();
    let docs = documents(&yaml);
    let of = |kind: &str| -> Vec<&serde_yaml::Value> { docs.iter().filter(|d| d["kind"] == kind).collect() };
    let deployments = of("Deployment");
    assert_eq!(deployments.len(), 6, "3 controllers × 2 namespaces");
    for d in &deployments {
        let args: Vec<&str> = d["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(
            args.iter()
                .any(|a| *a == "--namespace=a" || *a == "--namespace=b"),
            "{args:?}"
        );
        assert!(args.contains(&"--leader-elect"), "{args:?}");
    }
    // Roles only in the watched namespaces, plus the lease Roles in the release namespace.
    let mut role_namespaces: Vec<String> = of("Role")
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap().to_owned())
        .collect();
    role_namespaces.sort();
    role_namespaces.dedup();
    assert_eq!(role_namespaces, ["a", "b", "ops"]);
    // Cluster-wide grants are only the CRD read.
    for cr in of("ClusterRole") {
        assert_eq!(
            cr["rules"][0]["resources"][0], "customresourcedefinitions",
            "{cr:?}"
        );
        assert_eq!(cr["rules"].as_sequence().unwrap().len(), 1);
    }
    let lease_names: Vec<String> = of("Role")
        .iter()
        .filter(|r| r["metadata"]["name"].as_str().unwrap().ends_with("-leases"))
        .flat_map(|r| r["rules"][1]["resourceNames"].as_sequence().unwrap().clone())
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        lease_names,
        [
            "keystone-api-a",
            "keystone-api-b",
            "keystone-fernet-a",
            "keystone-fernet-b",
            "keystone-db-a",
            "keystone-db-b"
        ]
    );
}

async fn install_servicemonitor_fixture() {
    let cluster = test_cluster().await;
    let out = run(
        Command::new(kubectl())
            .env("KUBECONFIG", &cluster.kubeconfig)
            .args(["apply", "--server-side", "-f"])
            .arg(repo_root().join("crates/packaging/fixtures/servicemonitor-crd.yaml")),
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // `kubectl wait` fails at once while the new CRD has no status yet: retry.
    test_support::wait::until(
        "ServiceMonitor CRD established",
        std::time::Duration::from_secs(30),
        || async {
            let out = run(
                Command::new(kubectl())
                    .env("KUBECONFIG", &cluster.kubeconfig)
                    .args([
                        "wait",
                        "--for=condition=Established",
                        "--timeout=5s",
                        "crd/servicemonitors.monitoring.coreos.com",
                    ]),
                None,
            );
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rendering_passes_strict_server_side_validation() {
    let cluster = test_cluster().await;
    let client = cluster.client().await;
    install_servicemonitor_fixture().await;
    let release = TestNamespace::new(&client, "chart-rel").await;
    let (w1, w2) = (
        TestNamespace::new(&client, "chart-w1").await,
        TestNamespace::new(&client, "chart-w2").await,
    );
    for sets in variants(&[&w1.name, &w2.name]) {
        let yaml = template("ko", &release.name, &strs(&sets)).unwrap();
        let out = run(
            Command::new(kubectl())
                .env("KUBECONFIG", &cluster.kubeconfig)
                .args(["apply", "--dry-run=server", "--validate=strict", "-f", "-"]),
            Some(&yaml),
        );
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{sets:?}:\n{stderr}");
        assert!(stderr.trim().is_empty(), "{sets:?}: warnings:\n{stderr}");
        assert!(stdout.contains("(server dry run)"), "{sets:?}: {stdout}");
    }
    // A misspelt field in a template would be caught: the same check on a broken document fails.
    let broken =
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: 80, targetPrt: 8080}]\n";
    let out = run(
        Command::new(kubectl())
            .env("KUBECONFIG", &cluster.kubeconfig)
            .args(["apply", "--dry-run=server", "--validate=strict", "-n"])
            .arg(&release.name)
            .args(["-f", "-"]),
        Some(broken),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("targetPrt"));
    for ns in [release, w1, w2] {
        ns.delete().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_pods_are_admitted_under_the_restricted_pod_security_profile() {
    let cluster = test_cluster().await;
    let client = cluster.client().await;
    let ns = TestNamespace::new(&client, "chart-psa").await;
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns.name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest"}}})),
        )
        .await
        .unwrap();
    let pod_from = |deployment: &serde_yaml::Value, name: &str| -> String {
        let template = &deployment["spec"]["template"];
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": serde_json::to_value(&template["metadata"]["labels"]).unwrap()},
            "spec": serde_json::to_value(&template["spec"]).unwrap(),
        });
        serde_json::to_string(&pod).unwrap()
    };
    let create = |pod: String| {
        let out = run(
            Command::new(kubectl())
                .env("KUBECONFIG", &cluster.kubeconfig)
                .args(["create", "--dry-run=server", "-n"])
                .arg(&ns.name)
                .args(["-f", "-"]),
            Some(&pod),
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let yaml = template("ko", &ns.name, &[]).unwrap();
    let docs = documents(&yaml);
    // The pods name their ServiceAccounts, which admission requires to exist.
    for sa in docs.iter().filter(|d| d["kind"] == "ServiceAccount") {
        let out = run(
            Command::new(kubectl())
                .env("KUBECONFIG", &cluster.kubeconfig)
                .args(["create", "-f", "-"]),
            Some(&serde_json::to_string(sa).unwrap()),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let deployments: Vec<serde_yaml::Value> =
        docs.into_iter().filter(|d| d["kind"] == "Deployment").collect();
    assert_eq!(deployments.len(), 3);
    for (i, d) in deployments.iter().enumerate() {
        let (ok, err) = create(pod_from(d, &format!("op-{i}")));
        assert!(ok, "{}: {err}", d["metadata"]["name"].as_str().unwrap());
    }
    // The profile is really enforced here: the same pod without its container securityContext is refused.
    let mut weakened = deployments[0].clone();
    weakened["spec"]["template"]["spec"]["containers"][0]
        .as_mapping_mut()
        .unwrap()
        .remove("securityContext");
    let (ok, err) = create(pod_from(&weakened, "weak"));
    assert!(!ok, "a pod without securityContext was admitted");
    assert!(err.contains("restricted"), "{err}");
    ns.delete().await;
}

#[test]
fn install_manifest_is_rendered_from_the_chart() {
    let out = run(
        Command::new(repo_root().join("hack/gen-manifests.sh")).arg("--check"),
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest = std::fs::read_to_string(repo_root().join("manifests/install.yaml")).unwrap();
    let docs = documents(&manifest);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds[0], "Namespace");
    assert!(kinds.contains(&"CustomResourceDefinition"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "Deployment").count(), 3);
}

#[test]
fn chart_crds_are_the_generated_ones() {
    let generated =
        std::fs::read_to_string(repo_root().join("manifests/crds/keystone.openstack.org_keystoneapis.yaml"))
            .unwrap();
    let chart =
        std::fs::read_to_string(chart_dir().join("crds/keystone.openstack.org_keystoneapis.yaml")).unwrap();
    assert_eq!(generated, chart, "run `make generate`");
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_crds_script_applies_the_chart_crds_and_waits_for_them() {
    let cluster = test_cluster().await;
    let out = run(
        Command::new(repo_root().join("hack/upgrade-crds.sh"))
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("KUBECTL", kubectl()),
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("customresourcedefinition.apiextensions.k8s.io/keystoneapis.keystone.openstack.org serverside-applied"),
        "{stdout}"
    );
    assert!(stdout.contains("condition met"), "{stdout}");
}

fn render_with_api_versions(sets: &[&str], api_versions: &[&str]) -> Vec<serde_yaml::Value> {
    let mut cmd = Command::new(helm());
    cmd.args(["template", "ko"])
        .arg(chart_dir())
        .args(["--namespace", "ops"]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    for v in api_versions {
        cmd.args(["--api-versions", v]);
    }
    let out = run(&mut cmd, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    documents(&String::from_utf8_lossy(&out.stdout))
}

/// The api controller's `--scc-cluster-role` and the one ClusterRole its RBAC may bind.
fn scc_role_of(docs: &[serde_yaml::Value]) -> (String, Vec<String>) {
    let api = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "ko-keystone-operator-api")
        .expect("the api Deployment");
    let flag = api["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str()?.strip_prefix("--scc-cluster-role="))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert_eq!(flag.len(), 1, "{flag:?}");
    let bind: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole")
        .flat_map(|d| d["rules"].as_sequence().cloned().unwrap_or_default())
        .filter(|r| {
            r["verbs"]
                .as_sequence()
                .is_some_and(|v| v.iter().any(|v| v == "bind"))
        })
        .flat_map(|r| r["resourceNames"].as_sequence().cloned().unwrap_or_default())
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    (flag[0].clone(), bind)
}

/// On OpenShift the chart creates an SCC that admits exactly the Keystone image's uid and fsGroup, and the api
/// controller binds each KeystoneAPI's ServiceAccount to its role and may bind no other; elsewhere (and in OLM
/// bundles, which cannot ship an SCC) it falls back to OpenShift's nonroot-v2.
#[test]
fn on_openshift_a_dedicated_scc_pins_the_keystone_uid_and_fsgroup() {
    let uid = keystone_types::pod::KEYSTONE_UID;
    let docs = render_with_api_versions(&[], &["security.openshift.io/v1"]);
    let scc = docs
        .iter()
        .find(|d| d["kind"] == "SecurityContextConstraints")
        .expect("an SCC on OpenShift");
    assert_eq!(scc["metadata"]["name"], "ops-ko-keystone-operator-keystone");
    assert_eq!(scc["runAsUser"]["type"], "MustRunAs");
    assert_eq!(scc["runAsUser"]["uid"].as_i64(), Some(uid));
    assert_eq!(scc["fsGroup"]["type"], "MustRunAs");
    assert_eq!(scc["fsGroup"]["ranges"][0]["min"].as_i64(), Some(uid));
    assert_eq!(scc["fsGroup"]["ranges"][0]["max"].as_i64(), Some(uid));
    assert_eq!(scc["allowPrivilegeEscalation"], false);
    assert_eq!(scc["allowPrivilegedContainer"], false);
    assert_eq!(scc["allowHostNetwork"], false);
    assert_eq!(scc["requiredDropCapabilities"][0], "ALL");
    let role = docs
        .iter()
        .find(|d| {
            d["kind"] == "ClusterRole" && d["metadata"]["name"] == "ops-ko-keystone-operator-keystone-scc"
        })
        .expect("the role granting use of the SCC");
    assert_eq!(role["rules"].as_sequence().unwrap().len(), 1);
    assert_eq!(role["rules"][0]["verbs"][0], "use");
    assert_eq!(
        role["rules"][0]["resourceNames"][0],
        "ops-ko-keystone-operator-keystone"
    );
    assert_eq!(
        scc_role_of(&docs),
        (
            "ops-ko-keystone-operator-keystone-scc".to_owned(),
            vec!["ops-ko-keystone-operator-keystone-scc".to_owned()]
        )
    );

    for (sets, versions) in [
        (&[][..], &[][..]),
        (&["openshift.scc=none"][..], &["security.openshift.io/v1"][..]),
    ] {
        let docs = render_with_api_versions(sets, versions);
        assert!(
            !docs.iter().any(|d| d["kind"] == "SecurityContextConstraints"),
            "{sets:?}"
        );
        let nonroot = "system:openshift:scc:nonroot-v2".to_owned();
        assert_eq!(scc_role_of(&docs), (nonroot.clone(), vec![nonroot]), "{sets:?}");
    }
}
