//! `KeystoneAPI`, `keystone.openstack.org/v1beta1`: the user-facing API.
//!
//! Every field is documented for `kubectl explain`. Defaults live in the schema (nested objects default to `{}`
//! so their own defaults apply), and validation lives in the schema too — OpenAPI constraints plus CEL rules with
//! a `fieldPath` — so that every client, not only a strict kubectl, gets an error naming the field.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::Rule;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default container image: the TCIB Keystone image the upstream operator ships.
pub const DEFAULT_CONTAINER_IMAGE: &str =
    "quay.io/podified-antelope-centos9/openstack-keystone:current-podified";

/// Propagation allowance Δ in the key-count rule: how long a rotated Secret may take to reach every replica.
pub const KEY_PROPAGATION_ALLOWANCE_SECONDS: i64 = 300;

use crate::validation::{self, DATA_KEY, DNS1123_SUBDOMAIN, DURATION_REGEX, NO_CONTROL};

fn positive_duration_rule(field: &str) -> Rule {
    Rule::new(format!(
        "self.matches('{DURATION_REGEX}') && duration(self) > duration('0s')"
    ))
    .message(kube::core::Message::Message(format!(
        "{field} must be a positive duration in Kubernetes/Go format, such as 24h, 90m or 1h30m"
    )))
    .reason(kube::core::Reason::FieldValueInvalid)
}

/// CEL for "this duration string is well-formed and at least one second": the guard used by rules that combine
/// several durations, so that only the field's own rule reports a malformed value.
fn usable_seconds(path: &str) -> String {
    format!("({path}.matches('{DURATION_REGEX}') && duration({path}).getSeconds() > 0)")
}

/// Keystone's rule for how many fernet keys must be kept so that no token inside its validity window (plus
/// the allow-expired window) loses its signing key, with the propagation allowance Δ:
/// `maxActiveKeys >= ceil((expiration + allowExpiredWindow + Δ) / rotationInterval) + 2`.
fn key_count_rule() -> Rule {
    let min = format!(
        "((duration(self.token.expiration).getSeconds() + duration(self.token.allowExpiredWindow).getSeconds() \
         + {KEY_PROPAGATION_ALLOWANCE_SECONDS} + duration(self.fernet.rotationInterval).getSeconds() - 1) \
         / duration(self.fernet.rotationInterval).getSeconds() + 2)"
    );
    let guard = format!(
        "{} && {} && {}",
        usable_seconds("self.token.expiration"),
        usable_seconds("self.token.allowExpiredWindow"),
        usable_seconds("self.fernet.rotationInterval"),
    );
    Rule::new(format!("!({guard}) || self.fernet.maxActiveKeys >= {min}"))
        // `string(int)` is priced out of the CEL cost budget; `format` is not.
        .message(kube::core::Message::Expression(format!(
            "'fernet.maxActiveKeys must be at least %d for token.expiration=%s, token.allowExpiredWindow=%s and \
             fernet.rotationInterval=%s (ceil((expiration + allowExpiredWindow + 5m) / rotationInterval) + 2); \
             with fewer keys, tokens that are still valid lose their signing key at a rotation'.format([{min}, \
             self.token.expiration, self.token.allowExpiredWindow, self.fernet.rotationInterval])"
        )))
        .field_path(".fernet.maxActiveKeys")
        .reason(kube::core::Reason::FieldValueInvalid)
}

/// A short list of IP addresses, each checked with CEL `isIP()` (the API server ignores `format: ip`), so that
/// the error names the offending entry.
fn ip_list_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 4,
        "items": {
            "type": "string",
            "maxLength": 64,
            "x-kubernetes-validations": [{
                "rule": "isIP(self)",
                "messageExpression": "'%s is not an IPv4 or IPv6 address'.format([self])",
                "reason": "FieldValueInvalid",
            }],
        },
    })
}

