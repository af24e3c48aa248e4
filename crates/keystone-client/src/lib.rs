//! A small Keystone v3 identity API client for the operator's catalog controllers (KeystoneService,
//! KeystoneEndpoint).
//!
//! # What it does
//!
//! - Authenticates as one user (the bootstrap admin) with the password method and **system scope**
//!   (`{"system": {"all": true}}`), which the secure-RBAC default policies require for catalog, user and
//!   role-assignment management. There is no fallback to a project-scoped token: a user without a role on
//!   the system gets a 401 from Keystone, reported as [`Error::AuthFailed`] (category `Unauthorized`) with a
//!   hint, because Keystone gives the same answer for a wrong password.
//! - Caches that token and shares it between clones, until 5 minutes before it expires (or half its lifetime,
//!   for short-lived tokens). Concurrent callers wait for one authentication. The upstream operator
//!   authenticates on every reconcile instead.
//! - On a 401 from any call, drops the token, authenticates again once and retries that request once; a
//!   second 401 is returned as an error, so a revoked user cannot cause a loop.
//! - Verifies an `https` Keystone against a given PEM CA bundle; never follows redirects.
//! - Refuses lists Keystone marked `"truncated": true` ([`Error::Truncated`]) rather than acting on part of
//!   the data.
//! - Keeps secrets out of errors, `Debug` and logs: `Debug` of [`Config`] and [`KeystoneClient`] redacts the
//!   password, the token is a sensitive header value, and error messages taken from responses have the
//!   password, the token and any password sent in the request replaced by `<redacted>`.
//!
//! Every request carries `X-Auth-Token`, `Accept: application/json` and `User-Agent: keystone-operator/<version>`,
//! has the configured timeout, and is logged at debug level with method, path, status and elapsed time.
//!
//! The client takes the URL it is given: choosing the KeystoneAPI's own internal Service, or an override for a
//! controller running outside the cluster, is the caller's job. It talks to that URL directly: proxy
//! variables in the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`) are ignored, so the admin password
//! never goes through a proxy. A response body larger than [`MAX_BODY`] is refused, and an error body that is
//! not Keystone's JSON error document is never quoted (only its size): a URL pointing at some other server
//! cannot turn the client into a way of reading that server.
//!
//! # Why hand-written (reqwest + serde) and not an existing crate
//!
//! The operator needs about twenty identity calls. The crates on crates.io compared:
//!
//! - `openstack_sdk` (gtema/openstack) covers the identity API and system scope, but it is a whole-cloud SDK
//!   built around `clouds.yaml`: it pulls in hyper with all features, chrono, `config`, `dialoguer`
//!   (interactive prompts), `dirs`, `open`, `regex`, `json-patch`, `derive_builder` and a reqwest with http2,
//!   socks, gzip and system-proxy — a large tree for a controller image, and its token and error behaviour
//!   (401 retry, truncated lists, redaction) would still have to be checked and wrapped.
//! - `openstack` + `osauth` (rust-openstack) are async, but aimed at compute, network, image and object storage:
//!   no services, endpoints, regions, users or role assignments.
//! - `openstack_keystone` is a Keystone *server* written in Rust, and `openstack-keystone-api-types` only its
//!   types; neither is a client.
//!
//! Writing the calls directly on the workspace's reqwest (rustls, already used by the e2e suite) and serde costs
//! a few hundred lines, adds no dependency, runs on the operator's tokio runtime, and keeps exactly the
//! behaviour above under our tests.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> keystone_client::Result<()> {
//! use keystone_client::{Config, Interface, KeystoneClient};
//!
//! let config = Config::new("http://keystone-internal.openstack.svc:5000", "admin", "password");
//! let keystone = KeystoneClient::new(config)?;
//! keystone.ensure_region("RegionOne").await?;
//! // The owner marks what this caller created (see OWNER_ATTRIBUTE).
//! let owner = Some("KeystoneService openstack/placement");
//! let service = keystone.create_service("placement", "placement", Some("Placement"), true, owner).await?;
//! let url = "http://placement.openstack.svc:8778";
//! keystone.create_endpoint(&service.id, Interface::Internal, url, "RegionOne", owner).await?;
//! # Ok(())
//! # }
//! ```

mod api;
mod client;
mod error;
mod token;
mod types;

pub use client::{Config, KeystoneClient, MAX_BODY, USER_AGENT};
pub use error::{Error, Result};
pub use types::{
    Domain, Endpoint, Interface, OWNER_ATTRIBUTE, Project, Region, Role, RoleAssignment, Scope, Service,
    ServicePatch, User,
};
