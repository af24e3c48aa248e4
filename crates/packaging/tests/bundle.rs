//! The OLM bundle: OLM's own validators accept it, its descriptors and examples fit the CRD, and — without a
//! registry or OLM itself — the controllers run with exactly the Deployments and permissions of the CSV, as
//! OLM would install them, and reconcile a KeystoneAPI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use serde_yaml::Value;

use keystone_types::catalog::{KeystoneEndpoint, KeystoneService};
use keystone_types::{KeystoneAPI, conditions};
use packaging::bundle::{TARGET_NAMESPACES_FIELD, WATCH_NAMESPACE_ENV, csv_file};
use packaging::{documents, repo_root, run};
use test_support::binary::sibling;
use test_support::cluster::Cluster;
use test_support::keystone;
use test_support::pods::{Outcome, PodDriver};
use test_support::process::ControllerProcess;
use test_support::{TestNamespace, test_cluster, wait};

fn bundle_dir() -> PathBuf {
    repo_root().join("bundle")
}

fn read_yaml(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    documents(&text).into_iter().next().expect("one document")
}

fn csv() -> Value {
    read_yaml(bundle_dir().join("manifests").join(csv_file()))
}

fn crd() -> Value {
    read_yaml(bundle_dir().join("manifests/keystone.openstack.org_keystoneapis.yaml"))
}

/// The bundle's CRD with this name.
fn crd_named(name: &str) -> Value {
    let (plural, group) = name.split_once('.').unwrap();
    read_yaml(bundle_dir().join(format!("manifests/{group}_{plural}.yaml")))
}