/// Memcached servers: each checked by [`validation::memcached_server_rule`], so the error names the entry.
fn memcached_servers_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let rule = validation::memcached_server_rule();
    schemars::json_schema!({
        "type": "array",
        "maxItems": 32,
        "items": {
            "type": "string",
            "minLength": 3,
            "maxLength": 261,
            "x-kubernetes-validations": [{
                "rule": rule.rule,
                "message": match rule.message { Some(kube::core::Message::Message(m)) => m, _ => String::new() },
                "reason": "FieldValueInvalid",
            }],
        },
    })
}

/// `customServiceConfig` and the `defaultConfigOverwrite` files together fit in the config ConfigMap (1 MiB,
/// with room for the operator's own files). Bytes, not characters: the API server counts the encoded size.
fn config_size_rule() -> Rule {
    Rule::new(
        "(has(self.customServiceConfig) ? size(bytes(self.customServiceConfig)) : 0) + \
         (has(self.defaultConfigOverwrite) ? self.defaultConfigOverwrite.map(k, size(bytes(self.defaultConfigOverwrite[k]))).sum() : 0) \
         <= 786432",
    )
    .message("customServiceConfig and defaultConfigOverwrite together must be at most 768 KiB (they share a 1 MiB ConfigMap)")
    .field_path(".customServiceConfig")
    .reason(kube::core::Reason::FieldValueInvalid)
}

fn misspelled_network_attachments_rule() -> Rule {
    Rule::new("!has(self.networkAttachents)")
        .message("networkAttachents is a misspelling: the field is spec.networkAttachments")
        .field_path(".networkAttachents")
        .reason(kube::core::Reason::FieldValueForbidden)
}

/// Desired state of a Keystone identity service: its API Deployment, keys, database and configuration.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "keystone.openstack.org",
    version = "v1beta1",
    kind = "KeystoneAPI",
    plural = "keystoneapis",
    shortname = "ksapi",
    namespaced,
    status = "KeystoneAPIStatus",
    doc = "KeystoneAPI runs an OpenStack Keystone identity service: its API pods and Services, fernet and \
           credential keys with rotation, the database with db-sync and bootstrap, and the trust-flush CronJob.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Available","type":"integer","jsonPath":".status.readyCount","priority":1}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = key_count_rule(),
    validation = misspelled_network_attachments_rule(),
    validation = config_size_rule()
)]
#[serde(rename_all = "camelCase")]
pub struct KeystoneAPISpec {
    /// Keystone container image used by the API pods and by the db-sync, bootstrap and trust-flush Jobs.
    /// Changing it runs db-sync for the new image before the Deployment rolls.
    #[serde(default = "default_container_image")]
    #[schemars(length(min = 1))]
    pub container_image: String,

    /// Number of Keystone API pods. 0 scales the API down and keeps everything else (keys, database).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 32))]
    pub replicas: i32,

    /// Name of the Secret, in the same namespace, holding the passwords selected by `passwordSelectors`.
    #[serde(default = "default_secret")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub secret: String,

    /// Keys inside `secret` that hold each password.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub password_selectors: PasswordSelectors,

