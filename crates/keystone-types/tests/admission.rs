//! The KeystoneAPI CRD against the real API server: it becomes Established, the README's examples are
//! accepted, defaults apply to a minimal object, and bad specs are rejected with a message naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, Patch, PatchParams, ValidationDirective};
use kube::core::ApiResource;
use kube::{Api, Client};
use rstest::rstest;
use serde_json::{Value, json};

use keystone_types::{CRD_NAME, KeystoneAPI};
use test_support::{TestNamespace, client};

const BASIC: &str = include_str!("../../../manifests/samples/keystoneapi.yaml");
const NETWORK_ATTACHMENTS: &str =
    include_str!("../../../manifests/samples/keystoneapi-network-attachments.yaml");
const EXTERNAL_ENDPOINTS: &str =
    include_str!("../../../manifests/samples/keystoneapi-external-endpoints.yaml");

/// The README's network example as written there (with its misspelling), `...` filled with the basic fields.
const README_MISSPELLED: &str = r#"
apiVersion: keystone.openstack.org/v1beta1
kind: KeystoneAPI
metadata:
  name: keystone
spec:
  containerImage: quay.io/podified-antelope-centos9/openstack-keystone:current-podified
  replicas: 1
  secret: osp-secret
  networkAttachents:
  - storage
"#;

fn api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<KeystoneAPI>(&()))
}

fn object(yaml: &str) -> DynamicObject {
    serde_yaml::from_str(yaml).expect("valid YAML")
}

fn with_spec(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "keystone.openstack.org/v1beta1",
        "kind": "KeystoneAPI",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("object")
}

/// Creates (server-side apply) with the given field validation; returns the API server's message on rejection.
async fn create(
    api: &Api<DynamicObject>,
    obj: &DynamicObject,
    validation: ValidationDirective,
) -> Result<Value, String> {
    let pp = PatchParams::apply("admission-test").validation(validation);
    let name = obj.metadata.name.clone().expect("name");
    match api.patch(&name, &pp, &Patch::Apply(obj)).await {
        Ok(o) => Ok(serde_json::to_value(o).expect("json")),
        Err(kube::Error::Api(status)) => Err(status.message.clone()),
        Err(e) => panic!("unexpected client error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crd_is_established() {
    let client = client().await;
    let crd = Api::<CustomResourceDefinition>::all(client)
        .get(CRD_NAME)
        .await
        .expect("CRD installed");
    let established = crd
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established, "CRD {CRD_NAME} not Established");
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_examples_are_accepted_with_a_strict_client() {
    let client = client().await;
    for (i, yaml) in [BASIC, NETWORK_ATTACHMENTS, EXTERNAL_ENDPOINTS]
        .into_iter()
        .enumerate()
    {
        let ns = TestNamespace::new(&client, &format!("seed{i}")).await;
        let created = create(
            &api(&client, &ns.name),
            &object(yaml),
            ValidationDirective::Strict,
        )
        .await
        .unwrap_or_else(|msg| panic!("example {i} rejected: {msg}"));
        assert_eq!(created["spec"]["replicas"], 1);
        ns.delete().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_misspelling_is_rejected_even_by_a_lenient_client() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "misspelled").await;
    for validation in [
        ValidationDirective::Ignore,
        ValidationDirective::Warn,
        ValidationDirective::Strict,
    ] {
        let msg = create(&api(&client, &ns.name), &object(README_MISSPELLED), validation)
            .await
            .expect_err("networkAttachents must be rejected");
        assert!(msg.contains("spec.networkAttachents"), "{msg}");
        assert!(msg.contains("spec.networkAttachments"), "{msg}");
    }
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn defaults_apply_to_a_minimal_object() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "defaults").await;
    let created = create(
        &api(&client, &ns.name),
        &with_spec("keystone", json!({})),
        ValidationDirective::Strict,
    )
    .await
    .expect("minimal object accepted");
    let expected = json!({
        "containerImage": "quay.io/podified-antelope-centos9/openstack-keystone:current-podified",
        "replicas": 1,
        "secret": "osp-secret",
        "passwordSelectors": {
            "admin": "AdminPassword",
            "database": "KeystoneDatabasePassword",
            "databaseRoot": "DbRootPassword",
        },
        "region": "regionOne",
        "adminUser": "admin",
        "adminProject": "admin",
        "database": { "host": "openstack", "port": 3306, "name": "keystone", "user": "keystone", "create": true },
        "fernet": { "rotationInterval": "24h", "maxActiveKeys": 5 },
        "credential": {},
        "token": { "expiration": "1h", "allowExpiredWindow": "48h" },
        "preserveJobs": false,
        "enableSecureRBAC": true,
        "trustFlush": { "schedule": "1 * * * *", "suspend": false },
    });
    assert_eq!(created["spec"], expected);
    // The typed view agrees with the server's defaults.
    let typed: KeystoneAPI = serde_json::from_value(created).expect("typed");
    assert_eq!(typed.spec.fernet.max_active_keys, 5);
    ns.delete().await;
}

#[rstest]
#[case::replicas_too_many(json!({"replicas": 33}), &["spec.replicas", "32"])]
#[case::replicas_negative(json!({"replicas": -1}), &["spec.replicas", "0"])]
#[case::endpoint_admin(
    json!({"externalEndpoints": [{"endpoint": "admin", "ipAddressPool": "p"}]}),
    &["spec.externalEndpoints[0].endpoint", "\"internal\", \"public\""]
)]
#[case::empty_pool(
    json!({"externalEndpoints": [{"endpoint": "internal", "ipAddressPool": ""}]}),
    &["spec.externalEndpoints[0].ipAddressPool"]
)]
#[case::missing_pool(
    json!({"externalEndpoints": [{"endpoint": "internal"}]}),
    &["spec.externalEndpoints[0].ipAddressPool", "Required"]
)]
#[case::bad_ip(
    json!({"externalEndpoints": [{"endpoint": "internal", "ipAddressPool": "p", "loadBalancerIPs": ["172.17.0.202", "172.17.0.300"]}]}),
    &["spec.externalEndpoints[0].loadBalancerIPs[1]", "172.17.0.300 is not an IPv4 or IPv6 address"]
)]
#[case::duplicate_endpoint(
    json!({"externalEndpoints": [{"endpoint": "internal", "ipAddressPool": "a"}, {"endpoint": "internal", "ipAddressPool": "b"}]}),
    &["spec.externalEndpoints", "uplicate", "internal"]
)]
#[case::too_few_keys_for_defaults(
    json!({"fernet": {"maxActiveKeys": 4}}),
    &["spec.fernet.maxActiveKeys", "must be at least 5"]
)]
#[case::too_few_keys_for_hourly_rotation(
    json!({"fernet": {"rotationInterval": "1h", "maxActiveKeys": 10}}),
    &["spec.fernet.maxActiveKeys", "must be at least 52", "rotationInterval=1h"]
)]
#[case::too_few_keys_for_long_tokens(
    json!({"token": {"expiration": "24h"}}),
    &["spec.fernet.maxActiveKeys", "must be at least 6", "token.expiration=24h"]
)]
#[case::below_key_floor(json!({"fernet": {"maxActiveKeys": 2}}), &["spec.fernet.maxActiveKeys", "3"])]
#[case::malformed_duration(
    json!({"token": {"expiration": "1day"}}),
    &["spec.token.expiration", "positive duration"]
)]
#[case::zero_duration(
    json!({"fernet": {"rotationInterval": "0s"}}),
    &["spec.fernet.rotationInterval", "positive duration"]
)]
#[case::credential_interval_malformed(
    json!({"credential": {"rotationInterval": "30 days"}}),
    &["spec.credential.rotationInterval", "positive duration"]
)]
#[case::negative_duration(
    json!({"token": {"allowExpiredWindow": "-1h"}}),
    &["spec.token.allowExpiredWindow", "positive duration"]
)]
#[case::bad_cron(json!({"trustFlush": {"schedule": "every hour"}}), &["spec.trustFlush.schedule"])]
#[case::unknown_override_file(
    json!({"defaultConfigOverwrite": {"keystone.conf": "[DEFAULT]"}}),
    &["spec.defaultConfigOverwrite", "policy.yaml, logging.conf or domains/keystone.<domain>.conf"]
)]
#[case::memcached_without_port(json!({"memcachedServers": ["memcached"]}), &["spec.memcachedServers[0]"])]
#[case::database_port(json!({"database": {"port": 70000}}), &["spec.database.port"])]
#[case::empty_image(json!({"containerImage": ""}), &["spec.containerImage"])]
#[tokio::test(flavor = "multi_thread")]
async fn invalid_specs_are_rejected_naming_the_field(#[case] spec: Value, #[case] expect: &[&str]) {
    let client = client().await;
    let ns = TestNamespace::new(&client, "invalid").await;
    let msg = create(
        &api(&client, &ns.name),
        &with_spec("keystone", spec.clone()),
        ValidationDirective::Ignore,
    )
    .await
    .expect_err(&format!("accepted: {spec}"));
    for needle in expect {
        assert!(msg.contains(needle), "message for {spec} lacks {needle:?}: {msg}");
    }
    ns.delete().await;
}

