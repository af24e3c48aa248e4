//! The end-to-end scenarios, in order, on one KeystoneAPI (they build on each other, as a user's would).
//! Run with `make e2e` (root: the local node). Each scenario prints its duration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use keystone_e2e::{ADMIN_PASSWORD, DB_PASSWORD, DB_ROOT_PASSWORD, Env, Keystone, NAMESPACE};
use keystone_types::conditions;

const NAME: &str = "keystone";
const NEW_ADMIN_PASSWORD: &str = "new-adm$'\"{{a}}%";
const NEW_DB_PASSWORD: &str = "new-db$'\"`{{b}}%";

/// Scenario 1: the seed's basic example with two replicas and hostile passwords comes up; a real client
/// issues a token on one replica that validates on the other; the catalog matches `status.apiEndpoints`;
/// an EC2 credential is created (scenario 7 decrypts it again).
async fn basic_example(env: &Env) -> String {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
    let _ = secrets.delete("osp-secret", &DeleteParams::default()).await;
    test_support::keystone::create_osp_secret(
        &env.client,
        NAMESPACE,
        ADMIN_PASSWORD,
        DB_PASSWORD,
        DB_ROOT_PASSWORD,
    )
    .await;
    // The seed README's basic example, with replicas: 2.
    test_support::keystone::create(
        &env.client,
        NAMESPACE,
        NAME,
        json!({
            "containerImage": "quay.io/podified-antelope-centos9/openstack-keystone:current-podified",
            "replicas": 2,
            "secret": "osp-secret"
        }),
    )
    .await;
    let ks = env
        .wait_condition(NAME, conditions::READY, "True", Duration::from_secs(300))
        .await;
    let ips = env.api_pod_ips(NAME).await;
    assert_eq!(ips.len(), 2, "two API pods Ready: {ips:?}");
    let (a, b) = (&ips[0], &ips[1]);

    // The real client issues on replica A; the token validates on replica B (no cache configured:
    // validation decrypts with B's copy of the keys).
    let issued = env
        .openstack(
            &format!("http://{a}:5000/v3"),
            ADMIN_PASSWORD,
            &["token", "issue"],
        )
        .await
        .unwrap();
    let token = issued["id"].as_str().unwrap().to_owned();
    let ksc = Keystone::default();
    assert_eq!(ksc.validate(b, &token, &token, false).await.unwrap(), 200);

    // The identity endpoints Keystone serves are the ones the operator published.
    // As a client in the cluster: through the internal Service name.
    let published = ks.status.unwrap().api_endpoints.unwrap();
    let internal = format!("{}/v3", published.internal.clone().unwrap());
    let endpoints = env
        .openstack(&internal, ADMIN_PASSWORD, &["endpoint", "list"])
        .await
        .unwrap();
    let url = |iface: &str| {
        endpoints
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["Interface"] == iface && e["Service Type"] == "identity")
            .map(|e| e["URL"].as_str().unwrap().to_owned())
    };
    assert_eq!(url("public"), published.public, "{endpoints}");
    assert_eq!(url("internal"), published.internal, "{endpoints}");

    // An EC2 credential, encrypted with the credential keys.
    let cred = env
        .openstack(&internal, ADMIN_PASSWORD, &["ec2", "credentials", "create"])
        .await
        .unwrap();
    cred["access"]
        .as_str()
        .unwrap_or_else(|| panic!("no access key in {cred}"))
        .to_owned()
}

