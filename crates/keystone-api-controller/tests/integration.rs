//! The api controller as a separate process against the real API server, kube-controller-manager and the pod
//! driver. The other two controllers are played by status writes under their own field managers, as the real
//! ones make them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use keystone_types::conditions::{self, Controller};
use keystone_types::v1beta1::DatabaseStatus;
use keystone_types::{KeystoneAPI, KeystoneAPIStatus};
use operator_common::conditions::Desired;
use test_support::pods::{Outcome, PodDriver};
use test_support::process::ControllerProcess;
use test_support::{TestNamespace, test_cluster, wait};

const BINARY: &str = env!("CARGO_BIN_EXE_keystone-api-controller");
const IMAGE_A: &str = "quay.io/podified-antelope-centos9/openstack-keystone:current-podified";
const IMAGE_B: &str = "quay.io/podified-antelope-centos9/openstack-keystone:next";

struct Env {
    client: Client,
    ns: TestNamespace,
    keystones: Api<KeystoneAPI>,
    deployments: Api<Deployment>,
    services: Api<Service>,
    driver: PodDriver,
    proc: ControllerProcess,
}

impl Env {
    async fn new(prefix: &str) -> Env {
        let cluster = test_cluster().await;
        let client = cluster.client().await;
        let ns = TestNamespace::new(&client, prefix).await;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
        let osp: Secret = serde_json::from_value(json!({
            "metadata": {"name": "osp-secret"},
            "stringData": {"AdminPassword": "admin$pw", "KeystoneDatabasePassword": "db'$pw{{x}}", "DbRootPassword": "root"},
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &osp).await.unwrap();
        let mut proc = ControllerProcess::start(BINARY, cluster, Some(&ns.name), &[]);
        proc.wait_ready().await;
        Env {
            keystones: Api::namespaced(client.clone(), &ns.name),
            deployments: Api::namespaced(client.clone(), &ns.name),
            services: Api::namespaced(client.clone(), &ns.name),
            driver: PodDriver::new(&client, &ns.name),
            client,
            ns,
            proc,
        }
    }

    async fn create(&self, spec: Value) {
        let ks: KeystoneAPI = serde_json::from_value(json!({
            "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI",
            "metadata": {"name": "keystone"}, "spec": spec,
        }))
        .unwrap();
        self.keystones.create(&PostParams::default(), &ks).await.unwrap();
    }

    async fn patch_spec(&self, spec: Value) {
        self.keystones
            .patch(
                "keystone",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": spec})),
            )
            .await
            .unwrap();
    }

    /// Writes the other controllers' rows as they would: each under its own field manager.
    async fn play_other_controllers(&self, synced_image: &str) {
        let ks = self.keystones.get("keystone").await.unwrap();
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
                let osp = Api::<Secret>::namespaced(self.client.clone(), &self.ns.name)
                    .get("osp-secret")
                    .await
                    .unwrap();
                status.database = Some(DatabaseStatus {
                    synced_image: Some(synced_image.into()),
                    password_secret_version: osp.metadata.resource_version.clone(),
                    ..Default::default()
                });
            }
            operator_common::apply::apply_status(&self.keystones, "keystone", c, &status)
                .await
                .unwrap();
        }
    }

