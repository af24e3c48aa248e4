//! The catalog resources other OpenStack services use to register themselves in Keystone: `KeystoneService`
//! (a catalog service and the service user it authenticates as) and `KeystoneEndpoint` (its URLs per
//! interface). The api controller reconciles both against the Keystone API of their KeystoneAPI.

use crate::validation::{DATA_KEY, DNS1123_SUBDOMAIN, KEYSTONE_API_NAME, NO_CONTROL};
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Finalizer on KeystoneServices: the Keystone service and service user are removed before the object goes.
pub const SERVICE_FINALIZER: &str = "keystone.openstack.org/keystoneservice";
/// Finalizer on KeystoneEndpoints: the Keystone endpoints are removed before the object goes.
pub const ENDPOINT_FINALIZER: &str = "keystone.openstack.org/keystoneendpoint";

/// Annotation on a KeystoneAPI: the Keystone users (comma-separated names in the Default domain) that a
/// KeystoneService naming them as `serviceUser` may adopt although the operator did not create them. Set by
/// whoever controls the KeystoneAPI, not by the tenant creating the KeystoneService. Never honoured for the
/// KeystoneAPI's admin user, a user another catalog object owns, or a user with any role outside the service
/// project.
pub const ADOPT_SERVICE_USERS: &str = "keystone.openstack.org/adopt-service-users";

/// The project service users get their role on, and the role they get.
pub const SERVICE_PROJECT: &str = "service";
/// The role every service user gets on the `service` project.
pub const SERVICE_ROLE: &str = "service";
/// The role a KeystoneService with `grantAdminRole` also gets (cloud-wide admin under legacy policy).
pub const ADMIN_ROLE: &str = "admin";

/// Condition types of the catalog resources.
pub mod conditions {
    /// `KeystoneAPIReady`: the KeystoneAPI this object belongs to was found and is Ready.
    pub const KEYSTONE_API_READY: &str = "KeystoneAPIReady";
    /// `ServiceRegistered` (KeystoneService): the catalog service exists with this spec.
    pub const SERVICE_REGISTERED: &str = "ServiceRegistered";
    /// `UserReady` (KeystoneService): the service user exists, has the Secret's password and its roles.
    pub const USER_READY: &str = "UserReady";
    /// `ServiceReady` (KeystoneEndpoint): the KeystoneService it names is Ready.
    pub const SERVICE_READY: &str = "ServiceReady";
    /// `EndpointsReady` (KeystoneEndpoint): exactly the spec's endpoints exist in the region.
    pub const ENDPOINTS_READY: &str = "EndpointsReady";
    /// `Ready`: every other condition is True for the current generation.
    pub const READY: &str = "Ready";

    /// Reasons.
    pub mod reasons {
        /// The step is done.
        pub const SUCCEEDED: &str = "Succeeded";
        /// No KeystoneAPI in the namespace, or the named one does not exist.
        pub const KEYSTONE_API_NOT_FOUND: &str = "KeystoneAPINotFound";
        /// Several KeystoneAPIs in the namespace and `keystoneAPI` is not set.
        pub const KEYSTONE_API_AMBIGUOUS: &str = "KeystoneAPIAmbiguous";
        /// The KeystoneAPI exists but is not Ready.
        pub const WAITING_FOR_KEYSTONE_API: &str = "WaitingForKeystoneAPI";
        /// The admin credentials (the KeystoneAPI's Secret) cannot be read.
        pub const ADMIN_CREDENTIALS_UNAVAILABLE: &str = "AdminCredentialsUnavailable";
        /// Keystone could not be reached or answered with an error; retried with backoff.
        pub const KEYSTONE_UNAVAILABLE: &str = "KeystoneUnavailable";
        /// Keystone refused the request (4xx other than a retryable one); the message says which.
        pub const KEYSTONE_REQUEST_FAILED: &str = "KeystoneRequestFailed";
        /// The service user's password Secret or key is missing.
        pub const PASSWORD_SECRET_MISSING: &str = "PasswordSecretMissing";
        /// Several Keystone services (or endpoints) match and none can be picked safely.
        pub const DUPLICATES: &str = "Duplicates";
        /// The KeystoneService named by a KeystoneEndpoint is missing or not Ready.
        pub const WAITING_FOR_SERVICE: &str = "WaitingForService";
        /// An earlier step is not done.
        pub const WAITING: &str = "Waiting";
        /// The spec cannot be acted on; the message names the field.
        pub const INVALID_SPEC: &str = "InvalidSpec";
        /// The Keystone user `serviceUser` names exists and was not created by this object (the KeystoneAPI's
        /// admin, another KeystoneService's user, one made by hand): it is left alone.
        pub const USER_CONFLICT: &str = "UserConflict";
        /// The user may not be adopted although the KeystoneAPI allows it by name: it is the admin user, or has
        /// a role outside the service project (the message names it).
        pub const USER_NOT_ADOPTABLE: &str = "UserNotAdoptable";
        /// An endpoint on a listed interface exists that this object did not create (such as the identity
        /// endpoints bootstrap registers): it is left alone.
        pub const ENDPOINT_CONFLICT: &str = "EndpointConflict";
        /// Being deleted, and the KeystoneAPI exists but cannot be used yet: waiting (until the cleanup
        /// deadline) to remove what this object created.
        pub const DELETION_WAITING: &str = "WaitingToDelete";
    }
}

