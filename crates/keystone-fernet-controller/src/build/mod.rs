//! Builders, pure: a validated view plus key material in, k8s-openapi objects out.

pub mod secrets;
