//! The catalog controllers (KeystoneService, KeystoneEndpoint) in the api controller process against the real
//! API server, on the paths that do not need a Keystone: which KeystoneAPI an object belongs to (none,
//! several, not Ready), deletion that never hangs, and a Keystone outage that backs off instead of looping.
//! Registration against a real Keystone is `make e2e` scenario 9.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use keystone_types::KeystoneAPI;
use keystone_types::catalog::{KeystoneEndpoint, KeystoneService, SERVICE_FINALIZER};
use keystone_types::conditions::{self, Controller};
use keystone_types::v1beta1::DatabaseStatus;
use keystone_types::{KeystoneAPIStatus, catalog};
use operator_common::conditions::Desired;
use test_support::pods::{Outcome, PodDriver};
use test_support::process::ControllerProcess;
use test_support::{TestNamespace, test_cluster, wait};

const BINARY: &str = env!("CARGO_BIN_EXE_keystone-api-controller");
const IMAGE: &str = "quay.io/podified-antelope-centos9/openstack-keystone:current-podified";

fn keystone_api(name: &str) -> KeystoneAPI {
    serde_json::from_value(json!({
        "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI",
        "metadata": {"name": name}, "spec": {"containerImage": IMAGE, "replicas": 1, "secret": "osp-secret"},
    }))
    .unwrap()
}