/// The interfaces an endpoint may be published on.
pub const INTERFACES: [&str; 3] = ["public", "internal", "admin"];
/// `endpoints`: one to three interfaces (public, internal, admin), each an http(s) URL with a host (Keystone
/// catalog templates such as `%(tenant_id)s` in the path are allowed). Bounded sizes keep the CEL cost low.
fn endpoints_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let url_values = crate::validation::url_map_values_cel();
    schemars::json_schema!({
        "type": "object",
        "minProperties": 1,
        "maxProperties": 3,
        "additionalProperties": {"type": "string", "maxLength": 2048},
        "x-kubernetes-validations": [
            {
                "rule": "self.all(k, k == 'public' || k == 'internal' || k == 'admin')",
                "message": "endpoints keys must be public, internal or admin",
                "reason": "FieldValueInvalid"
            },
            {
                "rule": url_values,
                "message": "every endpoints URL must be an http:// or https:// URL with a host, without \
                            user:password@, query, fragment, whitespace or control characters",
                "reason": "FieldValueInvalid"
            }
        ]
    })
}

/// A service in Keystone's catalog and the Keystone user it authenticates as.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "keystone.openstack.org",
    version = "v1beta1",
    kind = "KeystoneService",
    plural = "keystoneservices",
    shortname = "kssvc",
    namespaced,
    status = "KeystoneServiceStatus",
    doc = "KeystoneService registers a service (type and name) in the Keystone catalog of a KeystoneAPI in the \
           same namespace, with a service user that has the `service` role on the `service` project and the \
           password from a Secret.",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.serviceType"}"#,
    printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.serviceName"}"#,
    printcolumn = r#"{"name":"ServiceID","type":"string","jsonPath":".status.serviceID","priority":1}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KeystoneServiceSpec {
    /// Keystone service type, such as `placement`, `compute` or `image`. A service with this type and name
    /// that already exists in Keystone is adopted (and then left in Keystone when this object is deleted).
    #[schemars(length(min = 1, max = 255), regex(pattern = NO_CONTROL))]
    pub service_type: String,

    /// Keystone service name, such as `placement` or `nova`. KeystoneEndpoints refer to the service by it.
    #[schemars(length(min = 1, max = 255), regex(pattern = NO_CONTROL))]
    pub service_name: String,

    /// Description shown in the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^\P{Cc}*$"))]
    pub service_description: Option<String>,

    /// Whether the service is enabled in the catalog.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Name of the Keystone user the service authenticates as, in the Default domain. It gets the `service`
    /// role on the `service` project; its password is set from `secret`, and updated when the Secret changes.
    #[schemars(length(min = 1, max = 255), regex(pattern = NO_CONTROL))]
    pub service_user: String,

    /// Name of the Secret, in the same namespace, holding the service user's password.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub secret: String,

    /// Key inside `secret` that holds the password, such as `PlacementPassword`.
    #[schemars(length(min = 1, max = 253), regex(pattern = DATA_KEY))]
    pub password_selector: String,

    /// Also grant the `admin` role on the `service` project. Under Keystone's legacy policy that role is
    /// cloud-wide admin, so it is off unless a service really needs it.
    #[serde(default)]
    pub grant_admin_role: bool,

    /// Name of the KeystoneAPI in this namespace whose Keystone to register in. Default: the only KeystoneAPI
    /// in the namespace (an error naming the candidates when there are several).
    #[serde(rename = "keystoneAPI", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 40), regex(pattern = KEYSTONE_API_NAME))]
    pub keystone_api: Option<String>,
}