fn olm_validate() -> PathBuf {
    let out = run(
        &mut Command::new(repo_root().join("hack/build-olm-validator.sh")),
        None,
    );
    assert!(
        out.status.success(),
        "hack/build-olm-validator.sh:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn olm_validators_accept_the_bundle_without_warnings() {
    let t = Instant::now();
    let validate = olm_validate();
    eprintln!("olm-validate ready in {:.1}s", t.elapsed().as_secs_f64());
    let out = run(Command::new(&validate).arg(bundle_dir()), None);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    assert!(!report.contains("WARNING"), "{report}");
    assert!(report.contains("bundle valid"), "{report}");

    // The validators do look at what we ship: without its CRD, or with a made-up category, it is refused.
    let broken = std::env::temp_dir().join(format!("bundle-broken-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&broken);
    std::fs::create_dir_all(broken.join("manifests")).unwrap();
    std::fs::create_dir_all(broken.join("metadata")).unwrap();
    std::fs::copy(
        bundle_dir().join("metadata/annotations.yaml"),
        broken.join("metadata/annotations.yaml"),
    )
    .unwrap();
    let csv_text = std::fs::read_to_string(bundle_dir().join("manifests").join(csv_file())).unwrap();
    std::fs::write(
        broken.join("manifests").join(csv_file()),
        csv_text.replace("categories: Security", "categories: Identity Things"),
    )
    .unwrap();
    let out = run(Command::new(&validate).arg(&broken), None);
    let _ = std::fs::remove_dir_all(&broken);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("not found in bundle"), "{report}");
    assert!(report.contains("standard categories"), "{report}");
}

/// The schema node at a descriptor path (`a.b`, `a[0].b`), if the CRD has it.
fn schema_at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = root;
    for part in path.split('.') {
        let (field, indexed) = match part.split_once('[') {
            Some((f, _)) => (f, true),
            None => (part, false),
        };
        node = node.get("properties")?.get(field)?;
        if indexed {
            node = node.get("items")?;
        }
    }
    Some(node)
}

#[test]
fn csv_descriptors_images_and_permissions_match_the_crd_and_the_deployments() {
    let csv = csv();
    let crd = crd();
    let owned = csv["spec"]["customresourcedefinitions"]["owned"]
        .as_sequence()
        .unwrap();
    assert_eq!(
        owned.len(),
        keystone_types::crds().len(),
        "every CRD of the bundle is owned"
    );
    assert_eq!(owned[0]["name"], crd["metadata"]["name"]);
    for owned in owned {
        let crd = crd_named(owned["name"].as_str().unwrap());
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_eq!(owned["kind"], crd["spec"]["names"]["kind"]);
        assert_eq!(owned["version"], crd["spec"]["versions"][0]["name"]);
        for (section, descriptors) in [("spec", "specDescriptors"), ("status", "statusDescriptors")] {
            let list = owned[descriptors].as_sequence().unwrap();
            assert!(list.len() >= 2, "{descriptors}: only {}", list.len());
            for d in list {
                let path = d["path"].as_str().unwrap();
                let node = schema_at(&schema["properties"][section], path);
                assert!(
                    node.is_some(),
                    "{descriptors}: {section}.{path} is not in {}",
                    owned["name"].as_str().unwrap()
                );
                assert!(d["description"].as_str().is_some_and(|s| !s.is_empty()));
            }
        }
    }

    let install = &csv["spec"]["install"]["spec"];
    let deployments = install["deployments"].as_sequence().unwrap();
    let names: Vec<&str> = deployments.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "keystone-operator-api",
            "keystone-operator-fernet",
            "keystone-operator-db"
        ]
    );
    let related: Vec<&str> = csv["spec"]["relatedImages"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r["image"].as_str().unwrap())
        .collect();
    assert!(related.contains(&keystone_types::v1beta1::DEFAULT_CONTAINER_IMAGE));
    let permissions = install["permissions"].as_sequence().unwrap();
    let cluster_permissions = install["clusterPermissions"].as_sequence().unwrap();
    for d in deployments {
        let pod = &d["spec"]["template"]["spec"];
        let sa = pod["serviceAccountName"].as_str().unwrap();
        let container = &pod["containers"][0];
        assert!(related.contains(&container["image"].as_str().unwrap()));
        assert!(
            container["env"].as_sequence().unwrap().iter().any(|e| {
                e["name"] == WATCH_NAMESPACE_ENV
                    && e["valueFrom"]["fieldRef"]["fieldPath"] == TARGET_NAMESPACES_FIELD
            }),
            "{sa}: the watched namespace does not come from olm.targetNamespaces"
        );
        assert!(
            d["label"]
                .as_mapping()
                .unwrap()
                .keys()
                .all(|k| k != "helm.sh/chart" && k != "app.kubernetes.io/managed-by")
        );
        let namespaced = permissions
            .iter()
            .find(|p| p["serviceAccountName"] == sa)
            .unwrap_or_else(|| panic!("no permissions for {sa}"));
        let rules = namespaced["rules"].as_sequence().unwrap();
        assert!(rules.iter().any(|r| {
            r["resources"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|x| x == "keystoneapis/status")
        }));
        assert!(
            !rules.iter().any(|r| r["resources"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|x| x == "customresourcedefinitions")),
            "{sa}: a cluster-scoped rule among the namespaced permissions"
        );
        let cluster = cluster_permissions
            .iter()
            .find(|p| p["serviceAccountName"] == sa)
            .unwrap_or_else(|| panic!("no clusterPermissions for {sa}"));
        assert_eq!(
            cluster["rules"].as_sequence().unwrap().len(),
            1,
            "{sa}: cluster-wide, only the CRD lookup"
        );
    }
    // MultiNamespace is not offered: a controller watches one namespace or all.
    let modes: BTreeMap<String, bool> = csv["spec"]["installModes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap().to_owned(),
                m["supported"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(modes.get("MultiNamespace"), Some(&false));
    assert_eq!(modes.get("AllNamespaces"), Some(&true));
    assert_eq!(modes.get("SingleNamespace"), Some(&true));
}

#[tokio::test(flavor = "multi_thread")]
async fn alm_examples_pass_the_apiservers_crd_schema() {
    let client = test_support::client().await;
    let ns = TestNamespace::new(&client, "alm").await;
    let examples: Vec<serde_json::Value> =
        serde_json::from_str(csv()["metadata"]["annotations"]["alm-examples"].as_str().unwrap()).unwrap();
    assert!(examples.len() >= 3);
    assert_eq!(
        examples[0]["spec"],
        json!({"containerImage": keystone_types::v1beta1::DEFAULT_CONTAINER_IMAGE, "replicas": 1, "secret": "osp-secret"}),
        "the basic example comes first (consoles offer it as the default)"
    );
    let kinds: Vec<&str> = examples.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in ["KeystoneAPI", "KeystoneService", "KeystoneEndpoint"] {
        assert!(kinds.contains(&kind), "no {kind} example: {kinds:?}");
    }
    for example in &examples {
        let resource = match example["kind"].as_str().unwrap() {
            "KeystoneAPI" => ApiResource::erase::<KeystoneAPI>(&()),
            "KeystoneService" => ApiResource::erase::<KeystoneService>(&()),
            "KeystoneEndpoint" => ApiResource::erase::<KeystoneEndpoint>(&()),
            other => panic!("unexpected example kind {other}"),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &resource);
        let obj: DynamicObject = serde_json::from_value(example.clone()).unwrap();
        let created = api
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &obj,
            )
            .await
            .unwrap_or_else(|e| panic!("{example}: {e}"));
        // Nothing of the example was pruned by the schema.
        for (k, v) in example["spec"].as_object().unwrap() {
            assert_eq!(&created.data["spec"][k], v, "{k}");
        }
    }
    ns.delete().await;
}

