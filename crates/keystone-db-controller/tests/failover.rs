//! Two db controller replicas with leader election: the leader is killed while its first Job runs; the
//! standby takes over, adopts that Job instead of creating a second one, and finishes the sequence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;

use keystone_types::{KeystoneAPI, conditions};
use test_support::binary::sibling;
use test_support::keystone;
use test_support::pods::{Outcome, PodDriver};
use test_support::process::{ControllerProcess, fast_leader_election};
use test_support::{TestNamespace, test_cluster, wait};

const DB: &str = env!("CARGO_BIN_EXE_keystone-db-controller");

fn is_leader(page: &str) -> bool {
    page.lines().any(|l| l == "keystone_db_leader 1")
}

#[tokio::test(flavor = "multi_thread")]
async fn standby_adopts_the_running_job_instead_of_duplicating_it() {
    let cluster = test_cluster().await;
    let client = cluster.client().await;
    let ns = TestNamespace::new(&client, "db-ha").await;
    let election = fast_leader_election(&ns.name);
    let election: Vec<&str> = election.iter().map(String::as_str).collect();
    let mut procs = Vec::new();
    for _ in 0..2 {
        let mut p = ControllerProcess::start(DB, cluster, Some(&ns.name), &election);
        p.wait_ready().await;
        procs.push(p);
    }
    // The other two controllers publish the keys and the configuration the db steps wait for.
    let mut others = Vec::new();
    for c in ["keystone-fernet-controller", "keystone-api-controller"] {
        let mut p = ControllerProcess::start(&sibling(c), cluster, Some(&ns.name), &[]);
        p.wait_ready().await;
        others.push(p);
    }

    keystone::create_osp_secret(&client, &ns.name, "a", "b", "c").await;
    keystone::create(&client, &ns.name, "keystone", json!({"replicas": 0})).await;
    let keystones: Api<KeystoneAPI> = Api::namespaced(client.clone(), &ns.name);

    // The first Job exists (its pod not run yet): kill whoever created it.
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let by_component = |component: &'static str| {
        let jobs = jobs.clone();
        async move {
            jobs.list(&ListParams::default().labels(&format!("app.kubernetes.io/component={component}")))
                .await
                .unwrap()
                .items
                .len()
        }
    };
    wait::until("db-create Job", Duration::from_secs(30), || async {
        if by_component("db-create").await == 1 {
            Ok(())
        } else {
            Err("none yet".to_owned())
        }
    })
    .await;
    let mut leader = None;
    for (i, p) in procs.iter().enumerate() {
        if is_leader(&p.metrics().await) {
            leader = Some(i);
        }
    }
    let leader = leader.expect("one replica leads");
    let survivor = procs.remove(1 - leader);
    let killed_at = Instant::now();
    procs.remove(0).crash().await;
    survivor.wait_metric("keystone_db_leader", 1.0).await;
    println!("db takeover after SIGKILL: {:?}", killed_at.elapsed());

    let driver = PodDriver::new(&client, &ns.name);
    wait::until("BootstrapReady", Duration::from_secs(90), || async {
        driver
            .drive_keystone(Outcome::Succeeded)
            .await
            .map_err(|e| e.to_string())?;
        let ks = keystones.get("keystone").await.map_err(|e| e.to_string())?;
        keystone::condition_is(&ks, conditions::BOOTSTRAP_READY, "True")
    })
    .await;
    for component in ["db-create", "db-sync", "bootstrap"] {
        assert_eq!(by_component(component).await, 1, "{component} Jobs");
    }
    ns.delete().await;
}
