//! The fernet controller's own metrics, in the controller's registry (prefix `keystone_fernet_`). Labelled by
//! KeystoneAPI namespace and name; never carry key material.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Key and rotation metrics.
#[derive(Clone, Debug)]
pub struct FernetMetrics {
    /// `keystone_fernet_rotations_total{namespace,name,trigger}`
    pub rotations: IntCounterVec,
    /// `keystone_fernet_last_rotation_timestamp_seconds{namespace,name}`
    pub last_rotation: GaugeVec,
    /// `keystone_fernet_active_keys{namespace,name}`
    pub active_keys: IntGaugeVec,
    /// `keystone_fernet_seconds_until_next_rotation{namespace,name}`
    pub until_next: GaugeVec,
    /// `keystone_fernet_credential_rotation_steps_total{namespace,name,step}` (`started`, `rotated`,
    /// `completed`)
    pub credential_steps: IntCounterVec,
}

impl FernetMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let l = &["namespace", "name"];
        let rotations = IntCounterVec::new(
            Opts::new(
                "rotations_total",
                "Fernet key rotations performed, by trigger (scheduled or manual).",
            ),
            &["namespace", "name", "trigger"],
        )?;
        let last_rotation = GaugeVec::new(
            Opts::new(
                "last_rotation_timestamp_seconds",
                "Unix time of the last fernet key rotation.",
            ),
            l,
        )?;
        let active_keys = IntGaugeVec::new(
            Opts::new(
                "active_keys",
                "Fernet token keys in the Secret, counting the staged key.",
            ),
            l,
        )?;
        let until_next = GaugeVec::new(
            Opts::new(
                "seconds_until_next_rotation",
                "Seconds until the next scheduled rotation.",
            ),
            l,
        )?;
        let credential_steps = IntCounterVec::new(
            Opts::new(
                "credential_rotation_steps_total",
                "Credential key rotation steps taken: started (migrate first), rotated (old primary kept), \
                 completed (old primary dropped after the second migration).",
            ),
            &["namespace", "name", "step"],
        )?;
        registry.register(Box::new(credential_steps.clone()))?;
        registry.register(Box::new(rotations.clone()))?;
        registry.register(Box::new(last_rotation.clone()))?;
        registry.register(Box::new(active_keys.clone()))?;
        registry.register(Box::new(until_next.clone()))?;
        Ok(Self {
            rotations,
            last_rotation,
            active_keys,
            until_next,
            credential_steps,
        })
    }
}