    /// NetworkAttachmentDefinition names (Multus) in this namespace; the API pods get an interface on each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))
    )]
    pub network_attachments: Vec<String>,

    /// Not a field: the misspelling of `networkAttachments` found in old examples. It is declared only so that
    /// the API server rejects it with a message naming the right field; an object using it is never accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), inner(length(max = 253)))]
    pub network_attachents: Option<Vec<String>>,

    /// Expose an endpoint through a MetalLB LoadBalancer Service. At most one entry per endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["endpoint".into()]))]
    pub external_endpoints: Vec<ExternalEndpoint>,

    /// URLs to publish (in `status.apiEndpoints` and Keystone's catalog) instead of the ones the operator
    /// derives, for endpoints exposed by something the operator does not manage (a load balancer, a proxy).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "endpointURLs")]
    pub endpoint_urls: Option<EndpointURLs>,

    /// Expose the public endpoint through an Ingress with this host. Without it, on OpenShift (when the
    /// cluster serves `route.openshift.io/v1`) the public endpoint gets a Route; elsewhere it is the Service's
    /// cluster DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,

    /// Keystone region the identity endpoints are registered in.
    #[serde(default = "default_region")]
    #[schemars(length(min = 1, max = 255), regex(pattern = NO_CONTROL))]
    pub region: String,

    /// Name of the administrative user created by bootstrap.
    #[serde(default = "default_admin")]
    #[schemars(length(min = 1, max = 255), regex(pattern = NO_CONTROL))]
    pub admin_user: String,

    /// Name of the administrative project created by bootstrap.
    #[serde(default = "default_admin")]
    #[schemars(length(min = 1, max = 64), regex(pattern = NO_CONTROL))]
    pub admin_project: String,

    /// The MariaDB/MySQL database Keystone stores its data in.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub database: DatabaseSpec,

    /// Memcached servers as `host:port` (`[addr]:port` for IPv6), used for Keystone's cache (token
    /// validation, catalog). Empty turns caching off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "memcached_servers_schema")]
    pub memcached_servers: Vec<String>,

    /// Send notifications (oslo.messaging) to the transport URL held in a Secret. Unset: notifications off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationsSpec>,

    /// Fernet token key rotation.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub fernet: FernetSpec,

    /// Credential key rotation (the keys encrypting stored EC2, TOTP and application-credential secrets).
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub credential: CredentialSpec,

    /// Token lifetime settings.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub token: TokenSpec,

    /// Extra keystone.conf settings in INI format, merged after the operator's own (it wins on conflicts).
    /// Must not hold secrets: it is stored in a ConfigMap. Use `customServiceConfigSecret` for those. At most
    /// 256 KiB, and with `defaultConfigOverwrite` at most 768 KiB (a ConfigMap holds 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub custom_service_config: Option<String>,

    /// Name of a Secret whose values are INI snippets merged into keystone.conf after `customServiceConfig`
    /// (for settings that hold secrets, such as an LDAP bind password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub custom_service_config_secret: Option<String>,

    /// Files that replace the operator's defaults, by file name: `policy.yaml`, `logging.conf`, or
    /// `domains/keystone.<domain>.conf` for a domain-specific identity backend. Each file at most 256 KiB.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 64,
        "additionalProperties" = {"type": "string", "maxLength": 262144}
    ))]
    #[x_kube(validation = Rule::new(r"self.all(k, k == 'policy.yaml' || k == 'logging.conf' || k.matches('^domains/keystone\\.[A-Za-z0-9_.-]+\\.conf$'))")
        .message("defaultConfigOverwrite keys must be policy.yaml, logging.conf or domains/keystone.<domain>.conf")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub default_config_overwrite: BTreeMap<String, String>,

    /// Compute resources of the Keystone API container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels the Keystone pods (API and Jobs) must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Tolerations of the Keystone pods (API and Jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Keep finished db-sync and bootstrap Jobs (for debugging) instead of letting them expire.
    #[serde(default)]
    pub preserve_jobs: bool,

    /// Enforce Keystone's secure RBAC defaults (`[oslo_policy] enforce_new_defaults` and `enforce_scope`).
    #[serde(default = "default_true", rename = "enableSecureRBAC")]
    pub enable_secure_rbac: bool,

    /// The CronJob that purges expired and soft-deleted trusts (`keystone-manage trust_flush`).
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub trust_flush: TrustFlushSpec,
}

/// Endpoint URL overrides.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EndpointURLs {
    /// The public endpoint's URL, e.g. `https://keystone.example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = validation::url_rule("endpointURLs.public"))]
    pub public: Option<String>,
    /// The internal endpoint's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = validation::url_rule("endpointURLs.internal"))]
    pub internal: Option<String>,
}

/// An Ingress for the public endpoint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// Host name the Ingress serves, e.g. `keystone.example.com`.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    #[x_kube(validation = Rule::new("!isIP(self)").message("ingress.host must be a DNS name, not an IP address (Ingress rules take names only)").reason(kube::core::Reason::FieldValueInvalid))]
    pub host: String,
    /// IngressClass to use (default: the cluster's default class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub class_name: Option<String>,
    /// Secret with the TLS certificate for `host`; the published URL is then https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub tls_secret_name: Option<String>,
}

