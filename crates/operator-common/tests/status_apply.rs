//! The status contract on the real API server: each controller's server-side apply of its own conditions and
//! section merges with the others' (conditions are a list-map keyed by type), and managedFields show that each
//! field manager owns exactly its own entries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

use keystone_types::conditions::{self, Controller};
use keystone_types::v1beta1::{DatabaseStatus, FernetStatus};
use keystone_types::{KeystoneAPI, KeystoneAPIStatus};
use operator_common::apply::apply_status;
use operator_common::conditions::{Desired, reconcile};
use test_support::{TestNamespace, client};

fn status_for(controller: Controller, current: &KeystoneAPI) -> KeystoneAPIStatus {
    let existing = current
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let desired: Vec<Desired> = conditions::owned_by(controller)
        .map(|t| {
            Desired::ok(
                t,
                conditions::reasons::SUCCEEDED,
                format!("{t} set by {controller}"),
            )
        })
        .collect();
    let (conds, _) = reconcile(&existing, &desired, current.metadata.generation, Timestamp::now());
    let mut status = KeystoneAPIStatus {
        conditions: Some(conds),
        ..Default::default()
    };
    match controller {
        Controller::Fernet => {
            status.fernet = Some(FernetStatus {
                active_keys: Some(2),
                ..Default::default()
            });
        }
        Controller::Db => {
            status.database = Some(DatabaseStatus {
                synced_image: Some("img:1".into()),
                ..Default::default()
            });
        }
        Controller::Api => status.ready_count = Some(0),
    }
    status
}

#[tokio::test(flavor = "multi_thread")]
async fn three_controllers_share_status_without_clobbering() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "status").await;
    let api: Api<KeystoneAPI> = Api::namespaced(client.clone(), &ns.name);
    let ks: KeystoneAPI = serde_json::from_value(serde_json::json!({
        "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI",
        "metadata": { "name": "keystone" }, "spec": {}
    }))
    .unwrap();
    let mut current = api.create(&PostParams::default(), &ks).await.unwrap();

    for controller in Controller::ALL {
        let status = status_for(controller, &current);
        current = apply_status(&api, "keystone", controller, &status).await.unwrap();
    }
    // A second apply by one controller (its own rows only) must not drop the others' rows.
    let status = status_for(Controller::Fernet, &current);
    current = apply_status(&api, "keystone", Controller::Fernet, &status)
        .await
        .unwrap();

    let got: Vec<String> = current
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.type_.clone())
        .collect();
    for row in conditions::CONTRACT {
        assert!(
            got.iter().any(|t| t == row.type_),
            "{} missing from {got:?}",
            row.type_
        );
    }
    let st = current.status.as_ref().unwrap();
    assert_eq!(st.fernet.as_ref().unwrap().active_keys, Some(2));
    assert_eq!(
        st.database.as_ref().unwrap().synced_image.as_deref(),
        Some("img:1")
    );
    assert_eq!(st.ready_count, Some(0));

    // managedFields: each manager owns exactly its own condition entries on the status subresource.
    for entry in current.metadata.managed_fields.as_ref().unwrap() {
        let Some(manager) = entry.manager.as_deref() else {
            continue;
        };
        let Some(controller) = Controller::ALL.into_iter().find(|c| c.field_manager() == manager) else {
            continue;
        };
        assert_eq!(
            entry.subresource.as_deref(),
            Some("status"),
            "{manager} wrote outside status"
        );
        let fields = serde_json::to_string(&entry.fields_v1).unwrap();
        for row in conditions::CONTRACT {
            let key = format!("k:{{\\\"type\\\":\\\"{}\\\"}}", row.type_);
            assert_eq!(
                fields.contains(&key),
                row.owner == controller,
                "{manager} ownership of {} is wrong: {fields}",
                row.type_
            );
        }
    }
    ns.delete().await;
}
