//! Helpers for the fernet controller's integration tests: each test gets a namespace and its own controller
//! process watching only that namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use keystone_types::{KeystoneAPI, names};
use test_support::process::ControllerProcess;
use test_support::{TestNamespace, test_cluster, wait};

pub const BINARY: &str = env!("CARGO_BIN_EXE_keystone-fernet-controller");

pub struct Env {
    pub client: Client,
    pub ns: TestNamespace,
    pub keystones: Api<KeystoneAPI>,
    pub secrets: Api<Secret>,
    pub events: Api<Event>,
    pub floor: String,
    /// `--key-propagation-allowance`.
    pub allowance: String,
}

impl Env {
    pub async fn new(prefix: &str, floor: &str) -> Env {
        let cluster = test_cluster().await;
        let client = cluster.client().await;
        let ns = TestNamespace::new(&client, prefix).await;
        Env {
            keystones: Api::namespaced(client.clone(), &ns.name),
            secrets: Api::namespaced(client.clone(), &ns.name),
            events: Api::namespaced(client.clone(), &ns.name),
            client,
            ns,
            floor: floor.to_owned(),
            allowance: "5m".to_owned(),
        }
    }

    /// The same with another `--key-propagation-allowance` (tests that prune keep it short).
    pub fn with_allowance(mut self, allowance: &str) -> Env {
        self.allowance = allowance.to_owned();
        self
    }

    pub async fn start_controller(&self) -> ControllerProcess {
        let mut p = ControllerProcess::start(
            BINARY,
            test_cluster().await,
            Some(&self.ns.name),
            &[
                "--min-rotation-interval",
                &self.floor,
                "--key-propagation-allowance",
                &self.allowance,
            ],
        );
        p.wait_ready().await;
        p
    }

    pub async fn create(&self, name: &str, spec: Value) -> KeystoneAPI {
        let ks: KeystoneAPI = serde_json::from_value(json!({
            "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI",
            "metadata": { "name": name }, "spec": spec,
        }))
        .unwrap();
        let created = self.keystones.create(&PostParams::default(), &ks).await.unwrap();
        self.report_stored_credentials(name, 0).await;
        created
    }

    /// Writes what the db controller's database step reports: how many encrypted credentials the database
    /// holds (credential keys are made only for one that holds none).
    pub async fn report_stored_credentials(&self, name: &str, n: i64) {
        let status = keystone_types::KeystoneAPIStatus {
            database: Some(keystone_types::v1beta1::DatabaseStatus {
                stored_credentials: Some(n),
                ..Default::default()
            }),
            ..Default::default()
        };
        operator_common::apply::apply_status(
            &self.keystones,
            name,
            keystone_types::conditions::Controller::Db,
            &status,
        )
        .await
        .unwrap();
    }

    /// Creates `name` without the db controller's report.
    pub async fn create_unreported(&self, name: &str, spec: Value) {
        let ks: KeystoneAPI = serde_json::from_value(json!({
            "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI",
            "metadata": { "name": name }, "spec": spec,
        }))
        .unwrap();
        self.keystones.create(&PostParams::default(), &ks).await.unwrap();
    }

    pub async fn annotate(&self, name: &str, key: &str, value: &str) {
        let patch = json!({ "metadata": { "annotations": { key: value } } });
        self.keystones
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    pub async fn patch_spec(&self, name: &str, spec: Value) {
        let patch = json!({ "spec": spec });
        self.keystones
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// Waits until condition `type_` has `status` (and `reason`, when given) for the current generation.
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> KeystoneAPI {
        wait::until(
            &format!("{name} {type_}={status} {reason:?}"),
            Duration::from_secs(60),
            || async {
                let ks = self.keystones.get(name).await.map_err(|e| e.to_string())?;
                let c = ks
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.type_ == type_).cloned());
                match c {
                    Some(c)
                        if c.status == status
                            && reason.is_none_or(|r| r == c.reason)
                            && c.observed_generation == ks.metadata.generation =>
                    {
                        Ok(ks)
                    }
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await
    }

    pub async fn fernet_secret(&self, name: &str) -> Secret {
        self.secrets.get(&names::fernet_keys_secret(name)).await.unwrap()
    }

    pub async fn credential_secret(&self, name: &str) -> Option<Secret> {
        self.secrets
            .get_opt(&names::credential_keys_secret(name))
            .await
            .unwrap()
    }

    /// Waits until the fernet Secret's rotation count reaches `n`; returns the Secret.
    pub async fn wait_rotations(&self, name: &str, n: i64) -> Secret {
        wait::until(
            &format!("{name} rotated {n} times"),
            Duration::from_secs(60),
            || async {
                let s = self
                    .secrets
                    .get_opt(&names::fernet_keys_secret(name))
                    .await
                    .map_err(|e| e.to_string())?;
                let count = s.as_ref().map_or(-1, rotation_count);
                if count >= n {
                    Ok(s.unwrap())
                } else {
                    Err(format!("count = {count}"))
                }
            },
        )
        .await
    }

    /// Waits until the last rotation of `name` is more than `secs` seconds ago (to show nothing else follows).
    pub async fn wait_quiet(&self, name: &str, secs: i64) {
        wait::until(
            &format!("{secs}s without a rotation"),
            Duration::from_secs(secs as u64 + 15),
            || async {
                let s = self.fernet_secret(name).await;
                let last = s
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("keystone.openstack.org/last-rotation-time"));
                let last = last
                    .and_then(|l| l.parse::<k8s_openapi::jiff::Timestamp>().ok())
                    .ok_or("no last rotation")?;
                if (k8s_openapi::jiff::Timestamp::now() - last).get_seconds() > secs {
                    Ok(())
                } else {
                    Err("recent".to_string())
                }
            },
        )
        .await
    }

    /// Waits for an Event with `reason` about `name`; returns its note.
    pub async fn wait_event(&self, name: &str, reason: &str) -> String {
        wait::until(
            &format!("event {reason} on {name}"),
            Duration::from_secs(30),
            || async {
                let list = self
                    .events
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                list.items
                    .into_iter()
                    .find(|e| {
                        e.reason.as_deref() == Some(reason) && e.involved_object.name.as_deref() == Some(name)
                    })
                    .map(|e| e.message.unwrap_or_default())
                    .ok_or_else(|| "not yet".to_string())
            },
        )
        .await
    }

    /// All event messages in the namespace.
    pub async fn event_messages(&self) -> Vec<String> {
        self.events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.message)
            .collect()
    }
}

/// The message of condition `type_` of `ks`.
pub fn condition_message(ks: &KeystoneAPI, type_: &str) -> String {
    ks.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

pub fn keys(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8(v.0.clone()).unwrap()))
        .collect()
}

pub fn rotation_count(secret: &Secret) -> i64 {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("keystone.openstack.org/rotation-count"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

/// The fernet Secret's annotation `key`.
pub fn secret_annotation(secret: &Secret, key: &str) -> String {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .cloned()
        .unwrap_or_default()
}

/// A spec that rotates every `interval` with the fewest keys the rule allows for 1s tokens.
pub fn fast_rotation(interval: &str, keys: u32) -> Value {
    json!({
        "replicas": 0,
        "token": { "expiration": "1s", "allowExpiredWindow": "1s" },
        "fernet": { "rotationInterval": interval, "maxActiveKeys": keys },
    })
}
