//! The `<name>-internal` and `<name>-public` Services (port 5000). An endpoint listed in
//! `spec.externalEndpoints` becomes a LoadBalancer announced by MetalLB; its annotations are written under both
//! the current `metallb.io/` prefix and the older `metallb.universe.tf/` one, so either MetalLB generation
//! honours them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use keystone_types::v1beta1::{Endpoint, ExternalEndpoint};
use keystone_types::{KeystoneAPI, labels, names};

use super::child_meta;

/// Keystone's port.
pub const PORT: i32 = 5000;

/// MetalLB annotations for an external endpoint, under both prefixes.
pub fn metallb_annotations(e: &ExternalEndpoint) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for prefix in ["metallb.io", "metallb.universe.tf"] {
        out.insert(format!("{prefix}/address-pool"), e.ip_address_pool.clone());
        if !e.load_balancer_ips.is_empty() {
            out.insert(format!("{prefix}/loadBalancerIPs"), e.load_balancer_ips.join(","));
        }
        if e.shared_ip {
            let key = if e.shared_ip_key.is_empty() {
                e.ip_address_pool.clone()
            } else {
                e.shared_ip_key.clone()
            };
            out.insert(format!("{prefix}/allow-shared-ip"), key);
        }
    }
    out
}

/// The Service of `endpoint`.
pub fn service(ks: &KeystoneAPI, endpoint: Endpoint) -> Service {
    let external = ks.spec.external_endpoints.iter().find(|e| e.endpoint == endpoint);
    let mut meta = child_meta(
        ks,
        names::service(&ks.name_any(), endpoint),
        labels::component::API,
    );
    if let Some(l) = meta.labels.as_mut() {
        l.insert("keystone.openstack.org/endpoint".into(), endpoint.as_str().into());
    }
    meta.annotations = external.map(metallb_annotations);
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(
                if external.is_some() {
                    "LoadBalancer"
                } else {
                    "ClusterIP"
                }
                .into(),
            ),
            selector: Some(labels::selector_labels(&ks.name_any(), labels::component::API)),
            ports: Some(vec![ServicePort {
                name: Some("keystone-api".into()),
                port: PORT,
                target_port: Some(IntOrString::Int(PORT)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The URL other services and clients use for `endpoint`: the Service's cluster DNS name.
pub fn endpoint_url(ks: &KeystoneAPI, endpoint: Endpoint) -> String {
    format!(
        "http://{}.{}.svc:{PORT}",
        names::service(&ks.name_any(), endpoint),
        ks.namespace().unwrap_or_default()
    )
}