/// Scenario 3: a config change through `customServiceConfig` rolls the pods and takes effect; a key rotation
/// alone rolls nothing.
async fn config_change(env: &Env) {
    let ksc = Keystone::default();
    let before = env.api_pods(NAME).await;
    let ip = before[0].1.clone();
    let token = ksc.issue(&ip, ADMIN_PASSWORD).await.unwrap();
    // A second user, so that a page of one is truncated.
    let (code, _) = ksc.get(&ip, &token, "/v3/users").await.unwrap();
    assert_eq!(code, 200);
    let published = env
        .keystones()
        .get(NAME)
        .await
        .unwrap()
        .status
        .unwrap()
        .api_endpoints
        .unwrap();
    let internal = format!("{}/v3", published.internal.unwrap());
    let _ = env
        .openstack(
            &internal,
            ADMIN_PASSWORD,
            &["user", "create", "--password", "e2e-user-pw", "e2e-user"],
        )
        .await;
    env.keystones()
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"customServiceConfig": "[DEFAULT]\nlist_limit = 1\n"}})),
        )
        .await
        .unwrap();
    let old: Vec<String> = before.iter().map(|(n, _)| n.clone()).collect();
    let after = test_support::wait::until("API pods rolled", Duration::from_secs(180), || async {
        let pods = env.api_pods(NAME).await;
        if pods.len() == 2 && pods.iter().all(|(n, _)| !old.contains(n)) {
            Ok(pods)
        } else {
            Err(format!("{pods:?}"))
        }
    })
    .await;
    env.wait_condition(NAME, conditions::READY, "True", Duration::from_secs(120))
        .await;
    for (_, ip) in &after {
        let token = ksc.issue(ip, ADMIN_PASSWORD).await.unwrap();
        let (code, body) = ksc.get(ip, &token, "/v3/users").await.unwrap();
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["users"].as_array().map(Vec::len), Some(1), "{body}");
        assert_eq!(body["truncated"], true, "{body}");
    }
    // A rotation alone: the keys change, the pods stay.
    let count = env.rotation_count(NAME).await;
    env.keystones()
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"keystone.openstack.org/rotate-fernet-keys": "e2e-3"}}}),
            ),
        )
        .await
        .unwrap();
    test_support::wait::until("rotated", Duration::from_secs(90), || async {
        let now = env.rotation_count(NAME).await;
        if now > count {
            Ok(())
        } else {
            Err(format!("count {now}"))
        }
    })
    .await;
    env.wait_condition(
        NAME,
        conditions::FERNET_KEYS_READY,
        "True",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(env.api_pods(NAME).await, after, "a rotation rolled the pods");
}

/// Whether MariaDB on the node accepts `keystone` with `password` (PyMySQL from the host, UTF-8 bytes).
fn database_accepts(password: &str) -> bool {
    let host = String::from_utf8(
        std::process::Command::new(test_support::cluster::repo_root().join("hack/local-node.sh"))
            .args(["address", "--name", keystone_e2e::NODE])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import os, pymysql; pymysql.connect(host=os.environ['H'], user='keystone', \
             password=os.environ['P'].encode(), database='keystone').close()",
        ])
        .env("H", host.trim())
        .env("P", password)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

async fn set_password(env: &Env, key: &str, value: &str) {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
    secrets
        .patch(
            "osp-secret",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {key: value}})),
        )
        .await
        .unwrap();
}

/// Scenario 4: a new admin password in the Secret re-runs bootstrap (the new one authenticates, the old does
/// not); a new database password is applied to the database, then the pods roll onto it.
async fn password_changes(env: &Env) {
    let ksc = Keystone::default();
    const NEW_ADMIN: &str = NEW_ADMIN_PASSWORD;
    set_password(env, "AdminPassword", NEW_ADMIN).await;
    let ip = env.api_pod_ips(NAME).await[0].clone();
    test_support::wait::until(
        "the new admin password authenticates",
        Duration::from_secs(120),
        || async { ksc.issue(&ip, NEW_ADMIN).await.map(|_| ()) },
    )
    .await;
    let old = ksc.issue(&ip, ADMIN_PASSWORD).await;
    assert!(
        old.as_ref().is_err_and(|e| e.contains("401")),
        "the old admin password still works: {old:?}"
    );
    env.wait_condition(NAME, conditions::READY, "True", Duration::from_secs(60))
        .await;

    const NEW_DB: &str = NEW_DB_PASSWORD;
    assert!(database_accepts(DB_PASSWORD));
    let before: Vec<String> = env.api_pods(NAME).await.into_iter().map(|(n, _)| n).collect();
    set_password(env, "KeystoneDatabasePassword", NEW_DB).await;
    let after = test_support::wait::until(
        "API pods rolled onto the new password",
        Duration::from_secs(180),
        || async {
            let pods = env.api_pods(NAME).await;
            if pods.len() == 2 && pods.iter().all(|(n, _)| !before.contains(n)) {
                Ok(pods)
            } else {
                Err(format!("{pods:?}"))
            }
        },
    )
    .await;
    assert!(
        database_accepts(NEW_DB),
        "the database does not take the new password"
    );
    assert!(
        !database_accepts(DB_PASSWORD),
        "the database still takes the old password"
    );
    for (_, ip) in &after {
        // Issuing reads the database: the new pods connect with the new password.
        ksc.issue(ip, NEW_ADMIN).await.unwrap();
    }
    env.wait_condition(NAME, conditions::READY, "True", Duration::from_secs(60))
        .await;
}