/// Keys inside the password Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSelectors {
    /// Key holding the password of `adminUser`.
    #[serde(default = "default_admin_password_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DATA_KEY))]
    pub admin: String,
    /// Key holding the password of the database user.
    #[serde(default = "default_database_password_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DATA_KEY))]
    pub database: String,
    /// Key holding the database root password (used only when `database.create` is true).
    #[serde(default = "default_database_root_password_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DATA_KEY))]
    pub database_root: String,
}

impl Default for PasswordSelectors {
    fn default() -> Self {
        Self {
            admin: default_admin_password_key(),
            database: default_database_password_key(),
            database_root: default_database_root_password_key(),
        }
    }
}

/// Which Keystone endpoint a Service serves.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// The internal endpoint, used by other OpenStack services.
    Internal,
    /// The public endpoint, used by users.
    Public,
}

impl Endpoint {
    /// Both endpoints, in a fixed order.
    pub const ALL: [Endpoint; 2] = [Endpoint::Internal, Endpoint::Public];

    /// The lower-case name used in the API, in Service names and in Keystone's catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Internal => "internal",
            Endpoint::Public => "public",
        }
    }
}

/// A LoadBalancer Service for one endpoint, announced by MetalLB from an IPAddressPool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalEndpoint {
    /// The endpoint to expose: `internal` or `public`.
    pub endpoint: Endpoint,
    /// MetalLB IPAddressPool to allocate the address from.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub ip_address_pool: String,
    /// Addresses to request from the pool (IPv4 or IPv6).
    #[serde(default, rename = "loadBalancerIPs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "ip_list_schema")]
    pub load_balancer_ips: Vec<String>,
    /// Let the address be shared with other Services (MetalLB `allow-shared-ip`).
    #[serde(default = "default_true", rename = "sharedIP")]
    pub shared_ip: bool,
    /// Sharing key; Services with the same key may share an address. Empty means the pool name.
    #[serde(default, rename = "sharedIPKey")]
    #[schemars(length(max = 253))]
    pub shared_ip_key: String,
}

/// The database Keystone uses.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Database server host: a host name (usually a Service in this namespace) or an IP address.
    #[serde(default = "default_database_host")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = validation::host_rule("database.host"))]
    pub host: String,
    /// Database server port.
    #[serde(default = "default_database_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Name of the database.
    #[serde(default = "default_keystone")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_]+$"))]
    pub name: String,
    /// Database user Keystone connects as; its password is `passwordSelectors.database` in `secret`.
    #[serde(default = "default_keystone")]
    #[schemars(length(min = 1, max = 80), regex(pattern = r"^[A-Za-z0-9_]+$"))]
    pub user: String,
    /// Create the database and the user, using the root password. With false they must already exist.
    #[serde(default = "default_true")]
    pub create: bool,
}

impl Default for DatabaseSpec {
    fn default() -> Self {
        Self {
            host: default_database_host(),
            port: default_database_port(),
            name: default_keystone(),
            user: default_keystone(),
            create: true,
        }
    }
}

/// Where the notification transport URL comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsSpec {
    /// Name of the Secret holding the transport URL (for example `rabbit://user:pass@host:5672/`).
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub secret: String,
    /// Key inside the Secret.
    #[serde(default = "default_transport_url_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DATA_KEY))]
    pub key: String,
}

/// Fernet token key rotation. Rotation never invalidates a token that is still valid, provided
/// `maxActiveKeys` satisfies the key-count rule (checked on admission).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FernetSpec {
    /// Time between two rotations of the fernet token keys, e.g. `24h`.
    #[serde(default = "default_rotation_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = positive_duration_rule("fernet.rotationInterval"))]
    pub rotation_interval: String,
    /// Number of token keys kept, counting the staged key: at least
    /// ceil((token.expiration + token.allowExpiredWindow + 5m) / rotationInterval) + 2.
    #[serde(default = "default_max_active_keys")]
    #[schemars(range(min = 3, max = 100))]
    pub max_active_keys: i32,
}

impl Default for FernetSpec {
    fn default() -> Self {
        Self {
            rotation_interval: default_rotation_interval(),
            max_active_keys: default_max_active_keys(),
        }
    }
}

