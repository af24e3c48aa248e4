//! The config ConfigMap and Secret: immutable, named after their content hash.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;

use keystone_types::{KeystoneAPI, labels, names};

use super::child_meta;
use crate::config::Rendered;

/// The ConfigMap with the non-secret files.
pub fn config_map(ks: &KeystoneAPI, r: &Rendered) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(
            ks,
            names::config_map_versioned(&ks.name_any(), &r.hash),
            labels::component::CONFIG,
        ),
        data: Some(r.config_map.clone()),
        immutable: Some(true),
        ..Default::default()
    }
}

/// The Secret with the files that hold passwords.
pub fn config_secret(ks: &KeystoneAPI, r: &Rendered) -> Secret {
    let data: BTreeMap<String, ByteString> = r
        .secret
        .iter()
        .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
        .collect();
    Secret {
        metadata: child_meta(
            ks,
            names::config_secret_versioned(&ks.name_any(), &r.hash),
            labels::component::CONFIG,
        ),
        type_: Some("Opaque".into()),
        data: Some(data),
        immutable: Some(true),
        ..Default::default()
    }
}
