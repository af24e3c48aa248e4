//! The binary against the real control plane: health, readiness, metrics, SIGTERM, missing CRD.

#[tokio::test(flavor = "multi_thread")]
async fn serves_health_and_metrics_and_exits_zero_on_sigterm() {
    test_support::binary::check_lifecycle(env!("CARGO_BIN_EXE_keystone-api-controller"), "api").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exits_non_zero_with_install_hint_when_crd_is_missing() {
    test_support::binary::check_missing_crd(env!("CARGO_BIN_EXE_keystone-api-controller")).await;
}