/// A `PolicyRule` from a CSV rule.
fn rule(v: &Value) -> PolicyRule {
    serde_json::from_value(serde_json::to_value(v).unwrap()).unwrap()
}

/// The env of a CSV container as the kubelet would set it in a pod named `pod` in `namespace`, with OLM's
/// `olm.targetNamespaces` annotation = `targets`.
fn resolve_env(container: &Value, pod: &str, namespace: &str, targets: &str) -> Vec<(String, String)> {
    container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_owned();
            if let Some(v) = e["value"].as_str() {
                return (name, v.to_owned());
            }
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap() {
                "metadata.name" => pod.to_owned(),
                "metadata.namespace" => namespace.to_owned(),
                f if f == TARGET_NAMESPACES_FIELD => targets.to_owned(),
                other => panic!("{name}: unexpected fieldRef {other}"),
            };
            (name, value)
        })
        .collect()
}

/// Installs the CSV the way OLM does for a SingleNamespace OperatorGroup, and runs the controllers as its
/// Deployments say (args, env, ServiceAccounts): ServiceAccounts in the operator namespace; `permissions` as a
/// Role + RoleBinding in the operator namespace and in the target namespace; `clusterPermissions` as a
/// ClusterRole + ClusterRoleBinding; the Deployments with `olm.targetNamespaces` on their pods.
#[tokio::test(flavor = "multi_thread")]
async fn olm_install_runs_the_controllers_with_the_csv_permissions() {
    let cluster = test_cluster().await;
    let admin = cluster.client().await;
    let operator = TestNamespace::new(&admin, "olm-op").await;
    let target = TestNamespace::new(&admin, "olm-ks").await;
    let other = TestNamespace::new(&admin, "olm-other").await;
    let csv = csv();
    let install = &csv["spec"]["install"]["spec"];
    let ssa = PatchParams::apply("olm-test").force();

    // The operator namespace enforces the restricted Pod Security profile, as on OpenShift and in the chart's
    // install manifest: the CSV's pods must be admitted there.
    Api::<Namespace>::all(admin.clone())
        .patch(
            &operator.name,
            &ssa,
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": operator.name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}
            })),
        )
        .await
        .unwrap();

    let mut cluster_objects = Vec::new();
    for p in install["permissions"].as_sequence().unwrap() {
        let sa = p["serviceAccountName"].as_str().unwrap();
        let sa_obj: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": sa}})).unwrap();
        Api::<ServiceAccount>::namespaced(admin.clone(), &operator.name)
            .create(&PostParams::default(), &sa_obj)
            .await
            .unwrap();
        let rules: Vec<PolicyRule> = p["rules"].as_sequence().unwrap().iter().map(rule).collect();
        for ns in [&operator.name, &target.name] {
            let role = Role {
                metadata: kube::api::ObjectMeta {
                    name: Some(sa.to_owned()),
                    ..Default::default()
                },
                rules: Some(rules.clone()),
            };
            Api::<Role>::namespaced(admin.clone(), ns)
                .create(&PostParams::default(), &role)
                .await
                .unwrap();
            let binding: RoleBinding = serde_json::from_value(json!({
                "metadata": {"name": sa},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": operator.name}],
            }))
            .unwrap();
            Api::<RoleBinding>::namespaced(admin.clone(), ns)
                .create(&PostParams::default(), &binding)
                .await
                .unwrap();
        }
    }
    for p in install["clusterPermissions"].as_sequence().unwrap() {
        let sa = p["serviceAccountName"].as_str().unwrap();
        let name = format!("{}-{sa}", operator.name);
        let role = ClusterRole {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            rules: Some(p["rules"].as_sequence().unwrap().iter().map(rule).collect()),
            ..Default::default()
        };
        Api::<ClusterRole>::all(admin.clone())
            .create(&PostParams::default(), &role)
            .await
            .unwrap();
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": operator.name}],
        }))
        .unwrap();
        Api::<ClusterRoleBinding>::all(admin.clone())
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
        cluster_objects.push(name);
    }

    // The bundle's metrics Services.
    for entry in std::fs::read_dir(bundle_dir().join("manifests")).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with("_v1_service.yaml") {
            let svc: Service =
                serde_json::from_value(serde_json::to_value(read_yaml(path)).unwrap()).unwrap();
            Api::<Service>::namespaced(admin.clone(), &operator.name)
                .create(&PostParams::default(), &svc)
                .await
                .unwrap();
        }
    }

    // The Deployments as OLM creates them: the apiserver accepts them and the restricted profile admits their
    // pods (no kubelet runs them; the controllers run below as processes).
    let deployments = install["deployments"].as_sequence().unwrap();
    for d in deployments {
        let mut spec: DeploymentSpec =
            serde_json::from_value(serde_json::to_value(&d["spec"]).unwrap()).unwrap();
        spec.template
            .metadata
            .get_or_insert_with(Default::default)
            .annotations
            .get_or_insert_with(Default::default)
            .insert("olm.targetNamespaces".to_owned(), target.name.clone());
        let dep = Deployment {
            metadata: kube::api::ObjectMeta {
                name: Some(d["name"].as_str().unwrap().to_owned()),
                ..Default::default()
            },
            spec,
            ..Default::default()
        };
        Api::<Deployment>::namespaced(admin.clone(), &operator.name)
            .create(&PostParams::default(), &dep)
            .await
            .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &operator.name);
    wait::until("the CSV's pods admitted", Duration::from_secs(60), || async {
        let n = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        if n == deployments.len() {
            Ok(())
        } else {
            Err(format!("{n} pods"))
        }
    })
    .await;

    let mut procs = Vec::new();
    let mut clients = Vec::new();
    for d in deployments {
        let pod = &d["spec"]["template"]["spec"];
        let sa = pod["serviceAccountName"].as_str().unwrap();
        let container = &pod["containers"][0];
        let image = container["image"].as_str().unwrap();
        let binary = image
            .rsplit('/')
            .next()
            .and_then(|i| i.split(':').next())
            .unwrap();
        // The test process owns the metrics address and log format.
        let args: Vec<&str> = container["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .filter(|a| !a.starts_with("--metrics-addr") && !a.starts_with("--log-format"))
            .collect();
        let env = resolve_env(
            container,
            &format!("{}-0", d["name"].as_str().unwrap()),
            &operator.name,
            &target.name,
        );
        let kubeconfig = cluster.service_account_kubeconfig(&operator.name, sa).await;
        clients.push((sa.to_owned(), Cluster::client_from(&kubeconfig).await));
        let mut p = ControllerProcess::start_with_env(&sibling(binary), &kubeconfig, None, &args, &env);
        p.wait_ready().await;
        procs.push(p);
    }

    keystone::create_osp_secret(&admin, &target.name, "admin-pw", "db-pw", "root-pw").await;
    keystone::create(&admin, &target.name, "keystone", json!({"replicas": 1})).await;
    let keystones: Api<KeystoneAPI> = Api::namespaced(admin.clone(), &target.name);
    let driver = PodDriver::new(&admin, &target.name);
    wait::until("KeystoneAPI Ready", Duration::from_secs(120), || async {
        driver
            .drive_keystone(Outcome::Succeeded)
            .await
            .map_err(|e| e.to_string())?;
        let ks = keystones.get("keystone").await.map_err(|e| e.to_string())?;
        keystone::condition_is(&ks, conditions::READY, "True")
    })
    .await;

    // Each controller holds the lease for its target namespace in the operator namespace.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &operator.name);
    for c in ["api", "fernet", "db"] {
        let lease = leases
            .get(&format!("keystone-{c}-{}", target.name))
            .await
            .unwrap();
        assert!(lease.spec.unwrap().holder_identity.is_some());
    }
    for p in &procs {
        let output = p.output();
        assert!(
            !output.to_lowercase().contains("forbidden"),
            "a controller was refused an API call:\n{output}"
        );
    }
    // Outside the OperatorGroup's target namespace, the CSV grants nothing.
    for (sa, client) in &clients {
        match Api::<Secret>::namespaced(client.clone(), &other.name)
            .list(&ListParams::default())
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 403 => {}
            other => panic!("{sa} lists Secrets outside the target namespace: {other:?}"),
        }
        match Api::<KeystoneAPI>::all(client.clone())
            .list(&ListParams::default())
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 403 => {}
            other => panic!("{sa} lists KeystoneAPIs cluster-wide: {other:?}"),
        }
    }

    drop(procs);
    for name in cluster_objects {
        let _ = Api::<ClusterRoleBinding>::all(admin.clone())
            .delete(&name, &DeleteParams::default())
            .await;
        let _ = Api::<ClusterRole>::all(admin.clone())
            .delete(&name, &DeleteParams::default())
            .await;
    }
    other.delete().await;
    target.delete().await;
    operator.delete().await;
}
