//! The credential key rotation cycle, pure: what the fernet controller (which owns the credential-key Secret)
//! and the db controller (which runs `keystone-manage credential_migrate` Jobs) each do next. The two only
//! coordinate through the KeystoneAPI status; the fernet controller keeps the cycle's phase on the Secret
//! itself, written in the same update as the keys, so a crash at any point resumes from what the Secret says.
//!
//! Keystone encrypts stored credentials (EC2, TOTP, application-credential secrets) with the primary
//! credential key and records which key encrypted each row. A rotation that drops a key some row still needs
//! loses that credential for good, so a cycle is:
//!
//! 1. `Idle` → `PreMigrate` (fernet, when due): the keys stay as they are; the phase says a cycle started.
//! 2. db: `credential_migrate` with those keys, so every row is on the current primary (heals stragglers left
//!    by an earlier failure). Success is published as [`Migrated`] with the key set's hash.
//! 3. `PreMigrate` → `PostMigrate` (fernet, once step 2 succeeded for exactly these keys): Keystone's rotation
//!    — the staged key becomes the primary, a new staged key is added, the old primary is kept.
//! 4. db: waits until `migrate_after` — the rotation plus the fernet controller's propagation floor, published
//!    with the phase — when no pod still encrypts with the old primary, then `credential_migrate` again.
//! 5. `PostMigrate` → `Idle` (fernet, once step 4 succeeded for exactly these keys and started after the
//!    floor): the old primary is dropped.
//!
//! The old key is therefore never dropped before a migration that started after every pod had the new primary
//! succeeded; a failed migration blocks the cycle where it is, and running a migration again is always safe.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Keystone's fixed number of credential keys kept by a rotation: staged, primary and the previous primary.
pub const MAX_CREDENTIAL_KEYS: u32 = 3;

/// Where a cycle is. Kept on the credential-key Secret, mirrored in the status for the db controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Phase {
    /// No cycle in progress: the staged key and the primary.
    #[default]
    Idle,
    /// A cycle started; the rows must all be on the current primary before the rotation.
    PreMigrate,
    /// Rotated: staged, primary and the previous primary; the rows written with the previous primary must be
    /// re-encrypted before it is dropped.
    PostMigrate,
}

impl Phase {
    /// The annotation/status value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "Idle",
            Phase::PreMigrate => "PreMigrate",
            Phase::PostMigrate => "PostMigrate",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown phase value (a hand-edited annotation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown credential rotation phase {0:?} (expected Idle, PreMigrate or PostMigrate)")]
pub struct UnknownPhase(pub String);

impl FromStr for Phase {
    type Err = UnknownPhase;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Idle" => Ok(Phase::Idle),
            "PreMigrate" => Ok(Phase::PreMigrate),
            "PostMigrate" => Ok(Phase::PostMigrate),
            other => Err(UnknownPhase(other.to_owned())),
        }
    }
}

/// What the credential-key Secret records (and the status mirrors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cycle {
    /// The phase.
    pub phase: Phase,
    /// Hash of the key set the Secret holds.
    pub keys_hash: String,
    /// Set in `PostMigrate`: unix seconds of the rotation plus the fernet controller's propagation floor. Only a
    /// migration that started at or after it counts (every pod had the new primary by then). Published, so
    /// that the db controller needs no floor setting of its own.
    pub migrate_after: Option<i64>,
    /// Unix seconds of the end of the last completed cycle (or of the keys' creation): the schedule counts
    /// from here.
    pub last_rotation: i64,
}

/// A successful `credential_migrate`, as the db controller publishes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migrated {
    /// Hash of the key set the Job ran with (checked by the Job against the keys it mounted).
    pub keys_hash: String,
    /// Unix seconds when the Job started.
    pub started_at: i64,
}

