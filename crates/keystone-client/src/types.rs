//! The Keystone v3 objects the client reads and writes, with only the fields the operator needs (unknown
//! fields such as `links` or extra attributes are ignored).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The extra attribute that records which operator object created a service, endpoint or user in Keystone
/// (Keystone keeps unknown attributes of these entities and returns them). What carries it was created by the
/// operator; what lacks it was found, and is left as it is.
pub const OWNER_ATTRIBUTE: &str = "keystone_operator_owner";

/// A catalog service (`/v3/services`). `name` and `description` are optional in Keystone.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Service {
    pub id: String,
    #[serde(rename = "type")]
    pub service_type: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// [`OWNER_ATTRIBUTE`]: the operator object that created it, if any.
    #[serde(rename = "keystone_operator_owner", default)]
    pub owner: Option<String>,
}

/// Fields to change on a service; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServicePatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// An endpoint's interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interface {
    Public,
    Internal,
    Admin,
}

impl Interface {
    /// The name Keystone uses: `public`, `internal` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Public => "public",
            Interface::Internal => "internal",
            Interface::Admin => "admin",
        }
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A catalog endpoint (`/v3/endpoints`). `region_id` is null for an endpoint without a region.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub interface: Interface,
    #[serde(default)]
    pub region_id: Option<String>,
    pub url: String,
    pub service_id: String,
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// [`OWNER_ATTRIBUTE`]: the operator object that created it, if any.
    #[serde(rename = "keystone_operator_owner", default)]
    pub owner: Option<String>,
}

/// A region (`/v3/regions`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Region {
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parent_region_id: Option<String>,
}

/// A domain (`/v3/domains`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Domain {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "enabled_default")]
    pub enabled: bool,
}

/// A project (`/v3/projects`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "enabled_default")]
    pub enabled: bool,
}

/// A user (`/v3/users`). Keystone never returns a password.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    #[serde(default)]
    pub default_project_id: Option<String>,
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    #[serde(default)]
    pub password_expires_at: Option<String>,
    /// [`OWNER_ATTRIBUTE`]: the operator object that created it, if any.
    #[serde(rename = "keystone_operator_owner", default)]
    pub owner: Option<String>,
}

/// A role (`/v3/roles`). `domain_id` is null for the global roles (`admin`, `member`, `reader`, `service`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Role {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub domain_id: Option<String>,
}

/// Where a role assignment applies (`/v3/role_assignments`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// On a project.
    Project(String),
    /// On a domain.
    Domain(String),
    /// System-wide.
    System,
    /// A scope this client does not know (anything but the above), never treated as harmless.
    Other(String),
}

/// One effective role assignment of a user: its role and scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleAssignment {
    /// The role's ID.
    pub role_id: String,
    /// Where it applies.
    pub scope: Scope,
}

impl<'de> Deserialize<'de> for RoleAssignment {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Id {
            id: String,
        }
        #[derive(Deserialize)]
        struct Raw {
            role: Id,
            #[serde(default)]
            scope: serde_json::Map<String, serde_json::Value>,
        }
        let raw = Raw::deserialize(d)?;
        let id_of = |v: &serde_json::Value| v.get("id").and_then(|i| i.as_str()).map(str::to_owned);
        let scope = if let Some(p) = raw.scope.get("project").and_then(id_of) {
            Scope::Project(p)
        } else if let Some(d) = raw.scope.get("domain").and_then(id_of) {
            Scope::Domain(d)
        } else if raw.scope.contains_key("system") {
            Scope::System
        } else {
            Scope::Other(serde_json::Value::Object(raw.scope).to_string())
        };
        Ok(RoleAssignment {
            role_id: raw.role.id,
            scope,
        })
    }
}

fn enabled_default() -> bool {
    true
}
