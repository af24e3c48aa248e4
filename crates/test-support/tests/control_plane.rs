//! The local control plane is the pinned Kubernetes release, and k8s-openapi's version feature matches it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::client;

#[tokio::test(flavor = "multi_thread")]
async fn server_version_matches_the_pin_and_k8s_openapi() {
    let script =
        std::fs::read_to_string(test_support::cluster::repo_root().join("hack/build-control-plane.sh"))
            .unwrap();
    let pinned = script
        .lines()
        .find_map(|l| l.strip_prefix("KUBE_VERSION=${KUBE_VERSION:-"))
        .and_then(|v| v.strip_suffix('}'))
        .expect("KUBE_VERSION default in hack/build-control-plane.sh");
    let info = client().await.apiserver_version().await.unwrap();
    if std::env::var_os("KUBE_VERSION").is_none() {
        assert_eq!(
            info.git_version, pinned,
            "the version stamp of the built kube-apiserver"
        );
    }
    let minor: u32 = info.minor.trim_end_matches('+').parse().unwrap();
    assert_eq!(
        minor, 37,
        "k8s-openapi is built with feature v1_37; the control plane must be 1.37"
    );
}