/// The fernet controller's settings for credential rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Time between cycles; `None`: only manual requests.
    pub interval: Option<Duration>,
    /// Longest time a changed Secret may take to reach every pod (the controller's propagation floor).
    pub floor: Duration,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// What the fernet controller does with the keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyStep {
    /// Nothing now; look again at this unix time (if any).
    Wait(Option<i64>),
    /// Write phase `PreMigrate`, keys unchanged.
    Start,
    /// Rotate the keys (keeping the previous primary) and write phase `PostMigrate` with
    /// `migrate_after = now + floor`.
    Rotate,
    /// Drop every key but the staged key and the primary; write phase `Idle` with `last_rotation = now`.
    Prune,
}

/// The fernet controller's next step. `manual` is a pending manual request (a new annotation value).
pub fn key_step(
    cycle: &Cycle,
    migrated: Option<&Migrated>,
    now: i64,
    policy: &Policy,
    manual: bool,
) -> KeyStep {
    let migrated_these = migrated.filter(|m| m.keys_hash == cycle.keys_hash);
    match cycle.phase {
        Phase::Idle => {
            // A manual request still waits for the floor after the last cycle: the pods must have the current
            // keys before the next rotation.
            let earliest = cycle.last_rotation.saturating_add(secs(policy.floor));
            let due = policy
                .interval
                .map(|i| cycle.last_rotation.saturating_add(secs(i)).max(earliest));
            let at = match (manual, due) {
                (true, _) => Some(earliest),
                (false, due) => due,
            };
            match at {
                Some(at) if now >= at => KeyStep::Start,
                other => KeyStep::Wait(other),
            }
        }
        Phase::PreMigrate => match migrated_these {
            Some(_) => KeyStep::Rotate,
            None => KeyStep::Wait(None),
        },
        // The migration that allows dropping the old key started after the floor — and not in the future: a
        // start time ahead of now (a skewed clock, an edited status) cannot prove that every pod had the keys.
        Phase::PostMigrate => match (migrated_these, cycle.migrate_after) {
            (Some(m), Some(after)) if m.started_at >= after && m.started_at <= now && now >= after => {
                KeyStep::Prune
            }
            // Without the time the floor cannot be checked: nothing is dropped.
            _ => KeyStep::Wait(None),
        },
    }
}

/// What the db controller does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MigrateStep {
    /// Nothing to do.
    Nothing,
    /// A migration will be needed at this unix time (the propagation floor after the rotation).
    WaitUntil(i64),
    /// Run `credential_migrate` with the key set of this hash.
    Run {
        /// The key set the Job must find mounted.
        keys_hash: String,
    },
}

/// The db controller's next step, from the cycle as mirrored in the status.
pub fn migrate_step(cycle: &Cycle, migrated: Option<&Migrated>, now: i64) -> MigrateStep {
    let done = |after: i64| {
        migrated
            .is_some_and(|m| m.keys_hash == cycle.keys_hash && m.started_at >= after && m.started_at <= now)
    };
    match cycle.phase {
        Phase::Idle => MigrateStep::Nothing,
        Phase::PreMigrate => {
            if done(i64::MIN) {
                MigrateStep::Nothing
            } else {
                MigrateStep::Run {
                    keys_hash: cycle.keys_hash.clone(),
                }
            }
        }
        Phase::PostMigrate => {
            let Some(settled) = cycle.migrate_after else {
                return MigrateStep::Nothing;
            };
            if done(settled) {
                MigrateStep::Nothing
            } else if now < settled {
                MigrateStep::WaitUntil(settled)
            } else {
                MigrateStep::Run {
                    keys_hash: cycle.keys_hash.clone(),
                }
            }
        }
    }
}

/// The cycle as the status mirrors it, for the db controller; `None` until the fernet controller published one
/// (or with an unknown phase value).
pub fn cycle_from_status(ks: &crate::KeystoneAPI) -> Option<Cycle> {
    let fernet = ks.status.as_ref()?.fernet.as_ref()?;
    let rotation = fernet.credential_rotation.as_ref()?;
    Some(Cycle {
        phase: rotation.phase.parse().ok()?,
        keys_hash: fernet.credential_keys_hash.clone()?,
        migrate_after: rotation.migrate_after.as_ref().map(|t| t.0.as_second()),
        last_rotation: rotation
            .last_rotation_time
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
    })
}