fn keystone_service(name: &str, extra: Value) -> KeystoneService {
    let mut spec = json!({"serviceType": "placement", "serviceName": name, "serviceUser": name,
                          "secret": "osp-secret", "passwordSelector": "PlacementPassword"});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

/// Writes the fernet and db controllers' rows as they would (each under its own field manager).
async fn play_other_controllers(client: &Client, ns: &str, name: &str) {
    let keystones: Api<KeystoneAPI> = Api::namespaced(client.clone(), ns);
    let ks = keystones.get(name).await.unwrap();
    for c in [Controller::Fernet, Controller::Db] {
        let desired: Vec<Desired> = conditions::owned_by(c)
            .map(|t| Desired::ok(t, "Succeeded", "simulated"))
            .collect();
        let existing = ks
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let (conds, _) = operator_common::conditions::reconcile(
            &existing,
            &desired,
            ks.metadata.generation,
            Timestamp::now(),
        );
        let mut status = KeystoneAPIStatus {
            conditions: Some(conds),
            ..Default::default()
        };
        if c == Controller::Db {
            let osp = Api::<Secret>::namespaced(client.clone(), ns)
                .get("osp-secret")
                .await
                .unwrap();
            status.database = Some(DatabaseStatus {
                synced_image: Some(IMAGE.into()),
                password_secret_version: osp.metadata.resource_version.clone(),
                ..Default::default()
            });
        }
        operator_common::apply::apply_status(&keystones, name, c, &status)
            .await
            .unwrap();
    }
}

/// The condition `type_` of a KeystoneService, for its current generation.
async fn service_condition(
    services: &Api<KeystoneService>,
    name: &str,
    type_: &str,
) -> Result<(String, String, String), String> {
    let s = services.get(name).await.map_err(|e| e.to_string())?;
    let gen_ = s.metadata.generation;
    s.status
        .and_then(|st| st.conditions)
        .and_then(|cs| {
            cs.into_iter()
                .find(|c| c.type_ == type_ && c.observed_generation == gen_)
        })
        .map(|c| (c.status, c.reason, c.message))
        .ok_or_else(|| format!("no {type_} for generation {gen_:?}"))
}

async fn wait_service_condition(
    services: &Api<KeystoneService>,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> String {
    wait::until(
        &format!("{name} {type_}={status} {reason}"),
        Duration::from_secs(120),
        || async {
            match service_condition(services, name, type_).await? {
                (s, r, m) if s == status && r == reason => Ok(m),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

async fn wait_gone<K>(api: &Api<K>, name: &str, within: Duration)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait::until(&format!("{name} deleted"), within, || async {
        match api.get_opt(name).await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|o| o.is_some()))),
        }
    })
    .await;
}

/// The value of a metric line starting with `prefix` (0 when absent).
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A namespace with the seed's Secret (plus a placement password) and the api controller watching it, started
/// with `args`.
async fn namespace_with_controller(
    prefix: &str,
    args: impl FnOnce(&str) -> Vec<String>,
) -> (Client, TestNamespace, ControllerProcess) {
    let cluster = test_cluster().await;
    let client = cluster.client().await;
    let ns = TestNamespace::new(&client, prefix).await;
    let osp: Secret = serde_json::from_value(json!({
        "metadata": {"name": "osp-secret"},
        "stringData": {"AdminPassword": "admin$pw", "KeystoneDatabasePassword": "db", "DbRootPassword": "root",
                       "PlacementPassword": "placement$pw"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &osp)
        .await
        .unwrap();
    let args = args(&ns.name);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut proc = ControllerProcess::start(BINARY, cluster, Some(&ns.name), &args);
    proc.wait_ready().await;
    (client, ns, proc)
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_objects_find_their_keystone_api_back_off_on_an_outage_and_never_hang_on_deletion() {
    // Keystone "runs" on a socket that never answers (held for the whole test, so that no other process gets
    // the port): every Keystone call times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (client, ns, proc) = namespace_with_controller("catalog", |ns| {
        vec![
            "--keystone-url".into(),
            format!("{ns}/keystone=http://{}", silent.local_addr().unwrap()),
            "--keystone-timeout".into(),
            "2s".into(),
        ]
    })
    .await;
    let services: Api<KeystoneService> = Api::namespaced(client.clone(), &ns.name);
    let endpoints: Api<KeystoneEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let keystones: Api<KeystoneAPI> = Api::namespaced(client.clone(), &ns.name);

    // No KeystoneAPI in the namespace: said so, and deletion does not wait for one.
    services
        .create(&PostParams::default(), &keystone_service("placement", json!({})))
        .await
        .unwrap();
    let msg = wait_service_condition(
        &services,
        "placement",
        catalog::conditions::KEYSTONE_API_READY,
        "False",
        catalog::conditions::reasons::KEYSTONE_API_NOT_FOUND,
    )
    .await;
    assert!(msg.contains("no KeystoneAPI"), "{msg}");
    let ready = service_condition(&services, "placement", catalog::conditions::READY)
        .await
        .unwrap();
    assert_eq!(
        (ready.0.as_str(), ready.1.as_str()),
        ("False", "KeystoneAPINotFound")
    );
    let s = services.get("placement").await.unwrap();
    assert!(
        s.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&SERVICE_FINALIZER.to_owned())
    );
    services
        .delete("placement", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&services, "placement", Duration::from_secs(15)).await;

    // Two KeystoneAPIs: the object must say which; the message names both.
    keystones
        .create(&PostParams::default(), &keystone_api("keystone"))
        .await
        .unwrap();
    keystones
        .create(&PostParams::default(), &keystone_api("other"))
        .await
        .unwrap();
    services
        .create(&PostParams::default(), &keystone_service("placement", json!({})))
        .await
        .unwrap();
    let msg = wait_service_condition(
        &services,
        "placement",
        catalog::conditions::KEYSTONE_API_READY,
        "False",
        catalog::conditions::reasons::KEYSTONE_API_AMBIGUOUS,
    )
    .await;
    assert!(
        msg.contains("keystone, other") && msg.contains("spec.keystoneAPI"),
        "{msg}"
    );
    keystones.delete("other", &DeleteParams::default()).await.unwrap();
    // Now it is the only one, but not Ready (nothing runs it yet).
    let msg = wait_service_condition(
        &services,
        "placement",
        catalog::conditions::KEYSTONE_API_READY,
        "False",
        catalog::conditions::reasons::WAITING_FOR_KEYSTONE_API,
    )
    .await;
    assert!(msg.contains("KeystoneAPI keystone is not Ready"), "{msg}");

    // The KeystoneAPI becomes Ready (the other controllers played, the pods driven).
    play_other_controllers(&client, &ns.name, "keystone").await;
    let driver = PodDriver::new(&client, &ns.name);
    wait::until("KeystoneAPI Ready", Duration::from_secs(90), || async {
        driver
            .drive_pending(
                "app.kubernetes.io/component=api",
                Outcome::Running { ready: true },
            )
            .await
            .map_err(|e| e.to_string())?;
        let ks = keystones.get("keystone").await.map_err(|e| e.to_string())?;
        test_support::keystone::condition_is(&ks, conditions::READY, "True")
    })
    .await;

    // Keystone is unreachable: the step says so, and retries back off (5 s, 10 s, 20 s, ...), no hot loop.
    let msg = wait_service_condition(
        &services,
        "placement",
        catalog::conditions::SERVICE_REGISTERED,
        "False",
        catalog::conditions::reasons::KEYSTONE_UNAVAILABLE,
    )
    .await;
    assert!(
        msg.contains("listing services") && msg.contains("retrying with backoff"),
        "{msg}"
    );
    assert!(
        msg.to_lowercase().contains("timed out") || msg.to_lowercase().contains("timeout"),
        "{msg}"
    );
    assert!(!msg.contains("admin$pw"));
    let failures = r#"keystone_api_catalog_reconcile_failures_total{category="keystone_unavailable",kind="KeystoneService"}"#;
    let start = metric(&proc.metrics().await, failures);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = metric(&proc.metrics().await, failures) - start;
    eprintln!("{during} failed reconciles in {:?} of outage", t.elapsed());
    assert!(
        (1.0..=5.0).contains(&during),
        "{during} failed reconciles in 30 s: expected a few with exponential backoff"
    );

    // An endpoint of that service waits for it.
    let ep: KeystoneEndpoint = serde_json::from_value(json!({
        "metadata": {"name": "placement"},
        "spec": {"serviceName": "placement", "endpoints": {"internal": "http://placement:8778"}}
    }))
    .unwrap();
    endpoints.create(&PostParams::default(), &ep).await.unwrap();
    wait::until(
        "endpoint waits for its service",
        Duration::from_secs(30),
        || async {
            let e = endpoints.get("placement").await.map_err(|e| e.to_string())?;
            let gen_ = e.metadata.generation;
            let c = e
                .status
                .and_then(|s| s.conditions)
                .and_then(|cs| {
                    cs.into_iter()
                        .find(|c| c.type_ == "ServiceReady" && c.observed_generation == gen_)
                })
                .ok_or("no ServiceReady")?;
            if c.status == "False"
                && c.reason == "WaitingForService"
                && c.message.contains("placement is not Ready")
            {
                Ok(())
            } else {
                Err(format!("{c:?}"))
            }
        },
    )
    .await;

    // Deleting during the outage: nothing was registered, so nothing to remove; the objects go at once.
    endpoints
        .delete("placement", &DeleteParams::default())
        .await
        .unwrap();
    services
        .delete("placement", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&endpoints, "placement", Duration::from_secs(15)).await;
    wait_gone(&services, "placement", Duration::from_secs(15)).await;

    // Deleting the namespace with a KeystoneAPI and catalog objects in it completes.
    services
        .create(
            &PostParams::default(),
            &keystone_service("nova", json!({"serviceType": "compute"})),
        )
        .await
        .unwrap();
    wait_service_condition(
        &services,
        "nova",
        catalog::conditions::SERVICE_REGISTERED,
        "False",
        catalog::conditions::reasons::KEYSTONE_UNAVAILABLE,
    )
    .await;
    drop(silent);
    let output = proc.output();
    assert!(
        !output.contains("admin$pw") && !output.contains("placement$pw"),
        "a password in the logs"
    );
    let name = ns.name.clone();
    let t = Instant::now();
    ns.delete().await;
    // The catalog objects go with the namespace (the pod driver plays the kubelet for the API pod).
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    wait::until("the namespace deleted", Duration::from_secs(90), || async {
        driver.reap_terminating().await.map_err(|e| e.to_string())?;
        match namespaces.get_opt(&name).await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|o| o.and_then(|n| n.status)))),
        }
    })
    .await;
    eprintln!(
        "namespace {name} with a KeystoneAPI and a KeystoneService deleted in {:?}",
        t.elapsed()
    );
}

