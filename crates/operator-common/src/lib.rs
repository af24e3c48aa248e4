//! What all three Keystone controllers share: command-line options, tracing, the health and metrics server,
//! the reconcile metrics, the CRD presence check, server-side-apply helpers for children and for a
//! controller's own status fields, condition bookkeeping, leader election, and graceful shutdown.

pub mod apply;
pub mod backoff;
pub mod cli;
pub mod conditions;
pub mod crd;
pub mod events;
pub mod guard;
pub mod hmac;
pub mod lease;
pub mod metrics;
pub mod redact;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod watch;

pub use redact::Redacted;