    async fn condition(
        &self,
        type_: &str,
    ) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        let ks = self.keystones.get("keystone").await.ok()?;
        ks.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == type_ && c.observed_generation == ks.metadata.generation)
    }

    async fn wait_condition(&self, type_: &str, status: &str, reason: Option<&str>) -> String {
        wait::until(
            &format!("{type_}={status} {reason:?}"),
            Duration::from_secs(60),
            || async {
                match self.condition(type_).await {
                    Some(c) if c.status == status && reason.is_none_or(|r| r == c.reason) => Ok(c.message),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await
    }

    /// Drives pending API pods to Ready until the Deployment reports `ready` ready replicas.
    async fn drive_until_ready(&self, ready: i32) {
        wait::until(
            &format!("{ready} ready API pods"),
            Duration::from_secs(60),
            || async {
                self.driver
                    .drive_pending(
                        "app.kubernetes.io/component=api",
                        Outcome::Running { ready: true },
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                self.driver.reap_terminating().await.map_err(|e| e.to_string())?;
                let d = self
                    .deployments
                    .get("keystone-api")
                    .await
                    .map_err(|e| e.to_string())?;
                let st = d.status.unwrap_or_default();
                if st.ready_replicas.unwrap_or(0) == ready
                    && st.updated_replicas.unwrap_or(0) == ready
                    && st.replicas.unwrap_or(0) == ready
                {
                    Ok(())
                } else {
                    Err(format!("{st:?}"))
                }
            },
        )
        .await;
    }

    async fn template_image(&self) -> String {
        let d = self.deployments.get("keystone-api").await.unwrap();
        d.spec.template.spec.unwrap().containers[0].image.clone().unwrap()
    }

    async fn template_annotations(&self) -> std::collections::BTreeMap<String, String> {
        let d = self.deployments.get("keystone-api").await.unwrap();
        d.spec.template.metadata.unwrap().annotations.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_example_config_services_gates_and_ready() {
    let env = Env::new("api-basic").await;
    env.create(json!({"containerImage": IMAGE_A, "replicas": 1, "secret": "osp-secret"}))
        .await;

    // Config and Services come first, whatever the other controllers say.
    let msg = env.wait_condition(conditions::CONFIG_READY, "True", None).await;
    assert!(msg.contains("keystone-config-"), "{msg}");
    env.wait_condition(conditions::SERVICE_READY, "True", None).await;
    let ks = env.keystones.get("keystone").await.unwrap();
    let st = ks.status.clone().unwrap();
    let api = st.api.unwrap();
    let cm: ConfigMap = Api::namespaced(env.client.clone(), &env.ns.name)
        .get(api.config_map.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(cm.immutable, Some(true));
    assert!(cm.data.as_ref().unwrap()["keystone.conf"].contains("max_active_keys = 5"));
    assert!(
        !serde_json::to_string(&cm).unwrap().contains("$pw"),
        "a password reached the ConfigMap"
    );
    let sec: Secret = Api::namespaced(env.client.clone(), &env.ns.name)
        .get(api.config_secret.as_ref().unwrap())
        .await
        .unwrap();
    let data = sec.data.unwrap();
    let text = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
    assert!(
        text("00-secrets.conf").contains("mysql+pymysql://keystone@openstack:3306/keystone?"),
        "{}",
        text("00-secrets.conf")
    );
    assert!(
        text("my.cnf").contains("password = \"db'$pw{{x}}\""),
        "{}",
        text("my.cnf")
    );
    let endpoints = st.api_endpoints.unwrap();
    assert_eq!(
        endpoints.internal.as_deref(),
        Some(format!("http://keystone-internal.{}.svc:5000", env.ns.name).as_str())
    );
    assert_eq!(
        endpoints.public.as_deref(),
        Some(format!("http://keystone-public.{}.svc:5000", env.ns.name).as_str())
    );
    for svc in ["keystone-internal", "keystone-public"] {
        let s = env.services.get(svc).await.unwrap().spec.unwrap();
        assert_eq!(s.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(s.ports.unwrap()[0].port, 5000);
    }

    // The Deployment waits for the keys, db-sync and bootstrap.
    let msg = env
        .wait_condition(
            conditions::DEPLOYMENT_READY,
            "False",
            Some("WaitingForFernetKeys"),
        )
        .await;
    assert!(msg.contains("FernetKeysReady"), "{msg}");
    assert!(
        env.deployments.get_opt("keystone-api").await.unwrap().is_none(),
        "Deployment created before its gates"
    );
    env.wait_condition(conditions::READY, "False", None).await;

    env.play_other_controllers(IMAGE_A).await;
    wait::until("the Deployment", Duration::from_secs(30), || async {
        env.deployments
            .get_opt("keystone-api")
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "absent".to_string())
    })
    .await;
    env.drive_until_ready(1).await;
    env.wait_condition(conditions::DEPLOYMENT_READY, "True", Some("Available"))
        .await;
    env.wait_condition(conditions::NETWORK_ATTACHMENTS_READY, "True", None)
        .await;
    env.wait_condition(conditions::READY, "True", Some("AllReady"))
        .await;
    let ks = env.keystones.get("keystone").await.unwrap();
    assert_eq!(ks.status.as_ref().unwrap().ready_count, Some(1));

    // The pod contract: keys mounted whole with 0440 and fsGroup 42425, no service account token.
    let d = env.deployments.get("keystone-api").await.unwrap();
    let pod = d.spec.template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.security_context.as_ref().unwrap().fs_group, Some(42425));
    let vols = pod.volumes.unwrap();
    let fernet = vols
        .iter()
        .find(|v| v.name == "fernet-keys")
        .unwrap()
        .secret
        .clone()
        .unwrap();
    assert_eq!(fernet.secret_name.as_deref(), Some("keystone-fernet-keys"));
    assert_eq!(fernet.default_mode, Some(0o440));
    assert!(fernet.items.is_none());
    assert!(
        pod.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .all(|m| m.sub_path.is_none())
    );
    // A deleted pod keeps serving while it leaves the endpoints (the apiserver keeps the sleep action).
    let pre_stop = pod.containers[0]
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.sleep.as_ref())
        .map(|s| s.seconds);
    assert_eq!(pre_stop, Some(5));

    // managedFields: this controller owns only its own status rows.
    let mine = ks
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter(|m| m.manager.as_deref() == Some("keystone-api-controller"))
        .collect::<Vec<_>>();
    assert_eq!(mine.len(), 1);
    let fields = serde_json::to_string(&mine[0].fields_v1).unwrap();
    for own in [
        "ConfigReady",
        "ServiceReady",
        "DeploymentReady",
        "NetworkAttachmentsReady",
        "\\\"Ready\\\"",
        "f:apiEndpoints",
        "f:api",
        "f:readyCount",
    ] {
        assert!(fields.contains(own), "{own} not owned: {fields}");
    }
    for foreign in ["FernetKeysReady", "DBSyncReady", "f:fernet", "f:database"] {
        assert!(!fields.contains(foreign), "{foreign} claimed: {fields}");
    }

    // Deleting the KeystoneAPI collects every child.
    env.keystones
        .delete("keystone", &DeleteParams::foreground())
        .await
        .unwrap();
    wait::until("children collected", Duration::from_secs(60), || async {
        env.driver.reap_terminating().await.map_err(|e| e.to_string())?;
        let d = env
            .deployments
            .get_opt("keystone-api")
            .await
            .map_err(|e| e.to_string())?;
        let s = env
            .services
            .get_opt("keystone-public")
            .await
            .map_err(|e| e.to_string())?;
        let cms = Api::<ConfigMap>::namespaced(env.client.clone(), &env.ns.name)
            .list(
                &kube::api::ListParams::default()
                    .labels("app.kubernetes.io/managed-by=keystone-api-controller"),
            )
            .await
            .map_err(|e| e.to_string())?;
        if d.is_none() && s.is_none() && cms.items.is_empty() {
            Ok(())
        } else {
            Err("children remain".to_string())
        }
    })
    .await;
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rolls_on_config_and_image_only_when_it_should() {
    let env = Env::new("api-roll").await;
    env.create(json!({"containerImage": IMAGE_A, "replicas": 1}))
        .await;
    env.wait_condition(conditions::CONFIG_READY, "True", None).await;
    env.play_other_controllers(IMAGE_A).await;
    env.drive_until_ready(1).await;
    let first = env.template_annotations().await;

    // A replica change is no rollout.
    env.patch_spec(json!({"replicas": 2})).await;
    env.play_other_controllers(IMAGE_A).await;
    env.drive_until_ready(2).await;
    assert_eq!(
        env.template_annotations().await,
        first,
        "scaling changed the pod template"
    );
    // a PDB exists with more than one replica
    let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        Api::namespaced(env.client.clone(), &env.ns.name);
    assert!(pdbs.get_opt("keystone-api").await.unwrap().is_some());

    // A key rotation is no rollout.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns.name);
    let keys: Secret = serde_json::from_value(
        json!({"metadata": {"name": "keystone-fernet-keys"}, "stringData": {"0": "a", "1": "b"}}),
    )
    .unwrap();
    secrets.create(&PostParams::default(), &keys).await.unwrap();
    secrets
        .patch(
            "keystone-fernet-keys",
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {"2": "c"}})),
        )
        .await
        .unwrap();
    env.patch_spec(json!({"replicas": 2, "region": "regionOne"}))
        .await; // force a reconcile
    env.play_other_controllers(IMAGE_A).await;
    env.wait_condition(conditions::DEPLOYMENT_READY, "True", None)
        .await;
    assert_eq!(
        env.template_annotations().await,
        first,
        "a key change rolled the pods"
    );

    // A config change rolls.
    env.patch_spec(json!({"memcachedServers": ["memcached:11211"]}))
        .await;
    wait::until(
        "a new config hash on the pod template",
        Duration::from_secs(30),
        || async {
            let a = env.template_annotations().await;
            if a != first {
                Ok(())
            } else {
                Err("unchanged".to_string())
            }
        },
    )
    .await;

    // A new database password reaches the pods only after the database has it.
    env.play_other_controllers(IMAGE_A).await;
    env.drive_until_ready(2).await;
    env.wait_condition(conditions::DEPLOYMENT_READY, "True", None)
        .await;
    let before = env.template_annotations().await;
    Api::<Secret>::namespaced(env.client.clone(), &env.ns.name)
        .patch(
            "osp-secret",
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {"KeystoneDatabasePassword": "rotated"}})),
        )
        .await
        .unwrap();
    let msg = env
        .wait_condition(
            conditions::DEPLOYMENT_READY,
            "False",
            Some("WaitingForDatabasePassword"),
        )
        .await;
    assert!(msg.contains("osp-secret"), "{msg}");
    assert_eq!(
        env.template_annotations().await,
        before,
        "pods got a password the database does not have yet"
    );
    env.play_other_controllers(IMAGE_A).await;
    wait::until(
        "the new password's config on the pods",
        Duration::from_secs(30),
        || async {
            if env.template_annotations().await != before {
                Ok(())
            } else {
                Err("unchanged".to_string())
            }
        },
    )
    .await;

    // A new image waits for its db-sync; the pods keep the old image meanwhile.
    env.patch_spec(json!({"containerImage": IMAGE_B})).await;
    env.play_other_controllers(IMAGE_A).await;
    let msg = env
        .wait_condition(conditions::DEPLOYMENT_READY, "False", Some("WaitingForDBSync"))
        .await;
    assert!(msg.contains(IMAGE_B), "{msg}");
    assert_eq!(
        env.template_image().await,
        IMAGE_A,
        "rolled to an image before its db-sync"
    );
    assert_eq!(
        env.deployments.get("keystone-api").await.unwrap().spec.replicas,
        Some(2),
        "a closed gate scaled down"
    );
    env.play_other_controllers(IMAGE_B).await;
    wait::until("the new image", Duration::from_secs(30), || async {
        let i = env.template_image().await;
        if i == IMAGE_B { Ok(()) } else { Err(i) }
    })
    .await;
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn external_endpoint_becomes_a_metallb_load_balancer() {
    let env = Env::new("api-lb").await;
    env.create(json!({
        "externalEndpoints": [{"endpoint": "internal", "ipAddressPool": "osp-internalapi", "loadBalancerIPs": ["172.17.0.202"], "sharedIP": true, "sharedIPKey": ""}]
    }))
    .await;
    env.wait_condition(conditions::SERVICE_READY, "True", None).await;
    let internal = env.services.get("keystone-internal").await.unwrap();
    assert_eq!(
        internal.spec.as_ref().unwrap().type_.as_deref(),
        Some("LoadBalancer")
    );
    let a = internal.annotations();
    for prefix in ["metallb.io", "metallb.universe.tf"] {
        assert_eq!(a[&format!("{prefix}/address-pool")], "osp-internalapi");
        assert_eq!(a[&format!("{prefix}/loadBalancerIPs")], "172.17.0.202");
        assert_eq!(a[&format!("{prefix}/allow-shared-ip")], "osp-internalapi");
    }
    let public = env.services.get("keystone-public").await.unwrap();
    assert_eq!(public.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
    // still registered under its service name
    let ks = env.keystones.get("keystone").await.unwrap();
    assert_eq!(
        ks.status.unwrap().api_endpoints.unwrap().internal.unwrap(),
        format!("http://keystone-internal.{}.svc:5000", env.ns.name)
    );
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn network_attachments_are_checked_and_reported() {
    let env = Env::new("api-nad").await;
    env.create(json!({"networkAttachments": ["storage"]})).await;
    let msg = env
        .wait_condition(
            conditions::NETWORK_ATTACHMENTS_READY,
            "False",
            Some("NetworkAttachmentDefinitionMissing"),
        )
        .await;
    assert!(msg.contains("storage"), "{msg}");

    // Install a minimal NAD CRD and the NAD.
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(env.client.clone());
    let crd = serde_json::from_value(json!({
        "metadata": {"name": "network-attachment-definitions.k8s.cni.cncf.io"},
        "spec": {"group": "k8s.cni.cncf.io", "scope": "Namespaced",
            "names": {"plural": "network-attachment-definitions", "singular": "network-attachment-definition", "kind": "NetworkAttachmentDefinition", "shortNames": ["net-attach-def"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) | Err(kube::Error::Api(_)) => {}
        Err(e) => panic!("{e}"),
    }
    let nads: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &env.ns.name,
        &keystone_api_controller::read::nad_resource(),
    );
    let nad: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "storage"}, "spec": {"config": "{}"}
    }))
    .unwrap();
    wait::until("the NAD to be created", Duration::from_secs(30), || async {
        nads.create(&PostParams::default(), &nad)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    env.play_other_controllers(IMAGE_A).await;
    let d = wait::until("the Deployment", Duration::from_secs(60), || async {
        env.play_other_controllers(IMAGE_A).await;
        env.deployments
            .get_opt("keystone-api")
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "absent".to_string())
    })
    .await;
    assert_eq!(
        d.spec.template.metadata.unwrap().annotations.unwrap()["k8s.v1.cni.cncf.io/networks"],
        "storage"
    );
    env.drive_until_ready(1).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(env.client.clone(), &env.ns.name);
    let pod = pods
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/component=api"))
        .await
        .unwrap()
        .items
        .remove(0);
    env.driver
        .set_network_status(&pod.name_any(), &[("storage", "172.18.0.52")])
        .await
        .unwrap();
    env.wait_condition(conditions::NETWORK_ATTACHMENTS_READY, "True", Some("Attached"))
        .await;
    let ks = env.keystones.get("keystone").await.unwrap();
    assert_eq!(
        ks.status.unwrap().network_attachments.unwrap()["storage"],
        vec!["172.18.0.52".to_string()]
    );
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_custom_config_is_refused_but_services_are_still_published() {
    let env = Env::new("api-custom").await;
    env.create(json!({"customServiceConfig": "[fernet_tokens]\nmax_active_keys = 2\n"}))
        .await;
    let msg = env
        .wait_condition(conditions::CONFIG_READY, "False", Some("InvalidSpec"))
        .await;
    assert!(
        msg.contains("[fernet_tokens] max_active_keys") && msg.contains("spec.fernet"),
        "{msg}"
    );
    env.wait_condition(conditions::SERVICE_READY, "True", None).await;
    let cms = Api::<ConfigMap>::namespaced(env.client.clone(), &env.ns.name)
        .list(
            &kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=keystone-api-controller"),
        )
        .await
        .unwrap();
    assert!(cms.items.is_empty(), "a refused config was applied");
    // Fixing the spec heals it.
    env.patch_spec(json!({"customServiceConfig": "[DEFAULT]\ndebug = true\n"}))
        .await;
    env.wait_condition(conditions::CONFIG_READY, "True", None).await;
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ingress_and_url_overrides_publish_the_public_endpoint() {
    let env = Env::new("api-ingress").await;
    env.create(json!({"ingress": {"host": "keystone.example.com", "className": "nginx", "tlsSecretName": "keystone-tls"}})).await;
    env.wait_condition(conditions::SERVICE_READY, "True", None).await;
    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> =
        Api::namespaced(env.client.clone(), &env.ns.name);
    let ing = ingresses.get("keystone-public").await.unwrap().spec.unwrap();
    assert_eq!(ing.ingress_class_name.as_deref(), Some("nginx"));
    assert_eq!(
        ing.rules.unwrap()[0].host.as_deref(),
        Some("keystone.example.com")
    );
    let ks = env.keystones.get("keystone").await.unwrap();
    assert_eq!(
        ks.status.unwrap().api_endpoints.unwrap().public.as_deref(),
        Some("https://keystone.example.com")
    );

    // An override wins; the Ingress it replaces is removed.
    env.keystones
        .patch(
            "keystone",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"ingress": null, "endpointURLs": {"public": "https://id.example.org:8443", "internal": "http://keystone.internal.example:5000"}}})),
        )
        .await
        .unwrap();
    wait::until(
        "the override published and the Ingress gone",
        Duration::from_secs(30),
        || async {
            let ks = env.keystones.get("keystone").await.map_err(|e| e.to_string())?;
            let ep = ks.status.and_then(|s| s.api_endpoints).unwrap_or_default();
            let gone = ingresses
                .get_opt("keystone-public")
                .await
                .map_err(|e| e.to_string())?
                .is_none();
            if ep.public.as_deref() == Some("https://id.example.org:8443")
                && ep.internal.as_deref() == Some("http://keystone.internal.example:5000")
                && gone
            {
                Ok(())
            } else {
                Err(format!("{ep:?}, ingress gone: {gone}"))
            }
        },
    )
    .await;
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_openshift_the_public_endpoint_is_an_admitted_route() {
    // A control plane of its own: the Route and SCC APIs installed here would change every other test.
    let cluster = test_support::cluster::named_cluster("openshift", &["--no-kcm"]).await;
    let client = cluster.client().await;
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(client.clone());
    for (group, kind, plural, scope, status) in [
        ("route.openshift.io", "Route", "routes", "Namespaced", true),
        (
            "security.openshift.io",
            "SecurityContextConstraints",
            "securitycontextconstraints",
            "Cluster",
            false,
        ),
    ] {
        let mut version = json!({"name": "v1", "served": true, "storage": true,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}});
        if status {
            version["subresources"] = json!({"status": {}});
        }
        let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.{group}")},
            "spec": {"group": group, "scope": scope, "names": {"plural": plural, "kind": kind}, "versions": [version]}
        }))
        .unwrap();
        let pp = PatchParams::apply("test").force();
        crds.patch(&format!("{plural}.{group}"), &pp, &Patch::Apply(&crd))
            .await
            .unwrap();
    }
    let ns = TestNamespace::new(&client, "api-route").await;
    // What an operator without the chart's dedicated SCC bound: replaced, since a roleRef cannot change.
    let rbs: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(client.clone(), &ns.name);
    let older: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "keystone-keystone-scc"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:openshift:scc:nonroot-v2"},
        "subjects": [{"kind": "ServiceAccount", "name": "keystone-keystone", "namespace": ns.name}]
    }))
    .unwrap();
    rbs.create(&PostParams::default(), &older).await.unwrap();
    let mut proc = ControllerProcess::start(
        BINARY,
        &cluster,
        Some(&ns.name),
        &["--scc-cluster-role", "ops-keystone-operator-keystone-scc"],
    );
    proc.wait_ready().await;
    let keystones: Api<KeystoneAPI> = Api::namespaced(client.clone(), &ns.name);
    let ks: KeystoneAPI = serde_json::from_value(json!({
        "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI", "metadata": {"name": "keystone"}, "spec": {}
    }))
    .unwrap();
    let routes: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns.name,
        &keystone_api_controller::build::exposure::route_resource(),
    );
    // The Route API may take a moment to be discovered after its CRD is created.
    keystones.create(&PostParams::default(), &ks).await.unwrap();
    let route = wait::until("the Route", Duration::from_secs(60), || async {
        routes
            .get_opt("keystone-public")
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "absent".to_string())
    })
    .await;
    assert_eq!(route.data["spec"]["to"]["name"], "keystone-public");
    let pending = wait::until(
        "ServiceReady=False WaitingForRoute",
        Duration::from_secs(30),
        || async {
            let ks = keystones.get("keystone").await.map_err(|e| e.to_string())?;
            let st = ks.status.unwrap_or_default();
            let c = st
                .conditions
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == conditions::SERVICE_READY);
            match c {
                Some(c) if c.reason == "WaitingForRoute" => Ok(st.api_endpoints),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(
        pending.and_then(|e| e.public).is_none(),
        "a public URL was published before the Route was admitted"
    );

    // The router admits the Route.
    let host = format!("keystone-public-{}.apps.ostest.test.metalkube.org", ns.name);
    let status = json!({"status": {"ingress": [{"host": host, "routerName": "default",
        "conditions": [{"type": "Admitted", "status": "True"}]}]}});
    routes
        .patch_status("keystone-public", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    wait::until("the Route's URL published", Duration::from_secs(30), || async {
        let ks = keystones.get("keystone").await.map_err(|e| e.to_string())?;
        let public = ks.status.and_then(|s| s.api_endpoints).and_then(|e| e.public);
        if public.as_deref() == Some(format!("http://{host}").as_str()) {
            Ok(())
        } else {
            Err(format!("{public:?}"))
        }
    })
    .await;
    let rb = rbs.get("keystone-keystone-scc").await.unwrap();
    assert_eq!(rb.role_ref.name, "ops-keystone-operator-keystone-scc");
    assert_eq!(rb.subjects.unwrap()[0].name, "keystone-keystone");
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_keystones_in_one_namespace_get_their_own_objects() {
    let env = Env::new("api-two").await;
    for name in ["alpha", "beta"] {
        let ks: KeystoneAPI = serde_json::from_value(json!({
            "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI",
            "metadata": {"name": name}, "spec": {"replicas": 0, "region": name},
        }))
        .unwrap();
        env.keystones.create(&PostParams::default(), &ks).await.unwrap();
    }
    let endpoints = |name: &'static str| {
        let keystones = env.keystones.clone();
        async move {
            wait::until(&format!("{name} endpoints"), Duration::from_secs(30), || async {
                let ks = keystones.get(name).await.map_err(|e| e.to_string())?;
                let st = ks.status.unwrap_or_default();
                match (st.api_endpoints, st.api) {
                    (Some(e), Some(a)) if a.config_map.is_some() => Ok((e, a)),
                    other => Err(format!("{other:?}")),
                }
            })
            .await
        }
    };
    let (ea, aa) = endpoints("alpha").await;
    let (eb, ab) = endpoints("beta").await;
    assert_ne!(ea.internal, eb.internal);
    assert_ne!(aa.config_map, ab.config_map);
    for svc in ["alpha-internal", "alpha-public", "beta-internal", "beta-public"] {
        env.services.get(svc).await.unwrap();
    }
    env.ns.delete().await;
}

/// The config hash is keyed with a per-instance HMAC key the controller creates; a Secret of that name planted
/// before the KeystoneAPI (whose key the planter knows) is never adopted: ConfigReady says why and nothing is
/// rendered until it is gone. A key Secret the controller made and someone truncated is reported, not replaced.
#[tokio::test(flavor = "multi_thread")]
async fn a_planted_or_broken_hmac_key_is_reported_never_adopted() {
    let env = Env::new("api-hmac").await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns.name);
    let key_name = keystone_types::names::hmac_key_secret("keystone", Controller::Api);
    let planted: Secret = serde_json::from_value(json!({
        "metadata": {"name": key_name},
        "stringData": {"key": "k".repeat(32)},
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &planted).await.unwrap();
    env.create(json!({"containerImage": IMAGE_A, "replicas": 1, "secret": "osp-secret"}))
        .await;
    let msg = env
        .wait_condition(conditions::CONFIG_READY, "False", Some("HMACKeyUnusable"))
        .await;
    assert!(
        msg.contains(&key_name) && msg.contains("not created by the operator"),
        "{msg}"
    );
    // Nothing was rendered under the planted key, and the planted Secret is untouched.
    let cms = Api::<ConfigMap>::namespaced(env.client.clone(), &env.ns.name)
        .list(
            &kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=keystone-api-controller"),
        )
        .await
        .unwrap();
    assert!(cms.items.is_empty(), "config rendered under a planted key");
    let still = secrets.get(&key_name).await.unwrap();
    assert!(still.metadata.owner_references.is_none());
    assert_eq!(still.data.unwrap()["key"].0, "k".repeat(32).into_bytes());

    // Gone: the controller makes its own, owned by the KeystoneAPI, and the config renders.
    secrets.delete(&key_name, &DeleteParams::default()).await.unwrap();
    env.wait_condition(conditions::CONFIG_READY, "True", None).await;
    let ours = secrets.get(&key_name).await.unwrap();
    let ks = env.keystones.get("keystone").await.unwrap();
    let owner = &ours.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(Some(&owner.uid), ks.metadata.uid.as_ref());
    assert_eq!(owner.controller, Some(true));
    let key = ours.data.clone().unwrap()["key"].0.clone();
    assert_eq!(key.len(), operator_common::hmac::KEY_LEN);
    assert_ne!(key, "k".repeat(32).into_bytes());
    let hash = ks.status.unwrap().api.unwrap().config_hash.unwrap();
    assert_eq!(hash.len(), 16);

    // Truncated by hand: reported, never silently replaced (it decides which config the pods run).
    let mut broken = ours.clone();
    broken.data = Some([("key".to_owned(), k8s_openapi::ByteString(b"short".to_vec()))].into());
    broken.metadata.managed_fields = None;
    secrets
        .replace(&key_name, &PostParams::default(), &broken)
        .await
        .unwrap();
    // A spec change makes the controller look again.
    env.patch_spec(json!({"replicas": 2})).await;
    let msg = env
        .wait_condition(conditions::CONFIG_READY, "False", Some("HMACKeyUnusable"))
        .await;
    assert!(msg.contains("holds no key"), "{msg}");
    let after = secrets.get(&key_name).await.unwrap();
    assert_eq!(after.data.unwrap()["key"].0, b"short".to_vec());
    env.ns.delete().await;
}

/// Config objects of an earlier render stay while a live pod of the instance mounts them (here a db-sync Job's
/// pod that has not started yet, as the db controller creates them): collecting them would leave that pod stuck
/// in ContainerCreating. Once the pod is gone they are collected.
#[tokio::test(flavor = "multi_thread")]
async fn config_a_live_pod_mounts_is_not_collected() {
    use k8s_openapi::api::core::v1::Pod;
    let env = Env::new("api-gc").await;
    env.create(json!({"containerImage": IMAGE_A, "replicas": 1}))
        .await;
    env.wait_condition(conditions::CONFIG_READY, "True", None).await;
    env.play_other_controllers(IMAGE_A).await;
    env.drive_until_ready(1).await;
    let api = env
        .keystones
        .get("keystone")
        .await
        .unwrap()
        .status
        .unwrap()
        .api
        .unwrap();
    let (old_cm, old_secret) = (api.config_map.unwrap(), api.config_secret.unwrap());

    // A Job pod (as the db controller's Jobs make them) mounting the current config, not started yet.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns.name);
    let job_pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "keystone-db-sync-x-0-abcde", "labels": {
            "app.kubernetes.io/name": "keystone", "app.kubernetes.io/instance": "keystone",
            "app.kubernetes.io/component": "db-sync"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "keystone-manage", "image": IMAGE_A}],
                 "volumes": [{"name": "config", "configMap": {"name": old_cm}},
                             {"name": "config-secret", "secret": {"secretName": old_secret}}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &job_pod).await.unwrap();

    // A config change rolls the API pods onto a new config.
    env.patch_spec(json!({"customServiceConfig": "[DEFAULT]\ndebug = true\n"}))
        .await;
    env.play_other_controllers(IMAGE_A).await;
    let new_cm = wait::until("the new config published", Duration::from_secs(60), || async {
        let ks = env.keystones.get("keystone").await.map_err(|e| e.to_string())?;
        match ks.status.and_then(|s| s.api).and_then(|a| a.config_map) {
            Some(cm) if cm != old_cm => Ok(cm),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    env.drive_until_ready(1).await;
    env.wait_condition(conditions::DEPLOYMENT_READY, "True", None)
        .await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns.name);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns.name);
    // Several reconciles later (the Deployment rolled and is Ready), the mounted config is still there.
    env.patch_spec(json!({"customServiceConfig": "[DEFAULT]\ndebug = true\n", "region": "regionOne"}))
        .await;
    env.wait_condition(conditions::DEPLOYMENT_READY, "True", None)
        .await;
    assert!(cms.get_opt(&new_cm).await.unwrap().is_some());
    assert!(
        cms.get_opt(&old_cm).await.unwrap().is_some(),
        "{old_cm} was collected while a pod mounts it"
    );
    assert!(secrets.get_opt(&old_secret).await.unwrap().is_some());

    // The pod goes: so does the old config.
    pods.delete("keystone-db-sync-x-0-abcde", &DeleteParams::default())
        .await
        .unwrap();
    // Job pods do not wake the api controller; it looks again within a minute while it holds config back.
    wait::until("the old config collected", Duration::from_secs(90), || async {
        // Playing the kubelet: the old ReplicaSet's pods finish terminating.
        env.driver.reap_terminating().await.map_err(|e| e.to_string())?;
        match (cms.get_opt(&old_cm).await, secrets.get_opt(&old_secret).await) {
            (Ok(None), Ok(None)) => Ok(()),
            other => Err(format!(
                "{:?}",
                (other.0.map(|o| o.is_some()), other.1.map(|o| o.is_some()))
            )),
        }
    })
    .await;
    env.ns.delete().await;
}

/// The reconcile failures of category `category` so far.
fn failures(metrics: &str, category: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.contains("reconcile_failures_total{") && l.contains(&format!("category=\"{category}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A child the API server refuses (here: a quota allowing no Deployment) ends in the condition of its step —
/// False, naming the object and the API server's answer — while the conditions of the steps that worked keep
/// what they said; the controller retries with a growing backoff, not in a hot loop, and recovers by itself
/// once the refusal is lifted.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_child_is_reported_in_its_condition_and_retried_with_backoff() {
    let env = Env::new("api-refused").await;
    let quota = test_support::quota::limit(
        &env.client,
        &env.ns.name,
        "no-deployments",
        json!({"count/deployments.apps": "0"}),
    )
    .await;
    env.create(json!({"containerImage": IMAGE_A, "replicas": 1}))
        .await;
    env.wait_condition(conditions::CONFIG_READY, "True", None).await;
    env.play_other_controllers(IMAGE_A).await;
    let message = env
        .wait_condition(conditions::DEPLOYMENT_READY, "False", Some("RequestForbidden"))
        .await;
    assert!(
        message
            .starts_with("applying Deployment keystone-api failed: the API server answered 403 Forbidden:")
            && message.contains("exceeded quota: no-deployments")
            && message.contains("next attempt in"),
        "{message}"
    );
    for type_ in [conditions::CONFIG_READY, conditions::SERVICE_READY] {
        let c = env.condition(type_).await.unwrap();
        assert_eq!(c.status, "True", "{type_}: {c:?}");
    }
    let ready = env.condition(conditions::READY).await.unwrap();
    assert!(
        ready.status == "False" && ready.message.contains("DeploymentReady (RequestForbidden)"),
        "{ready:?}"
    );
    // Backoff: 5 s, 10 s, 20 s, … — a handful of attempts in 20 s, where a hot loop makes hundreds.
    let first = failures(&env.proc.metrics().await, "kube_api");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let retried = failures(&env.proc.metrics().await, "kube_api") - first;
    assert!(
        (1.0..=4.0).contains(&retried),
        "{retried} failed attempts in 20 s"
    );
    // Lifted: the next attempt applies the Deployment.
    test_support::quota::lift(&quota, "no-deployments").await;
    env.drive_until_ready(1).await;
    env.wait_condition(conditions::DEPLOYMENT_READY, "True", None)
        .await;
    env.ns.delete().await;
}
