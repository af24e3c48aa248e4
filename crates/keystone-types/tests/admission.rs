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

/// Server-side dry-run create of a KeystoneAPI named `keystone` with `spec`: the API server's message on
/// rejection. Nothing is stored, so one namespace serves a whole corpus.
async fn dry_run(api: &Api<DynamicObject>, spec: &Value) -> Result<(), String> {
    let pp = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api.create(&pp, &with_spec("keystone", spec.clone())).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => Err(status.message),
        Err(e) => panic!("unexpected client error: {e}"),
    }
}

/// Fails listing every case of a corpus that went wrong.
fn assert_all_right(wrong: &[String], cases: usize) {
    assert!(
        wrong.is_empty(),
        "{} of {cases} cases:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Every spec string that reaches a config file, a URL, an annotation, an object reference or a CronJob is
/// refused at admission when it could change more than its own value, with a message naming the field.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_strings_are_rejected_naming_the_field() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "hostile").await;
    let api = api(&client, &ns.name);
    let cases: Vec<(Value, &[&str])> = vec![
        // A line break in the database host would add lines to 00-secrets.conf, read after keystone.conf.
        (
            json!({"database": {"host": "db\n[token]\nexpiration = 1"}}),
            &["spec.database.host", "host name"],
        ),
        (json!({"database": {"host": "db\rx"}}), &["spec.database.host"]),
        (json!({"database": {"host": "user@db"}}), &["spec.database.host"]),
        (
            json!({"database": {"host": "db/evil?x=1"}}),
            &["spec.database.host"],
        ),
        (
            json!({"database": {"host": "[fd00::1]"}}),
            &["spec.database.host"],
        ),
        (json!({"database": {"host": "db$x"}}), &["spec.database.host"]),
        (
            json!({"memcachedServers": ["m:11211\r[cache]"]}),
            &["spec.memcachedServers[0]"],
        ),
        (
            json!({"memcachedServers": ["m1:11211,evil:1"]}),
            &["spec.memcachedServers[0]"],
        ),
        (
            json!({"memcachedServers": ["ok:11211", "m:0"]}),
            &["spec.memcachedServers[1]"],
        ),
        (
            json!({"memcachedServers": ["m:65536"]}),
            &["spec.memcachedServers[0]"],
        ),
        (
            json!({"memcachedServers": ["[not-ip]:11211"]}),
            &["spec.memcachedServers[0]"],
        ),
        (
            json!({"memcachedServers": ["m$x:11211"]}),
            &["spec.memcachedServers[0]"],
        ),
        (json!({"secret": "../other"}), &["spec.secret"]),
        (json!({"secret": "osp-secret?watch=1"}), &["spec.secret"]),
        (json!({"secret": "OSP"}), &["spec.secret"]),
        (
            json!({"customServiceConfigSecret": "a/b"}),
            &["spec.customServiceConfigSecret"],
        ),
        (
            json!({"notifications": {"secret": "rabbit,x"}}),
            &["spec.notifications.secret"],
        ),
        (
            json!({"notifications": {"secret": "rabbit", "key": "url\n"}}),
            &["spec.notifications.key"],
        ),
        (
            json!({"passwordSelectors": {"admin": "Admin Password"}}),
            &["spec.passwordSelectors.admin"],
        ),
        (
            json!({"passwordSelectors": {"database": "a/b"}}),
            &["spec.passwordSelectors.database"],
        ),
        (
            json!({"passwordSelectors": {"databaseRoot": "x\u{7}"}}),
            &["spec.passwordSelectors.databaseRoot"],
        ),
        // Multus reads `,` as another network, `/` as another namespace, `@` as an interface name.
        (
            json!({"networkAttachments": ["storage,evil"]}),
            &["spec.networkAttachments[0]"],
        ),
        (
            json!({"networkAttachments": ["storage", "other-ns/net"]}),
            &["spec.networkAttachments[1]"],
        ),
        (
            json!({"networkAttachments": ["net@eth9"]}),
            &["spec.networkAttachments[0]"],
        ),
        (
            json!({"networkAttachments": ["[{\"name\":\"x\"}]"]}),
            &["spec.networkAttachments[0]"],
        ),
        (
            json!({"externalEndpoints": [{"endpoint": "internal", "ipAddressPool": "Pool_1"}]}),
            &["spec.externalEndpoints[0].ipAddressPool"],
        ),
        (
            json!({"ingress": {"host": "10.0.0.1"}}),
            &["spec.ingress.host", "not an IP address"],
        ),
        (
            json!({"ingress": {"host": "k.example.com", "className": "Nginx"}}),
            &["spec.ingress.className"],
        ),
        (
            json!({"ingress": {"host": "k.example.com", "tlsSecretName": "tls cert"}}),
            &["spec.ingress.tlsSecretName"],
        ),
        (json!({"region": "regionOne\nx"}), &["spec.region"]),
        (json!({"region": "region\tOne"}), &["spec.region"]),
        (json!({"adminUser": "admin\r"}), &["spec.adminUser"]),
        (json!({"adminProject": "admin\u{0}"}), &["spec.adminProject"]),
        (json!({"adminProject": "admin\u{85}"}), &["spec.adminProject"]),
        (
            json!({"endpointURLs": {"public": "https://user:pass@keystone.example.com"}}),
            &["spec.endpointURLs.public", "user:password@"],
        ),
        (
            json!({"endpointURLs": {"internal": "http://evil\\@good.example.com"}}),
            &["spec.endpointURLs.internal"],
        ),
        (
            json!({"endpointURLs": {"public": "https://k.example.com/\u{0}"}}),
            &["spec.endpointURLs.public"],
        ),
        (
            json!({"endpointURLs": {"public": "https://k.example.com/v3\u{7f}"}}),
            &["spec.endpointURLs.public"],
        ),
        (
            json!({"token": {"expiration": "500ms"}}),
            &["spec.token.expiration", "whole number of seconds"],
        ),
        (
            json!({"token": {"expiration": "1.5s"}}),
            &["spec.token.expiration", "whole number of seconds"],
        ),
        (
            json!({"token": {"allowExpiredWindow": "48h0.5s"}}),
            &["spec.token.allowExpiredWindow"],
        ),
        (
            json!({"trustFlush": {"schedule": "CRON_TZ=UTC 1 * * * *"}}),
            &["spec.trustFlush.schedule"],
        ),
        (
            json!({"trustFlush": {"schedule": "60 * * * *"}}),
            &["spec.trustFlush.schedule"],
        ),
        (
            json!({"trustFlush": {"schedule": "* * * * 7"}}),
            &["spec.trustFlush.schedule"],
        ),
        (
            json!({"trustFlush": {"schedule": "a b c d e"}}),
            &["spec.trustFlush.schedule"],
        ),
        (
            json!({"trustFlush": {"schedule": "@hourly\n1 * * * *"}}),
            &["spec.trustFlush.schedule"],
        ),
        (
            json!({"defaultConfigOverwrite": {"policy.yaml": "x".repeat(262_145)}}),
            &["spec.defaultConfigOverwrite"],
        ),
        (
            json!({"customServiceConfig": "#".repeat(200_000),
                "defaultConfigOverwrite": {"policy.yaml": "x".repeat(200_000), "logging.conf": "y".repeat(200_000),
                                           "domains/keystone.a.conf": "z".repeat(200_000)}}),
            &["spec.customServiceConfig", "768 KiB"],
        ),
    ];
    let mut wrong = Vec::new();
    for (spec, expect) in &cases {
        match dry_run(&api, spec).await {
            Ok(()) => wrong.push(format!("accepted: {spec}")),
            Err(msg) => {
                if let Some(n) = expect.iter().find(|n| !msg.contains(*n)) {
                    wrong.push(format!("message for {spec} lacks {n:?}: {msg}"));
                }
            }
        }
    }
    assert_all_right(&wrong, cases.len());
    ns.delete().await;
}

/// What users write keeps working: FQDN, short and IP hosts (IPv4, IPv6), memcached in every supported form,
/// ordinary names, URLs with ports and paths, whole-second durations, cron schedules and descriptors.
#[tokio::test(flavor = "multi_thread")]
async fn ordinary_values_are_accepted() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "ordinary").await;
    let api = api(&client, &ns.name);
    let cases = vec![
        json!({"database": {"host": "openstack"}}),
        json!({"database": {"host": "openstack.openstack.svc"}}),
        json!({"database": {"host": "db-0.galera.openstack.svc.cluster.local."}}),
        json!({"database": {"host": "DB.Example.COM"}}),
        json!({"database": {"host": "10.0.0.5"}}),
        json!({"database": {"host": "fd00::5"}}),
        json!({"memcachedServers": ["memcached-0.memcached:11211", "10.0.0.1:11211", "[fd00::1]:11211",
                                    "fd00::1:11211", "inet6:[fd00::2]:11211", "memcached.openstack.svc:65535"]}),
        json!({"secret": "osp-secret.v2", "customServiceConfigSecret": "keystone-ldap",
               "passwordSelectors": {"admin": "AdminPassword", "database": "db.password", "databaseRoot": "root-pw_1"},
               "notifications": {"secret": "rabbitmq-transport", "key": "transport_url"}}),
        json!({"networkAttachments": ["storage", "internalapi", "ctlplane.v1"]}),
        json!({"externalEndpoints": [{"endpoint": "internal", "ipAddressPool": "osp-internalapi",
                                      "loadBalancerIPs": ["172.17.0.202"], "sharedIP": true, "sharedIPKey": ""}]}),
        json!({"ingress": {"host": "keystone.example.com", "className": "nginx", "tlsSecretName": "keystone-tls"}}),
        json!({"region": "RegionOne", "adminUser": "admin user é", "adminProject": "Admin Project"}),
        json!({"endpointURLs": {"public": "https://id.example.org:8443/identity",
                                "internal": "http://[fd00::9]:5000"}}),
        json!({"token": {"expiration": "1h", "allowExpiredWindow": "48h"}}),
        json!({"token": {"expiration": "90m30s", "allowExpiredWindow": "1000ms"}}),
        json!({"trustFlush": {"schedule": "@hourly"}}),
        json!({"trustFlush": {"schedule": "@every 6h"}}),
        json!({"trustFlush": {"schedule": "*/5 1-3 * * 1-5"}}),
        json!({"trustFlush": {"schedule": "0 0 1,15 JAN-jun sun"}}),
        json!({"trustFlush": {"schedule": "  30 4 ? * MON-FRI "}}),
        json!({"customServiceConfig": "[DEFAULT]\ndebug = true\n",
               "defaultConfigOverwrite": {"policy.yaml": "x".repeat(262_144)}}),
    ];
    let mut wrong = Vec::new();
    for spec in &cases {
        if let Err(msg) = dry_run(&api, spec).await {
            wrong.push(format!("refused: {spec}: {msg}"));
        }
    }
    assert_all_right(&wrong, cases.len());
    ns.delete().await;
}