/// The last successful migration, as the db controller published it.
pub fn migrated_from_status(ks: &crate::KeystoneAPI) -> Option<Migrated> {
    let m = ks
        .status
        .as_ref()?
        .database
        .as_ref()?
        .credential_migration
        .as_ref()?;
    Some(Migrated {
        keys_hash: m.keys_hash.clone(),
        started_at: m.started_at.0.as_second(),
    })
}

/// Run by a migration Job before `credential_migrate`: computes the fingerprint of the credential keys it
/// mounted (the fernet controller's: SHA-256 over each key's index as 4 big-endian bytes and its text, in
/// index order, first 8 bytes in hex) and exits 3 unless it equals `$CREDENTIAL_KEYS_HASH`, so a Job never
/// migrates with another key set than the one it was started for.
pub const KEYS_CHECK_SCRIPT: &str = r#"
import hashlib, os, sys
d = os.environ.get("CREDENTIAL_KEYS_DIR", "/etc/keystone/credential-keys")
keys = sorted((int(n), open(os.path.join(d, n), "rb").read().rstrip(b"\r\n")) for n in os.listdir(d) if n.isdigit())
h = hashlib.sha256()
for i, k in keys:
    h.update(i.to_bytes(4, "big"))
    h.update(k)
got, want = h.hexdigest()[:16], os.environ["CREDENTIAL_KEYS_HASH"]
if got != want:
    sys.stderr.write("the mounted credential keys (%s) are not the set this Job was started for (%s); the db "
                     "controller starts a new Job\n" % (got, want))
    sys.exit(3)
