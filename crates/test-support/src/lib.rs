//! Support for integration tests against the real local control plane (`hack/local-cluster.sh`).
//!
//! Every test binary shares one control plane, named `test`; `up` reuses a running one, so `cargo test` works
//! on its own and `make test` pays the start-up once. If the control plane cannot start, the test fails with
//! the script's reason — tests never skip. Each test works in a fresh namespace.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_debug_implementations)]

pub mod binary;
pub mod cluster;
pub mod http;
pub mod keystone;
pub mod mariadb;
pub mod pods;
pub mod process;
pub mod quota;
pub mod tcp_proxy;
pub mod wait;

pub use cluster::{TestNamespace, bare_cluster, client, test_cluster};
