//! The pod driver with the real kube-controller-manager: a Deployment becomes available and a Job completes
//! from pod status the driver writes, and the network-status annotation lands on the pod.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use test_support::pods::{NETWORK_STATUS_ANNOTATION, Outcome, PodDriver};
use test_support::{TestNamespace, client, wait};

#[tokio::test(flavor = "multi_thread")]
async fn deployment_becomes_available_and_job_completes() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "driver").await;
    let driver = PodDriver::new(&client, &ns.name);
    // Pods need the namespace's default ServiceAccount, which the serviceaccount controller creates.
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), &ns.name);
    wait::until("default ServiceAccount", Duration::from_secs(30), || async {
        sas.get_opt("default")
            .await
            .map_err(|e| e.to_string())?
            .map(|_| ())
            .ok_or_else(|| "absent".to_string())
    })
    .await;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "example.invalid/web:1" }] }
            }
        }
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();

    let driven = wait::until("2 web pods driven", Duration::from_secs(60), || {
        let driver = driver.clone();
        async move {
            let mut all = Vec::new();
            // drive what exists now; ReplicaSet creates pods asynchronously
            all.extend(
                driver
                    .drive_pending("app=web", Outcome::Running { ready: true })
                    .await
                    .map_err(|e| e.to_string())?,
            );
            if all.is_empty() {
                Err("no pending pods yet".to_string())
            } else {
                Ok(all)
            }
        }
    })
    .await;
    // drive any pod created after the first batch
    wait::until(
        "Deployment web available with 2 ready replicas",
        Duration::from_secs(60),
        || {
            let driver = driver.clone();
            let deployments = deployments.clone();
            async move {
                driver
                    .drive_pending("app=web", Outcome::Running { ready: true })
                    .await
                    .map_err(|e| e.to_string())?;
                let d = deployments.get("web").await.map_err(|e| e.to_string())?;
                let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
                let available = d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
                if ready == 2 && available == 2 {
                    Ok(())
                } else {
                    Err(format!("ready={ready} available={available}"))
                }
            }
        },
    )
    .await;

    // The Multus annotation lands on the pod as Multus would write it.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    driver
        .set_network_status(&driven[0], &[("storage", "172.18.0.52")])
        .await
        .unwrap();
    let pod = pods.get(&driven[0]).await.unwrap();
    let annotation = pod.metadata.annotations.unwrap()[NETWORK_STATUS_ANNOTATION].clone();
    let networks: serde_json::Value = serde_json::from_str(&annotation).unwrap();
    assert_eq!(networks[1]["name"], format!("{}/storage", ns.name));
    assert_eq!(networks[1]["ips"][0], "172.18.0.52");

    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let job: Job = serde_json::from_value(json!({
        "metadata": { "name": "once" },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "labels": { "app": "once" } },
                "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "example.invalid/c:1" }] }
            }
        }
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    wait::until("Job once to complete", Duration::from_secs(60), || {
        let driver = driver.clone();
        let jobs = jobs.clone();
        async move {
            driver
                .drive_pending("app=once", Outcome::Succeeded)
                .await
                .map_err(|e| e.to_string())?;
            let j = jobs.get("once").await.map_err(|e| e.to_string())?;
            let complete = j
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Complete" && c.status == "True"));
            if complete {
                Ok(())
            } else {
                Err(format!("status: {:?}", j.status))
            }
        }
    })
    .await;
    ns.delete().await;
}
