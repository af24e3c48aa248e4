//! Least privilege, proven: `helm install` into the RBAC-enabled local apiserver, then each controller binary
//! runs with a kubeconfig for ITS chart ServiceAccount (token from the TokenRequest API) and, with the pod
//! driver playing the kubelet, a KeystoneAPI becomes Ready. Then each identity is refused what it does not
//! need.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use keystone_types::{KeystoneAPI, conditions, names};
use packaging::{chart_dir, helm, run};
use test_support::binary::sibling;
use test_support::cluster::Cluster;
use test_support::keystone;
use test_support::pods::{Outcome, PodDriver};
use test_support::process::ControllerProcess;
use test_support::{TestNamespace, test_cluster, wait};

/// Asserts the call was refused with 403 Forbidden.
fn forbidden<T: std::fmt::Debug>(what: &str, result: kube::Result<T>) {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_install_then_each_controller_reconciles_with_only_its_service_account() {
    let cluster = test_cluster().await;
    let admin = cluster.client().await;
    let release = TestNamespace::new(&admin, "rbac-rel").await;
    let watched = TestNamespace::new(&admin, "rbac-ks").await;

    let out = run(
        Command::new(helm())
            .env("KUBECONFIG", &cluster.kubeconfig)
            .args(["install", "ko"])
            .arg(chart_dir())
            .args(["--namespace", &release.name])
            .args(["--set", &format!("watchNamespaces={{{}}}", watched.name)]),
        None,
    );
    let notes = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "helm install:\n{notes}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(notes.contains("STATUS: deployed"), "{notes}");
    assert!(
        notes.contains(&format!("kubectl -n {} get deploy", release.name)),
        "{notes}"
    );
    assert!(notes.contains("Helm does not upgrade CRDs"), "{notes}");

    // The three controllers, each as its own ServiceAccount, with leader election on as the chart runs them.
    let mut procs = Vec::new();
    let mut clients = Vec::new();
    for c in ["api", "fernet", "db"] {
        let kubeconfig = cluster
            .service_account_kubeconfig(&release.name, &format!("ko-keystone-operator-{c}"))
            .await;
        clients.push(Cluster::client_from(&kubeconfig).await);
        let mut args = vec![
            "--leader-elect",
            "--leader-election-namespace",
            &release.name,
            "--leader-election-lease-duration",
            "6s",
            "--leader-election-renew-deadline",
            "4s",
            "--leader-election-retry-period",
            "1s",
        ];
        if c == "fernet" {
            args.extend(["--min-rotation-interval", "5m"]);
        }
        let mut p = ControllerProcess::start_with_kubeconfig(
            &sibling(&format!("keystone-{c}-controller")),
            &kubeconfig,
            Some(&watched.name),
            &args,
        );
        p.wait_ready().await;
        procs.push(p);
    }
    let (api_client, fernet_client, db_client) = (clients[0].clone(), clients[1].clone(), clients[2].clone());

    // A full reconcile: the seed's Secret and a KeystoneAPI, Jobs and API pods played by the driver.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &watched.name);
    keystone::create_osp_secret(&admin, &watched.name, "admin-pw", "db-pw", "root-pw").await;
    keystone::create(&admin, &watched.name, "keystone", json!({"replicas": 2})).await;
    let keystones: Api<KeystoneAPI> = Api::namespaced(admin.clone(), &watched.name);
    let driver = PodDriver::new(&admin, &watched.name);
    wait::until("KeystoneAPI Ready", Duration::from_secs(120), || async {
        driver
            .drive_keystone(Outcome::Succeeded)
            .await
            .map_err(|e| e.to_string())?;
        let ks = keystones.get("keystone").await.map_err(|e| e.to_string())?;
        keystone::condition_is(&ks, conditions::READY, "True")
    })
    .await;
    // Everything the controllers make exists: PDB (replicas 2), CronJob, keys.
    for (what, exists) in [
        (
            "fernet keys",
            secrets
                .get_opt(&names::fernet_keys_secret("keystone"))
                .await
                .unwrap()
                .is_some(),
        ),
        (
            "credential keys",
            secrets
                .get_opt(&names::credential_keys_secret("keystone"))
                .await
                .unwrap()
                .is_some(),
        ),
        (
            "trust-flush CronJob",
            Api::<CronJob>::namespaced(admin.clone(), &watched.name)
                .get_opt(&names::trust_flush_cronjob("keystone"))
                .await
                .unwrap()
                .is_some(),
        ),
        (
            "PodDisruptionBudget",
            Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(
                admin.clone(),
                &watched.name,
            )
            .get_opt(&names::deployment("keystone"))
            .await
            .unwrap()
            .is_some(),
        ),
    ] {
        assert!(exists, "{what} missing");
    }
    // Scaling down deletes the PDB: the api controller's delete grant is used, too.
    keystones
        .patch(
            "keystone",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    wait::until("PDB deleted", Duration::from_secs(60), || async {
        match Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(
            admin.clone(),
            &watched.name,
        )
        .get_opt(&names::deployment("keystone"))
        .await
        {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Each controller holds its lease in the release namespace.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &release.name);
    for c in ["api", "fernet", "db"] {
        let lease = leases
            .get(&format!("keystone-{c}-{}", watched.name))
            .await
            .unwrap();
        assert!(lease.spec.unwrap().holder_identity.is_some());
    }
    // No controller was refused anything on the way.
    for p in &procs {
        let output = p.output();
        assert!(
            !output.to_lowercase().contains("forbidden"),
            "a controller was refused an API call:\n{output}"
        );
    }

    // Refusals: what each identity must not do.
    let ns = watched.name.as_str();
    let fernet_keys = names::fernet_keys_secret("keystone");
    forbidden(
        "fernet lists Deployments",
        Api::<Deployment>::namespaced(fernet_client.clone(), ns)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "fernet lists Jobs",
        Api::<Job>::namespaced(fernet_client.clone(), ns)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "fernet reads ConfigMaps",
        Api::<ConfigMap>::namespaced(fernet_client.clone(), ns)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "fernet deletes its key Secret",
        Api::<Secret>::namespaced(fernet_client.clone(), ns)
            .delete(&fernet_keys, &DeleteParams::default())
            .await,
    );
    forbidden(
        "db lists Services",
        Api::<Service>::namespaced(db_client.clone(), ns)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "db lists Deployments",
        Api::<Deployment>::namespaced(db_client.clone(), ns)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "db deletes Jobs",
        Api::<Job>::namespaced(db_client.clone(), ns)
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await,
    );
    forbidden(
        "db deletes key Secrets",
        Api::<Secret>::namespaced(db_client.clone(), ns)
            .delete(&fernet_keys, &DeleteParams::default())
            .await,
    );
    forbidden(
        "api lists Jobs",
        Api::<Job>::namespaced(api_client.clone(), ns)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "api lists CronJobs",
        Api::<CronJob>::namespaced(api_client.clone(), ns)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "api replaces key Secrets",
        Api::<Secret>::namespaced(api_client.clone(), ns)
            .replace(
                &fernet_keys,
                &PostParams::default(),
                &secrets.get(&fernet_keys).await.unwrap(),
            )
            .await,
    );
    // RoleBindings: the api controller may bind only the OpenShift SCC ClusterRole (bind with resourceNames);
    // binding any role granting what it does not hold itself is refused by the API server's escalation check.
    // (The local control plane does not aggregate admin/edit/view, which are empty there: a role of our own
    // stands for them.)
    let probe: k8s_openapi::api::rbac::v1::ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": format!("keystone-rbac-probe-{ns}")},
        "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    }))
    .unwrap();
    let cluster_roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(admin.clone());
    cluster_roles
        .create(&PostParams::default(), &probe)
        .await
        .unwrap();
    for role in ["cluster-admin".to_owned(), format!("keystone-rbac-probe-{ns}")] {
        let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": format!("escalate-{}", role.len())},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]
        }))
        .unwrap();
        forbidden(
            &format!("api binds ClusterRole {role}"),
            Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(api_client.clone(), ns)
                .create(&PostParams::default(), &binding)
                .await,
        );
    }
    cluster_roles
        .delete(&format!("keystone-rbac-probe-{ns}"), &DeleteParams::default())
        .await
        .unwrap();
    let scc_binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "scc-probe"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:openshift:scc:nonroot-v2"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]
    }))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(api_client.clone(), ns)
        .create(
            &kube::api::PostParams {
                dry_run: true,
                ..Default::default()
            },
            &scc_binding,
        )
        .await
        .expect("the api controller may bind the SCC role it needs");
    forbidden(
        "api reads the fernet controller's lease",
        Api::<Lease>::namespaced(api_client.clone(), &release.name)
            .get(&format!("keystone-fernet-{ns}"))
            .await,
    );
    let all: [(&str, &Client); 3] = [
        ("api", &api_client),
        ("fernet", &fernet_client),
        ("db", &db_client),
    ];
    for (c, client) in all {
        forbidden(
            &format!("{c} reads Secrets outside the watched namespace"),
            Api::<Secret>::namespaced((*client).clone(), &release.name)
                .list(&ListParams::default())
                .await,
        );
        forbidden(
            &format!("{c} lists Namespaces"),
            Api::<Namespace>::all((*client).clone())
                .list(&ListParams::default())
                .await,
        );
        forbidden(
            &format!("{c} changes a KeystoneAPI's spec"),
            Api::<KeystoneAPI>::namespaced((*client).clone(), ns)
                .patch(
                    "keystone",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": 5}})),
                )
                .await,
        );
        forbidden(
            &format!("{c} deletes a KeystoneAPI"),
            Api::<KeystoneAPI>::namespaced((*client).clone(), ns)
                .delete("keystone", &DeleteParams::default())
                .await,
        );
    }

    drop(procs);
    let out = run(
        Command::new(helm()).env("KUBECONFIG", &cluster.kubeconfig).args([
            "uninstall",
            "ko",
            "--namespace",
            &release.name,
        ]),
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    release.delete().await;
    watched.delete().await;
}
