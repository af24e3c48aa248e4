//! How the public endpoint is reached from outside the cluster: an Ingress when the spec asks for one, a
//! Route on OpenShift, else nothing (the Service's cluster DNS name). Plus, on OpenShift, the RoleBinding that
//! lets the pods' ServiceAccount use an SCC admitting uid 42425.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend,
    IngressSpec as K8sIngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use keystone_types::v1beta1::{Endpoint, IngressSpec};
use keystone_types::{KeystoneAPI, labels, names};

use super::child_meta;

/// OpenShift's Route.
pub fn route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("route.openshift.io", "v1", "Route"),
        "routes",
    )
}

/// The ClusterRole granting `use` of OpenShift's `nonroot-v2` SCC (any non-root uid, such as 42425): the
/// default of `--scc-cluster-role`, for installs without the chart's dedicated SCC (OLM bundles cannot ship one).
pub const NONROOT_SCC_CLUSTER_ROLE: &str = "system:openshift:scc:nonroot-v2";

/// The Ingress for the public Service.
pub fn ingress(ks: &KeystoneAPI, spec: &IngressSpec) -> Ingress {
    let service = names::service(&ks.name_any(), Endpoint::Public);
    Ingress {
        metadata: child_meta(ks, service.clone(), labels::component::API),
        spec: Some(K8sIngressSpec {
            ingress_class_name: spec.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: Some(spec.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: service,
                                port: Some(ServiceBackendPort {
                                    name: Some("keystone-api".into()),
                                    ..Default::default()
                                }),
                            }),
                            ..Default::default()
                        },
                    }],
                }),
            }]),
            tls: spec.tls_secret_name.as_ref().map(|s| {
                vec![IngressTLS {
                    hosts: Some(vec![spec.host.clone()]),
                    secret_name: Some(s.clone()),
                }]
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The public URL an Ingress serves.
pub fn ingress_url(spec: &IngressSpec) -> String {
    let scheme = if spec.tls_secret_name.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}", spec.host)
}

/// The Route for the public Service.
pub fn route(ks: &KeystoneAPI) -> DynamicObject {
    let service = names::service(&ks.name_any(), Endpoint::Public);
    let mut obj = DynamicObject::new(&service, &route_resource()).within(&ks.namespace().unwrap_or_default());
    obj.metadata = child_meta(ks, service.clone(), labels::component::API);
    obj.data = json!({ "spec": { "to": { "kind": "Service", "name": service }, "port": { "targetPort": "keystone-api" } } });
    obj
}

/// The URL of an admitted Route (`status.ingress[].host` with `Admitted=True`), if any.
pub fn route_url(route: &DynamicObject) -> Option<String> {
    let tls = route.data["spec"]["tls"].is_object();
    let ingress = route.data["status"]["ingress"].as_array()?;
    let admitted = ingress.iter().find(|i| {
        i["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Admitted" && c["status"] == "True")
        })
    })?;
    let host = admitted["host"].as_str()?;
    Some(format!("{}://{host}", if tls { "https" } else { "http" }))
}

/// On OpenShift: lets the instance's ServiceAccount use the SCC that ClusterRole `scc_role` grants (the chart's
/// dedicated SCC pinning uid and fsGroup 42425, or `nonroot-v2`).
pub fn scc_role_binding(ks: &KeystoneAPI, scc_role: &str) -> RoleBinding {
    let sa = names::service_account(&ks.name_any());
    RoleBinding {
        metadata: child_meta(ks, format!("{sa}-scc"), labels::component::API),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: scc_role.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: sa,
            namespace: ks.namespace(),
            ..Default::default()
        }]),
    }
}