#[rstest]
#[case::too_long(&"k".repeat(41))]
#[case::underscore("key_stone")]
#[case::leading_digit("1keystone")]
#[tokio::test(flavor = "multi_thread")]
async fn names_that_cannot_derive_child_names_are_rejected(#[case] name: &str) {
    let client = client().await;
    let ns = TestNamespace::new(&client, "names").await;
    let msg = create(
        &api(&client, &ns.name),
        &with_spec(name, json!({})),
        ValidationDirective::Strict,
    )
    .await
    .expect_err("bad name accepted");
    assert!(msg.contains("metadata.name"), "{msg}");
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_non_default_rotation_policy_is_accepted() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "policy").await;
    // ceil((1h + 48h + 5m) / 12h) + 2 = 7
    let spec = json!({"fernet": {"rotationInterval": "12h", "maxActiveKeys": 7}, "replicas": 0});
    create(
        &api(&client, &ns.name),
        &with_spec("keystone", spec),
        ValidationDirective::Strict,
    )
    .await
    .expect("minimum key count accepted");
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_endpoint_is_rejected_on_create_too() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "duplicate").await;
    let spec = json!({"externalEndpoints": [
        {"endpoint": "public", "ipAddressPool": "a"},
        {"endpoint": "public", "ipAddressPool": "b"},
    ]});
    let err = api(&client, &ns.name)
        .create(&kube::api::PostParams::default(), &with_spec("keystone", spec))
        .await
        .expect_err("duplicate endpoint accepted");
    let msg = err.to_string();
    assert!(
        msg.contains("spec.externalEndpoints[1]: Duplicate value"),
        "{msg}"
    );
    ns.delete().await;
}
