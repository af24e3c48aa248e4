//! Two replicas with leader election: exactly one reconciles (the standby is Ready but idle), a requested
//! rotation happens once, the standby takes over when the leader is killed, a leader that loses its lease
//! exits non-zero, and a clean stop releases the lease.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use common::{BINARY, Env, rotation_count};
use keystone_types::conditions;
use test_support::process::{ControllerProcess, fast_leader_election};
use test_support::{test_cluster, wait};

const ROTATE: &str = "keystone.openstack.org/rotate-fernet-keys";

fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

async fn start(env: &Env) -> ControllerProcess {
    let ns = env.ns.name.as_str();
    let mut args = vec!["--min-rotation-interval".to_owned(), "1s".to_owned()];
    args.extend(fast_leader_election(ns));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = ControllerProcess::start(BINARY, test_cluster().await, Some(ns), &args);
    // Standbys are Ready too (CRD established), or rollouts with several replicas would never finish.
    p.wait_ready().await;
    p
}

/// Waits until exactly one of `procs` reports itself leader; returns its index.
async fn leader_index(procs: &[&ControllerProcess]) -> usize {
    wait::until("exactly one leader", Duration::from_secs(30), || async {
        let mut leaders = Vec::new();
        for (i, p) in procs.iter().enumerate() {
            if metric(&p.metrics().await, "keystone_fernet_leader") == Some(1.0) {
                leaders.push(i);
            }
        }
        match leaders.as_slice() {
            [one] => Ok(*one),
            other => Err(format!("leaders: {other:?}")),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn one_leader_rotates_once_and_the_standby_takes_over() {
    let env = Env::new("fernet-ha", "1s").await;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns.name);
    let lease_name = format!("keystone-fernet-{}", env.ns.name);
    let a = start(&env).await;
    let b = start(&env).await;
    let first = leader_index(&[&a, &b]).await;
    let (leader, standby) = if first == 0 { (a, b) } else { (b, a) };

    env.create("keystone", json!({"replicas": 0})).await;
    env.wait_condition("keystone", conditions::FERNET_KEYS_READY, "True", None)
        .await;
    env.annotate("keystone", ROTATE, "request-1").await;
    env.wait_rotations("keystone", 1).await;
    env.wait_quiet("keystone", 2).await;
    assert_eq!(rotation_count(&env.fernet_secret("keystone").await), 1);
    // The standby never reconciled anything.
    let page = standby.metrics().await;
    assert_eq!(
        metric(&page, "keystone_fernet_reconcile_runs_total"),
        Some(0.0),
        "{page}"
    );
    assert_eq!(metric(&page, "keystone_fernet_leader"), Some(0.0));

    // Kill the leader as a node failure would: no release, the standby waits out the lease.
    let killed_at = Instant::now();
    leader.crash().await;
    standby.wait_metric("keystone_fernet_leader", 1.0).await;
    let takeover = killed_at.elapsed();
    println!("takeover after SIGKILL: {takeover:?} (lease duration 4s)");
    env.annotate("keystone", ROTATE, "request-2").await;
    env.wait_rotations("keystone", 2).await;
    env.wait_quiet("keystone", 2).await;
    assert_eq!(
        rotation_count(&env.fernet_secret("keystone").await),
        2,
        "one request, one rotation"
    );

    // Someone else takes the lease: the leader stops and exits non-zero, so its pod restarts clean.
    let mut new_leader = standby;
    let mut lease = leases.get(&lease_name).await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    leases
        .replace(&lease_name, &PostParams::default(), &lease)
        .await
        .unwrap();
    let status = new_leader.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success(), "exit status after losing the lease: {status}");
    assert!(
        new_leader.output().contains("lost the leader lease"),
        "{}",
        new_leader.output()
    );

    // A fresh replica takes the abandoned lease; SIGTERM stops it with exit 0 and releases the lease.
    let mut fresh = start(&env).await;
    fresh.wait_metric("keystone_fernet_leader", 1.0).await;
    fresh.signal("TERM");
    let status = fresh.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}\n{}", fresh.output());
    let holder = leases
        .get(&lease_name)
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(holder, None, "lease not released on a clean stop");
    env.ns.delete().await;
}
