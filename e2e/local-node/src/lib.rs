//! `keystone-local-node`: plays the kubelet (and the scheduler, for the namespaces it is given) on the
//! embedded control plane, so that the operator's Jobs and Deployment pods run as real processes.
//! See `e2e/README.md` for what is real and what is stood in for.

pub mod env;
pub mod hosts;
pub mod net;
pub mod node;
pub mod pod;
pub mod probe;
pub mod standin;
pub mod volumes;
