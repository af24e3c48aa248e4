//! `apply_child` against the real API server: creates, is idempotent, and is owned by the controller's field
//! manager; a second controller applying the same object is not how children work (each owns its own).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::ObjectMeta;

use keystone_types::conditions::Controller;
use keystone_types::labels;
use operator_common::apply::apply_child;
use test_support::{TestNamespace, client};

#[tokio::test(flavor = "multi_thread")]
async fn children_are_applied_idempotently_under_the_controllers_field_manager() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "child").await;
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("keystone-config".into()),
            namespace: Some(ns.name.clone()),
            labels: Some(labels::child_labels(
                "keystone",
                labels::component::CONFIG,
                Controller::Api,
            )),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "keystone.conf".to_owned(),
            "[DEFAULT]\n".to_owned(),
        )])),
        ..Default::default()
    };
    let first = apply_child(&client, Controller::Api, &cm).await.unwrap();
    let second = apply_child(&client, Controller::Api, &cm).await.unwrap();
    assert_eq!(
        first.metadata.resource_version, second.metadata.resource_version,
        "re-apply must be a no-op"
    );

    // A user's edit of an owned field is taken back by the next apply (force).
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let mut edited = second.clone();
    edited.data = Some(BTreeMap::from([(
        "keystone.conf".to_owned(),
        "[DEFAULT]\ndebug = true\n".to_owned(),
    )]));
    edited.metadata.managed_fields = None;
    api.replace("keystone-config", &Default::default(), &edited)
        .await
        .unwrap();
    let healed = apply_child(&client, Controller::Api, &cm).await.unwrap();
    assert_eq!(healed.data.unwrap()["keystone.conf"], "[DEFAULT]\n");
    let managers: Vec<_> = healed
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.iter().any(|m| m == "keystone-api-controller"),
        "{managers:?}"
    );
    ns.delete().await;
}