/// A KeystoneService that created its user and service in Keystone, deleted while its KeystoneAPI exists but
/// is not Ready: the finalizer stays and the object says it waits (`WaitingToDelete`) instead of leaving the user
/// behind; once the KeystoneAPI is gone there is nothing left to remove them from, and the object goes.
#[tokio::test(flavor = "multi_thread")]
async fn deletion_waits_for_a_keystone_api_that_is_not_ready() {
    use kube::api::{Patch, PatchParams};
    let (client, ns, _proc) = namespace_with_controller("catalog-wait", |_| Vec::new()).await;
    let services: Api<KeystoneService> = Api::namespaced(client.clone(), &ns.name);
    let keystones: Api<KeystoneAPI> = Api::namespaced(client.clone(), &ns.name);
    keystones
        .create(&PostParams::default(), &keystone_api("keystone"))
        .await
        .unwrap();
    services
        .create(&PostParams::default(), &keystone_service("placement", json!({})))
        .await
        .unwrap();
    wait_service_condition(
        &services,
        "placement",
        catalog::conditions::KEYSTONE_API_READY,
        "False",
        catalog::conditions::reasons::WAITING_FOR_KEYSTONE_API,
    )
    .await;
    // What the object records after creating its user and service in Keystone (while the KeystoneAPI was Ready).
    services
        .patch_status(
            "placement",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"status": {"keystoneAPI": "keystone", "serviceID": "s-1", "serviceAdopted": false,
                                             "userID": "u-1", "userAdopted": false}}),
            ),
        )
        .await
        .unwrap();
    services
        .delete("placement", &DeleteParams::default())
        .await
        .unwrap();
    let msg = wait_service_condition(
        &services,
        "placement",
        catalog::conditions::KEYSTONE_API_READY,
        "False",
        catalog::conditions::reasons::DELETION_WAITING,
    )
    .await;
    assert!(
        msg.contains("waiting for the KeystoneAPI to remove the user and service this object created")
            && msg.contains("KeystoneAPI keystone is not Ready"),
        "{msg}"
    );
    let waiting = services.get("placement").await.unwrap();
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert!(
        waiting
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&SERVICE_FINALIZER.to_owned())
    );
    // The KeystoneAPI goes: what it held goes with it, and so does the object.
    keystones
        .delete("keystone", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&keystones, "keystone", Duration::from_secs(30)).await;
    wait_gone(&services, "placement", Duration::from_secs(30)).await;
    ns.delete().await;
}
