//! The leader lease on the real API server: one holder at a time, standbys take over on release (at once)
//! or when the holder stops renewing (after the lease duration, as they observe it), and a holder whose
//! lease is taken learns it on its next renewal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::PostParams;

use operator_common::lease::{Ended, LeaseGate, Timings};
use test_support::{TestNamespace, client};

const FAST: Timings = Timings {
    lease_duration: Duration::from_secs(3),
    renew_deadline: Duration::from_secs(2),
    retry_period: Duration::from_millis(300),
};

async fn holder(api: &Api<Lease>, name: &str) -> Option<String> {
    api.get(name).await.unwrap().spec.unwrap().holder_identity
}

#[tokio::test(flavor = "multi_thread")]
async fn one_leader_then_handover_on_release() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "lease-release").await;
    let a = LeaseGate::new(client.clone(), &ns.name, "keystone-test", "a", FAST);
    let b = LeaseGate::new(client.clone(), &ns.name, "keystone-test", "b", FAST);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);

    let held_a = a.acquire().await;
    assert_eq!(holder(&leases, "keystone-test").await.as_deref(), Some("a"));

    // b stands by while a renews: give it several lease durations.
    let mut held_a = held_a;
    let standby = tokio::time::timeout(Duration::from_secs(8), async {
        tokio::select! {
            _ = b.acquire() => panic!("b acquired a lease that a keeps renewing"),
            ended = held_a.hold() => panic!("a lost its lease while renewing: {ended:?}"),
        }
    })
    .await;
    assert!(standby.is_err(), "the standby phase must last until the timeout");

    // A clean release hands over without waiting for expiry.
    held_a.release().await;
    let start = Instant::now();
    let _held_b = b.acquire().await;
    assert!(
        start.elapsed() < FAST.lease_duration,
        "b took {:?} to take a released lease",
        start.elapsed()
    );
    let spec = leases.get("keystone-test").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn standby_takes_over_after_the_holder_stops_renewing() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "lease-expiry").await;
    let a = LeaseGate::new(client.clone(), &ns.name, "keystone-test", "a", FAST);
    let b = LeaseGate::new(client.clone(), &ns.name, "keystone-test", "b", FAST);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);

    // a acquires, then "crashes": no renewals, no release.
    drop(a.acquire().await);
    let start = Instant::now();
    let _held_b = tokio::time::timeout(Duration::from_secs(30), b.acquire())
        .await
        .expect("b never took over an abandoned lease");
    assert!(
        start.elapsed() >= FAST.lease_duration,
        "b took over after {:?}, before the lease duration",
        start.elapsed()
    );
    assert_eq!(holder(&leases, "keystone-test").await.as_deref(), Some("b"));
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_holder_whose_lease_is_taken_learns_it() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "lease-stolen").await;
    let a = LeaseGate::new(client.clone(), &ns.name, "keystone-test", "a", FAST);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let mut held = a.acquire().await;

    // Someone else (a misconfigured second deployment, an admin) writes the lease.
    let mut lease = leases.get("keystone-test").await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    leases
        .replace("keystone-test", &PostParams::default(), &lease)
        .await
        .unwrap();

    let ended = tokio::time::timeout(Duration::from_secs(10), held.hold())
        .await
        .expect("the holder never noticed");
    assert_eq!(ended, Ended::TakenBy("intruder".into()));
    ns.delete().await;
}

/// A leader whose apiserver stops answering (connections stay open, nothing comes back) gives up within the
/// renew deadline, before a standby that still reaches the apiserver can take over — not after the client's
/// read timeout. The leader talks to the apiserver through a proxy the test pauses.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_whose_apiserver_hangs_gives_up_before_a_standby_takes_over() {
    use test_support::tcp_proxy::PausableProxy;
    const TIMINGS: Timings = Timings {
        lease_duration: Duration::from_secs(6),
        renew_deadline: Duration::from_secs(4),
        retry_period: Duration::from_millis(500),
    };
    let cluster = test_support::test_cluster().await;
    let client = cluster.client().await;
    let ns = TestNamespace::new(&client, "lease-hang").await;

    // The leader's client goes through the proxy.
    let kubeconfig = kube::config::Kubeconfig::read_from(&cluster.kubeconfig).unwrap();
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    let authority = config.cluster_url.authority().unwrap().as_str().to_owned();
    let target = tokio::net::lookup_host(&authority).await.unwrap().next().unwrap();
    let proxy = PausableProxy::start(target).await;
    config.cluster_url = format!("https://{}", proxy.addr).parse().unwrap();
    let leader_client = kube::Client::try_from(config).unwrap();

    let a = LeaseGate::new(leader_client, &ns.name, "keystone-test", "a", TIMINGS);
    let b = LeaseGate::new(client.clone(), &ns.name, "keystone-test", "b", TIMINGS);
    let mut held_a = a.acquire().await;
    // Renewing normally for a while, through the proxy.
    let renewing = tokio::time::timeout(Duration::from_secs(3), held_a.hold()).await;
    assert!(renewing.is_err(), "a lost its lease while the proxy forwarded");

    proxy.pause();
    let paused_at = Instant::now();
    let (a_gave_up, b_took_over) = tokio::join!(
        async {
            let ended = tokio::time::timeout(Duration::from_secs(30), held_a.hold())
                .await
                .expect("the leader kept waiting on a hung apiserver");
            (ended, paused_at.elapsed())
        },
        async {
            let _held_b = b.acquire().await;
            paused_at.elapsed()
        }
    );
    let (ended, gave_up_after) = a_gave_up;
    eprintln!("leader gave up after {gave_up_after:?} ({ended:?}); standby took over after {b_took_over:?}");
    assert_eq!(ended, Ended::RenewDeadlineExceeded);
    assert!(
        gave_up_after < b_took_over,
        "the leader gave up after {gave_up_after:?}, the standby took over after {b_took_over:?}"
    );
    assert!(
        gave_up_after <= TIMINGS.renew_deadline + TIMINGS.retry_period + Duration::from_secs(1),
        "the leader gave up after {gave_up_after:?}, past its renew deadline"
    );
    proxy.resume();
    ns.delete().await;
}