/// Credential key rotation. Each cycle re-encrypts every stored credential with `keystone-manage
/// credential_migrate` before and after Keystone's rotation, and drops the previous key only after the second
/// migration succeeded: no credential is ever lost, and a failed migration stops the cycle where it is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialSpec {
    /// Time between two credential key rotations, e.g. `720h` (30 days). Unset: rotated only on request
    /// (annotation `keystone.openstack.org/rotate-credential-keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = positive_duration_rule("credential.rotationInterval"))]
    pub rotation_interval: Option<String>,
}

/// Token lifetime settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenSpec {
    /// Token lifetime (`[token] expiration`), e.g. `1h`.
    #[serde(default = "default_token_expiration")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = positive_duration_rule("token.expiration"),
        validation = validation::whole_seconds_rule("token.expiration")
    )]
    pub expiration: String,
    /// How long after expiry a token may still be validated with `allow_expired`
    /// (`[token] allow_expired_window`), e.g. `48h`.
    #[serde(default = "default_allow_expired_window")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = positive_duration_rule("token.allowExpiredWindow"),
        validation = validation::whole_seconds_rule("token.allowExpiredWindow")
    )]
    pub allow_expired_window: String,
}

impl Default for TokenSpec {
    fn default() -> Self {
        Self {
            expiration: default_token_expiration(),
            allow_expired_window: default_allow_expired_window(),
        }
    }
}

/// The trust-flush CronJob.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrustFlushSpec {
    /// Cron schedule as a CronJob takes it: five fields (`1 * * * *`, `*/5 1-3 * * 1-5`) or a descriptor
    /// (`@hourly`, `@daily`, `@every 6h`); times are in the kube-controller-manager's time zone.
    #[serde(default = "default_trust_flush_schedule")]
    #[schemars(length(min = 1, max = 128), extend("pattern" = validation::cron_pattern()))]
    pub schedule: String,
    /// Suspend the CronJob.
    #[serde(default)]
    pub suspend: bool,
}

impl Default for TrustFlushSpec {
    fn default() -> Self {
        Self {
            schedule: default_trust_flush_schedule(),
            suspend: false,
        }
    }
}

/// Observed state. Each controller writes only its own conditions and section, by server-side apply under its
/// own field manager; see the condition table in the README.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeystoneAPIStatus {
    /// Conditions, one per type. `Ready` (owned by the api controller) is True when every other condition of
    /// the contract is True for the current generation. Owners: api — ConfigReady, ServiceReady,
    /// DeploymentReady, NetworkAttachmentsReady, Ready; fernet — FernetKeysReady, CredentialKeysReady;
    /// db — DatabaseReady, DBSyncReady, BootstrapReady, TrustFlushReady.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Option<Vec<Condition>>,
    /// Written by the api controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiStatus>,
    /// Written by the fernet controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fernet: Option<FernetStatus>,
    /// Written by the db controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseStatus>,
    /// URLs of the Keystone endpoints, for clients and other operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_endpoints: Option<ApiEndpoints>,
    /// Number of ready Keystone API pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_count: Option<i32>,
    /// IPs of the ready API pods on each requested network attachment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_attachments: Option<BTreeMap<String, Vec<String>>>,
}

/// The api controller's section.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiStatus {
    /// Name of the ConfigMap holding the rendered configuration for the current generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// Name of the Secret holding the rendered configuration parts that contain secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_secret: Option<String>,
    /// Hash of the rendered configuration (ConfigMap and Secret together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Image the API Deployment runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_image: Option<String>,
}