/// Scenario 7: deleting the KeystoneAPI removes every child it owns, while the database and the credential
/// keys stay; re-created, Keystone decrypts the EC2 credential made in scenario 1 with the kept keys.
async fn delete_and_recreate(env: &Env, access: &str, admin_password: &str, db_password: &str) {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{ConfigMap, Service};
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
    let cred_name = keystone_types::names::credential_keys_secret(NAME);
    let cred_before = secrets.get(&cred_name).await.unwrap().data;
    let spec = env.keystones().get(NAME).await.unwrap().spec;
    env.keystones()
        .delete(NAME, &DeleteParams::default())
        .await
        .unwrap();
    let selector = format!("app.kubernetes.io/instance={NAME}");
    let lp = kube::api::ListParams::default().labels(&selector);
    test_support::wait::until(
        "owned children garbage-collected",
        Duration::from_secs(120),
        || async {
            let ns = NAMESPACE;
            let c = env.client.clone();
            let left = [
                Api::<Deployment>::namespaced(c.clone(), ns)
                    .list(&lp)
                    .await
                    .map(|l| l.items.len()),
                Api::<Service>::namespaced(c.clone(), ns)
                    .list(&lp)
                    .await
                    .map(|l| l.items.len()),
                Api::<ConfigMap>::namespaced(c.clone(), ns)
                    .list(&lp)
                    .await
                    .map(|l| l.items.len()),
                Api::<Job>::namespaced(c.clone(), ns)
                    .list(&lp)
                    .await
                    .map(|l| l.items.len()),
                secrets
                    .get_opt(&keystone_types::names::fernet_keys_secret(NAME))
                    .await
                    .map(|s| usize::from(s.is_some())),
                env.keystones()
                    .get_opt(NAME)
                    .await
                    .map(|k| usize::from(k.is_some())),
            ];
            let left: Vec<usize> = left.into_iter().map(|r| r.unwrap_or(1)).collect();
            if left.iter().all(|n| *n == 0) {
                Ok(())
            } else {
                Err(format!("left: {left:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        secrets.get(&cred_name).await.unwrap().data,
        cred_before,
        "the credential keys must survive the KeystoneAPI"
    );
    assert!(
        database_accepts(db_password),
        "the database went with the KeystoneAPI"
    );

    let ks = keystone_types::KeystoneAPI::new(NAME, spec);
    env.keystones().create(&PostParams::default(), &ks).await.unwrap();
    let ks = env
        .wait_condition(NAME, conditions::READY, "True", Duration::from_secs(300))
        .await;
    let internal = format!(
        "{}/v3",
        ks.status.unwrap().api_endpoints.unwrap().internal.unwrap()
    );
    let creds = env
        .openstack(&internal, admin_password, &["ec2", "credentials", "list"])
        .await
        .unwrap();
    let found = creds
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Access"] == access)
        .unwrap_or_else(|| panic!("credential {access} not listed: {creds}"));
    // Listing decrypts the blob: the secret is there only if the kept keys still decrypt it.
    assert!(found["Secret"].as_str().is_some_and(|s| s.len() >= 16), "{found}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keystone_lifecycle() {
    let t = Instant::now();
    let env = Env::start("20s").await;
    println!("e2e: environment up in {:?}", t.elapsed());
    // A clean slate: an earlier run's KeystoneAPI goes first.
    let _ = env.keystones().delete(NAME, &DeleteParams::default()).await;
    test_support::wait::until("previous KeystoneAPI gone", Duration::from_secs(60), || async {
        match env.keystones().get_opt(NAME).await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|o| o.is_some()))),
        }
    })
    .await;

    let t = Instant::now();
    let access = basic_example(&env).await;
    println!(
        "e2e: scenario 1 (basic example, 2 replicas, real client) in {:?}; ec2 credential {access}",
        t.elapsed()
    );

    let t = Instant::now();
    config_change(&env).await;
    println!(
        "e2e: scenario 3 (config change rolls the pods, a rotation does not) in {:?}",
        t.elapsed()
    );

    let t = Instant::now();
    password_changes(&env).await;
    println!(
        "e2e: scenario 4 (admin and database password changes) in {:?}",
        t.elapsed()
    );

    let t = Instant::now();
    delete_and_recreate(&env, &access, NEW_ADMIN_PASSWORD, NEW_DB_PASSWORD).await;
    println!(
        "e2e: scenario 7 (delete keeps the database and credential keys; re-created, credentials decrypt) in {:?}",
        t.elapsed()
    );
}