print("credential keys %s mounted (%d keys)" % (got, len(keys)))
"#;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const FLOOR: u64 = 300;

    fn policy(interval: Option<u64>) -> Policy {
        Policy {
            interval: interval.map(Duration::from_secs),
            floor: Duration::from_secs(FLOOR),
        }
    }

    fn cycle(phase: Phase, hash: &str, migrate_after: Option<i64>) -> Cycle {
        Cycle {
            phase,
            keys_hash: hash.into(),
            migrate_after,
            last_rotation: 1000,
        }
    }

    fn migrated(hash: &str, at: i64) -> Migrated {
        Migrated {
            keys_hash: hash.into(),
            started_at: at,
        }
    }

    #[test]
    fn phases_round_trip_and_unknown_values_are_named() {
        for p in [Phase::Idle, Phase::PreMigrate, Phase::PostMigrate] {
            assert_eq!(p.as_str().parse::<Phase>(), Ok(p));
        }
        let e = "Rotating".parse::<Phase>().unwrap_err();
        assert!(e.to_string().contains("\"Rotating\""), "{e}");
    }

    #[test]
    fn idle_starts_when_due_or_requested_never_before_the_floor() {
        let c = cycle(Phase::Idle, "h", None);
        let day = 86_400;
        assert_eq!(
            key_step(&c, None, 1000 + day - 1, &policy(Some(day as u64)), false),
            KeyStep::Wait(Some(1000 + day))
        );
        assert_eq!(
            key_step(&c, None, 1000 + day, &policy(Some(day as u64)), false),
            KeyStep::Start
        );
        // Off: only manual requests, and those not before the floor.
        assert_eq!(
            key_step(&c, None, 1000 + 10 * day, &policy(None), false),
            KeyStep::Wait(None)
        );
        assert_eq!(
            key_step(&c, None, 1010, &policy(None), true),
            KeyStep::Wait(Some(1300))
        );
        assert_eq!(key_step(&c, None, 1300, &policy(None), true), KeyStep::Start);
        // An interval below the floor is raised to it.
        assert_eq!(
            key_step(&c, None, 1010, &policy(Some(5)), false),
            KeyStep::Wait(Some(1300))
        );
    }

    #[test]
    fn rotation_needs_a_migration_with_exactly_these_keys() {
        let c = cycle(Phase::PreMigrate, "h1", None);
        assert_eq!(key_step(&c, None, 5000, &policy(None), true), KeyStep::Wait(None));
        assert_eq!(
            key_step(&c, Some(&migrated("h0", 4000)), 5000, &policy(None), false),
            KeyStep::Wait(None)
        );
        assert_eq!(
            key_step(&c, Some(&migrated("h1", 4000)), 5000, &policy(None), false),
            KeyStep::Rotate
        );
        assert_eq!(
            migrate_step(&c, Some(&migrated("h0", 4000)), 5000),
            MigrateStep::Run {
                keys_hash: "h1".into()
            }
        );
        assert_eq!(
            migrate_step(&c, Some(&migrated("h1", 4000)), 5000),
            MigrateStep::Nothing
        );
    }

    /// A migration record that claims to have started in the future (a status written by hand, a clock ahead)
    /// cannot allow dropping the old key: before this check it pruned at once.
    #[test]
    fn a_migration_start_in_the_future_allows_nothing() {
        let c = cycle(Phase::PostMigrate, "h2", Some(2300));
        let future = migrated("h2", 9_999_999_999);
        assert_eq!(
            key_step(&c, Some(&future), 2400, &policy(None), false),
            KeyStep::Wait(None)
        );
        assert_eq!(
            migrate_step(&c, Some(&future), 2400),
            MigrateStep::Run {
                keys_hash: "h2".into()
            }
        );
        // Once now has passed its start (and the floor), it counts.
        assert_eq!(
            key_step(&c, Some(&migrated("h2", 2350)), 2400, &policy(None), false),
            KeyStep::Prune
        );
    }

    #[test]
    fn the_old_primary_goes_only_after_a_migration_started_after_the_floor() {
        let c = cycle(Phase::PostMigrate, "h2", Some(2300));
        assert_eq!(
            migrate_step(&c, Some(&migrated("h1", 1500)), 2100),
            MigrateStep::WaitUntil(2300)
        );
        assert_eq!(
            migrate_step(&c, Some(&migrated("h1", 1500)), 2300),
            MigrateStep::Run {
                keys_hash: "h2".into()
            }
        );
        // A migration with these keys that started too early does not count, for either controller.
        assert_eq!(
            key_step(&c, Some(&migrated("h2", 2299)), 2400, &policy(None), false),
            KeyStep::Wait(None)
        );
        assert_eq!(
            migrate_step(&c, Some(&migrated("h2", 2299)), 2400),
            MigrateStep::Run {
                keys_hash: "h2".into()
            }
        );
        assert_eq!(
            key_step(&c, Some(&migrated("h2", 2300)), 2400, &policy(None), false),
            KeyStep::Prune
        );
        assert_eq!(
            migrate_step(&c, Some(&migrated("h2", 2300)), 2400),
            MigrateStep::Nothing
        );
        // No rotation time on record: nothing is dropped.
        let c = cycle(Phase::PostMigrate, "h2", None);
        assert_eq!(
            key_step(&c, Some(&migrated("h2", 9999)), 99_999, &policy(None), false),
            KeyStep::Wait(None)
        );
    }

    // ---- A model of the whole system, run through random interleavings with crashes. ----
    //
    // Keys are numbers; a key set maps Keystone's file index to a key. Rows of the credential table record
    // the key that encrypted them. Pods hold a (possibly stale) copy of the Secret's keys and encrypt new
    // rows with their copy's primary; every pod has the Secret's current keys at most `FLOOR - 1` seconds
    // after they were written. A migration Job mounts the keys current at its start, checks their hash,
    // then re-encrypts rows not on its primary, one row per step (pods keep writing meanwhile); a row it
    // cannot decrypt fails it. The controllers keep nothing in memory: they act on the Secret and the status.
    // Half the runs start from an adopted three-key Secret with rows on its oldest key, which only the
    // migration before the rotation saves (Keystone keeps at most three keys). Removing either the migration
    // before the rotation or the floor before the prune makes this test fail.

    type Keys = BTreeMap<u32, u64>;

    fn hash(k: &Keys) -> String {
        format!("{k:?}")
    }

    fn primary(k: &Keys) -> u64 {
        *k.iter().next_back().unwrap().1
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    struct Job {
        keys: Keys,
        started_at: i64,
        fail_at_end: bool,
    }

    struct World {
        now: i64,
        secret_keys: Keys,
        secret_cycle: Cycle,
        /// When the Secret's keys last changed (the pods' lag counts from here).
        written_at: i64,
        /// The status mirror of the cycle (the fernet controller writes it after the Secret; may be stale).
        status_cycle: Option<Cycle>,
        migrated: Option<Migrated>,
        pods: Vec<(Keys, i64)>,
        /// Credential rows by the key that encrypted them (key → count).
        rows: BTreeMap<u64, u32>,
        job: Option<Job>,
        next_key: u64,
        manual: bool,
        completed_cycles: u32,
    }

    impl World {
        /// `adopted`: the Secret starts with three keys and rows on the oldest (keys from another deployer).
        fn new(adopted: bool) -> World {
            let (keys, rows) = if adopted {
                (
                    Keys::from([(0, 1), (1, 2), (2, 3)]),
                    BTreeMap::from([(2, 3), (3, 1)]),
                )
            } else {
                (Keys::from([(0, 1), (1, 2)]), BTreeMap::from([(2, 2)]))
            };
            let cycle = Cycle {
                phase: Phase::Idle,
                keys_hash: hash(&keys),
                migrate_after: None,
                last_rotation: 0,
            };
            World {
                now: 0,
                secret_keys: keys.clone(),
                secret_cycle: cycle.clone(),
                written_at: 0,
                status_cycle: Some(cycle),
                migrated: None,
                pods: vec![(keys.clone(), 0), (keys, 0)],
                rows,
                job: None,
                next_key: 4,
                manual: false,
                completed_cycles: 0,
            }
        }

        fn write_secret(&mut self, keys: Keys, cycle: Cycle) {
            if keys != self.secret_keys {
                self.written_at = self.now;
            }
            self.secret_keys = keys;
            self.secret_cycle = cycle;
        }

        fn fernet_controller(&mut self, rng: &mut Rng, p: &Policy) {
            let step = key_step(
                &self.secret_cycle,
                self.migrated.as_ref(),
                self.now,
                p,
                self.manual,
            );
            let mut cycle = self.secret_cycle.clone();
            match step {
                KeyStep::Wait(_) => {}
                KeyStep::Start => {
                    cycle.phase = Phase::PreMigrate;
                    self.manual = false;
                    self.write_secret(self.secret_keys.clone(), cycle);
                }
                KeyStep::Rotate => {
                    // Keystone's credential rotation: staged → primary, a new staged key, the old primary kept.
                    let mut keys = self.secret_keys.clone();
                    let top = *keys.keys().next_back().unwrap();
                    let staged = keys.remove(&0).unwrap();
                    keys.insert(top + 1, staged);
                    keys.insert(0, self.next_key);
                    self.next_key += 1;
                    // Keystone keeps at most three credential keys.
                    while keys.len() > 3 {
                        let lowest = *keys.keys().find(|i| **i != 0).unwrap();
                        keys.remove(&lowest);
                    }
                    cycle.phase = Phase::PostMigrate;
                    cycle.keys_hash = hash(&keys);
                    cycle.migrate_after = Some(self.now + FLOOR as i64);
                    self.write_secret(keys, cycle);
                }
                KeyStep::Prune => {
                    let keys = self.secret_keys.clone();
                    let top = *keys.keys().next_back().unwrap();
                    let keys: Keys = keys.into_iter().filter(|(i, _)| *i == 0 || *i == top).collect();
                    cycle.phase = Phase::Idle;
                    cycle.keys_hash = hash(&keys);
                    cycle.migrate_after = None;
                    cycle.last_rotation = self.now;
                    self.completed_cycles += 1;
                    self.write_secret(keys, cycle);
                }
            }
            // The status mirror is a second write: a crash may come between.
            if !rng.chance(20) {
                self.status_cycle = Some(self.secret_cycle.clone());
            }
        }

        fn db_controller(&mut self, rng: &mut Rng) {
            let Some(cycle) = self.status_cycle.clone() else {
                return;
            };
            if self.job.is_some() {
                return;
            }
            if let MigrateStep::Run { keys_hash } = migrate_step(&cycle, self.migrated.as_ref(), self.now) {
                // The Job's pod mounts the Secret as it is now and refuses other keys than expected.
                if hash(&self.secret_keys) == keys_hash {
                    self.job = Some(Job {
                        keys: self.secret_keys.clone(),
                        started_at: self.now,
                        fail_at_end: rng.chance(15),
                    });
                }
            }
        }

        fn run_job(&mut self) {
            let Some(job) = &self.job else { return };
            let target = primary(&job.keys);
            if let Some(row) = self.rows.keys().copied().find(|r| *r != target) {
                assert!(
                    job.keys.values().any(|k| *k == row),
                    "t={}: migration cannot decrypt a row encrypted with key {row}; Job keys {:?}",
                    self.now,
                    job.keys
                );
                let n = self.rows.get_mut(&row).unwrap();
                *n -= 1;
                if *n == 0 {
                    self.rows.remove(&row);
                }
                *self.rows.entry(target).or_default() += 1;
                return;
            }
            let job = self.job.take().unwrap();
            if !job.fail_at_end {
                self.migrated = Some(Migrated {
                    keys_hash: hash(&job.keys),
                    started_at: job.started_at,
                });
            }
        }

        fn pods(&mut self, rng: &mut Rng) {
            for i in 0..self.pods.len() {
                let lag_over = self.now - self.written_at >= (FLOOR as i64) - 1;
                if self.pods[i].0 != self.secret_keys && (lag_over || rng.chance(10)) {
                    self.pods[i] = (self.secret_keys.clone(), self.now);
                }
                if rng.chance(30) {
                    let p = primary(&self.pods[i].0);
                    *self.rows.entry(p).or_default() += 1;
                }
            }
        }

        fn check(&self) {
            // Every row is decryptable with the Secret's keys and with every pod's copy.
            for row in self.rows.keys() {
                assert!(
                    self.secret_keys.values().any(|k| k == row),
                    "t={}: row on key {row} lost from the Secret {:?} (phase {})",
                    self.now,
                    self.secret_keys,
                    self.secret_cycle.phase
                );
                for (keys, _) in &self.pods {
                    assert!(
                        keys.values().any(|k| k == row),
                        "t={}: a pod cannot read a row on {row}",
                        self.now
                    );
                }
            }
            assert!(
                self.secret_keys.len() <= 3,
                "more than Keystone's 3 credential keys"
            );
            assert_eq!(self.secret_cycle.keys_hash, hash(&self.secret_keys));
        }
    }

    #[test]
    fn no_credential_is_ever_lost_under_random_interleavings_crashes_and_failed_migrations() {
        let mut total_cycles = 0;
        for seed in 1..=300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let p = policy(if seed % 3 == 0 { None } else { Some(600) });
            let mut w = World::new(seed % 2 == 0);
            for _ in 0..3000 {
                w.now += 1 + (rng.next() % 20) as i64;
                if seed % 3 == 0 && rng.chance(2) {
                    w.manual = true;
                }
                // Each actor runs or not (a crashed or slow controller simply misses turns).
                if rng.chance(50) {
                    w.fernet_controller(&mut rng, &p);
                }
                if rng.chance(50) {
                    w.db_controller(&mut rng);
                }
                if rng.chance(70) {
                    w.run_job();
                }
                w.pods(&mut rng);
                w.check();
            }
            total_cycles += w.completed_cycles;
        }
        // The model did rotate (not a vacuous pass): hundreds of completed cycles across the seeds.
        assert!(total_cycles > 300, "only {total_cycles} cycles completed");
    }
}