/// The fernet controller's section.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FernetStatus {
    /// Name of the Secret holding the fernet token keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_secret: Option<String>,
    /// Name of the Secret holding the credential keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_keys_secret: Option<String>,
    /// Number of token keys in the Secret, counting the staged key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_keys: Option<i32>,
    /// When the token keys were last rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Time>,
    /// When the next rotation is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_time: Option<Time>,
    /// Rotations since the key Secret was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_count: Option<i64>,
    /// Rotation interval in force (the spec's, raised to the controller's floor and to what `maxActiveKeys`
    /// can cover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_rotation_interval: Option<String>,
    /// Fingerprint of the token key set (changes at every rotation; reveals nothing about the keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_hash: Option<String>,
    /// Fingerprint of the credential key set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_keys_hash: Option<String>,
    /// The last `keystone.openstack.org/regenerate-credential-keys` acknowledgement acted on (one
    /// acknowledgement regenerates lost credential keys once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_regenerate_ack: Option<String>,
    /// Where the credential key rotation cycle is (mirrors the credential-key Secret; the db controller runs
    /// the `credential_migrate` Jobs it asks for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_rotation: Option<CredentialRotationStatus>,
}

/// A credential key rotation cycle, as the fernet controller publishes it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRotationStatus {
    /// `Idle`; `PreMigrate` (every credential is re-encrypted with the current primary key before the
    /// rotation); `PostMigrate` (rotated, the previous primary is kept until the credentials written with it
    /// are re-encrypted).
    pub phase: String,
    /// When the keys of the cycle in progress were rotated (`PostMigrate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<Time>,
    /// `PostMigrate`: the second `credential_migrate` must start at or after this time (the rotation plus the
    /// fernet controller's propagation floor), when every pod has the new primary key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrate_after: Option<Time>,
    /// When the last cycle completed (or the keys were created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Time>,
}

/// The db controller's section.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// Image whose `keystone-manage db_sync` last succeeded against the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_image: Option<String>,
    /// Database host Keystone is configured with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Inputs hash of the last database creation (or connection check) that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_create_hash: Option<String>,
    /// Inputs hash (image and database settings) of the last db-sync that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_sync_hash: Option<String>,
    /// Inputs hash of the last bootstrap that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_hash: Option<String>,
    /// resourceVersion of the password Secret whose database password the database has (the api controller
    /// rolls pods to a configuration rendered from that Secret only when this matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_version: Option<String>,
    /// The last `keystone-manage credential_migrate` that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_migration: Option<CredentialMigrationStatus>,
    /// How many encrypted credentials (EC2, TOTP, application secrets) the database held when the database
    /// step last ran. The fernet controller creates credential keys for a KeystoneAPI that never had any only
    /// when this is 0: new keys cannot decrypt credentials stored with other ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_credentials: Option<i64>,
}

/// A successful `credential_migrate`, as the db controller publishes it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialMigrationStatus {
    /// Fingerprint of the credential key set the Job ran with (the Job checks the keys it mounted).
    pub keys_hash: String,
    /// When the Job started.
    pub started_at: Time,
}

/// Keystone endpoint URLs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiEndpoints {
    /// Public endpoint URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<String>,
    /// Internal endpoint URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal: Option<String>,
}

fn default_container_image() -> String {
    DEFAULT_CONTAINER_IMAGE.to_owned()
}
fn default_replicas() -> i32 {
    1
}
fn default_secret() -> String {
    "osp-secret".to_owned()
}
fn default_region() -> String {
    "regionOne".to_owned()
}
fn default_admin() -> String {
    "admin".to_owned()
}
fn default_admin_password_key() -> String {
    "AdminPassword".to_owned()
}
fn default_database_password_key() -> String {
    "KeystoneDatabasePassword".to_owned()
}
fn default_database_root_password_key() -> String {
    "DbRootPassword".to_owned()
}
fn default_database_host() -> String {
    "openstack".to_owned()
}
fn default_database_port() -> i32 {
    3306
}
fn default_keystone() -> String {
    "keystone".to_owned()
}
fn default_transport_url_key() -> String {
    "transport_url".to_owned()
}
fn default_rotation_interval() -> String {
    "24h".to_owned()
}
fn default_max_active_keys() -> i32 {
    5
}
fn default_token_expiration() -> String {
    "1h".to_owned()
}
fn default_allow_expired_window() -> String {
    "48h".to_owned()
}
fn default_trust_flush_schedule() -> String {
    "1 * * * *".to_owned()
}
fn default_true() -> bool {
    true
}