/// Observed state of a KeystoneService.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeystoneServiceStatus {
    /// Conditions: KeystoneAPIReady, ServiceRegistered, UserReady and Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Option<Vec<Condition>>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The KeystoneAPI registered in.
    #[serde(rename = "keystoneAPI", default, skip_serializing_if = "Option::is_none")]
    pub keystone_api: Option<String>,
    /// ID of the service in Keystone.
    #[serde(rename = "serviceID", default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    /// True when the service existed before this object and was adopted: it is not deleted with the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_adopted: Option<bool>,
    /// ID of the service user in Keystone.
    #[serde(rename = "userID", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// True when the user existed before this object and was adopted: it is not deleted with the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_adopted: Option<bool>,
    /// resourceVersion of the password Secret whose password Keystone has (never the password itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_version: Option<String>,
}

/// The URLs of a catalog service, per interface, in one region.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "keystone.openstack.org",
    version = "v1beta1",
    kind = "KeystoneEndpoint",
    plural = "keystoneendpoints",
    shortname = "ksep",
    namespaced,
    status = "KeystoneEndpointStatus",
    doc = "KeystoneEndpoint publishes the URLs of a catalog service (registered by a KeystoneService in the \
           same namespace) per interface (public, internal, admin) in one region of the KeystoneAPI's Keystone.",
    printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.serviceName"}"#,
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".status.region","priority":1}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KeystoneEndpointSpec {
    /// The `serviceName` of the KeystoneService (in this namespace) whose endpoints these are.
    #[schemars(length(min = 1, max = 255), regex(pattern = NO_CONTROL))]
    pub service_name: String,

    /// URL per interface: `public`, `internal` and/or `admin`. Endpoints of the service on an interface not
    /// listed here (in this region) are deleted.
    #[schemars(schema_with = "endpoints_schema")]
    pub endpoints: BTreeMap<String, String>,

    /// Keystone region of the endpoints. Default: the KeystoneAPI's `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), regex(pattern = NO_CONTROL))]
    pub region: Option<String>,

    /// Name of the KeystoneAPI in this namespace. Default: the only KeystoneAPI in the namespace.
    #[serde(rename = "keystoneAPI", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 40), regex(pattern = KEYSTONE_API_NAME))]
    pub keystone_api: Option<String>,
}

/// One endpoint as registered in Keystone.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredEndpoint {
    /// `public`, `internal` or `admin`.
    pub interface: String,
    /// The URL.
    pub url: String,
    /// Endpoint ID in Keystone.
    pub id: String,
}

/// Observed state of a KeystoneEndpoint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeystoneEndpointStatus {
    /// Conditions: KeystoneAPIReady, ServiceReady, EndpointsReady and Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Option<Vec<Condition>>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The KeystoneAPI registered in.
    #[serde(rename = "keystoneAPI", default, skip_serializing_if = "Option::is_none")]
    pub keystone_api: Option<String>,
    /// ID of the service in Keystone.
    #[serde(rename = "serviceID", default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    /// The region the endpoints are in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The registered endpoints, sorted by interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<RegisteredEndpoint>>,
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_style_objects_deserialize() {
        let svc: KeystoneServiceSpec = serde_json::from_value(serde_json::json!({
            "serviceType": "placement", "serviceName": "placement", "serviceDescription": "Placement",
            "enabled": true, "serviceUser": "placement", "secret": "osp-secret",
            "passwordSelector": "PlacementPassword"
        }))
        .unwrap();
        assert!(!svc.grant_admin_role);
        assert_eq!(svc.keystone_api, None);
        let ep: KeystoneEndpointSpec = serde_json::from_value(serde_json::json!({
            "serviceName": "placement",
            "endpoints": {"public": "http://placement-public:8778", "internal": "http://placement-internal:8778"}
        }))
        .unwrap();
        assert_eq!(ep.endpoints.len(), 2);
        assert_eq!(ep.region, None);
    }
}
