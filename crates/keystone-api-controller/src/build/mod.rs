//! Builders, pure: the validated view (and the rendered config) → k8s-openapi objects, one file per kind.

pub mod config;
pub mod deployment;
pub mod exposure;
pub mod service;

use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use keystone_types::conditions::Controller;
use keystone_types::{KeystoneAPI, labels};

/// Metadata of a child: name, namespace, labels, controller owner reference.
pub fn child_meta(ks: &KeystoneAPI, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: ks.namespace(),
        labels: Some(labels::child_labels(&ks.name_any(), component, Controller::Api)),
        owner_references: ks.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}