/// The trust-flush schedule is accepted exactly when the CronJob API accepts it (the CronJob is what the db
/// controller builds from it): each schedule of a corpus is dry-run as a KeystoneAPI and as a CronJob.
#[tokio::test(flavor = "multi_thread")]
async fn trust_flush_schedules_are_accepted_exactly_as_the_cronjob_api_accepts_them() {
    use k8s_openapi::api::batch::v1::CronJob;
    let client = client().await;
    let ns = TestNamespace::new(&client, "cron").await;
    let keystones = api(&client, &ns.name);
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), &ns.name);
    let corpus = [
        "1 * * * *",
        "@hourly",
        "@daily",
        "@midnight",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "@every 1h",
        "@every 90m",
        "@every 1h30m",
        "*/5 1-3 * * 1-5",
        "0 0 1,15 * *",
        "0 0 * JAN-JUN SUN",
        "0 0 * jan sun-sat",
        "0-59/15 * * * *",
        "5/10 * * * *",
        "? ? ? ? ?",
        "00 00 01 01 00",
        "59 23 31 12 6",
        " 1 * * * * ",
        "1\t*\t*\t*\t*",
        // quirks and refusals of the CronJob API: whatever its verdict, ours must be the same
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * 32 * *",
        "* * * 0 *",
        "* * * 13 *",
        "* * * * 7",
        "*/0 * * * *",
        "* * * *",
        "* * * * * *",
        "a b c d e",
        "@every",
        "@often",
        "@hourly ",
        "CRON_TZ=UTC 1 * * * *",
        "TZ=UTC 1 * * * *",
        "1 * * * * TZ",
        "1,,2 * * * *",
        "*-5 * * * *",
        "1 * * * MON-FOO",
        "every hour",
    ];
    let mut disagree = Vec::new();
    for schedule in corpus {
        let ours = dry_run(&keystones, &json!({"trustFlush": {"schedule": schedule}})).await;
        let cronjob: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "probe"},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}}
        }))
        .unwrap();
        let theirs = cronjobs
            .create(
                &kube::api::PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &cronjob,
            )
            .await;
        if ours.is_ok() != theirs.is_ok() {
            disagree.push(format!(
                "{schedule:?}: KeystoneAPI {}, CronJob {}",
                ours.map_or_else(|e| format!("refused ({e})"), |()| "accepted".into()),
                theirs.map_or_else(|e| format!("refused ({e})"), |_| "accepted".into()),
            ));
        }
    }
    assert!(
        disagree.is_empty(),
        "the schedule rule disagrees with the CronJob API:\n{}",
        disagree.join("\n")
    );
    ns.delete().await;
}
