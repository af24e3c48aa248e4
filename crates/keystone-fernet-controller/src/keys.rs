//! Key sets, pure: generation from a CSPRNG handed in by the caller, validation, Keystone's rotation, and a
//! fingerprint. Nothing here touches the API server or the clock.
//!
//! A key is 32 random bytes, URL-safe base64 with padding (44 characters): what Keystone's `fernet_setup`
//! writes and what its MultiFernet accepts. A set maps Keystone's file names (`0`, `1`, …) to keys: `0` is
//! the staged key, the highest index the primary, everything between a secondary.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

use operator_common::Redacted;

/// Bytes of key material.
pub const KEY_BYTES: usize = 32;

/// One fernet key in its file format. Formats as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Redacted<String>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key([redacted])")
    }
}

/// Why key material was rejected. Never carries the material itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The random number generator failed; nothing was generated.
    #[error("the random number generator failed: {0}")]
    Rng(String),
    /// A key does not decode to exactly 32 bytes of URL-safe base64 with padding.
    #[error("key {index} is not 32 bytes of URL-safe base64 with padding")]
    Malformed {
        /// The key's file name.
        index: String,
    },
    /// A data entry's name is not a key index.
    #[error("entry {name:?} is not a key index (0, 1, …)")]
    BadName {
        /// The entry name (a file name, not secret).
        name: String,
    },
    /// The staged key `0` is missing.
    #[error("the staged key 0 is missing")]
    NoStaged,
    /// No primary key (index ≥ 1).
    #[error("there is no primary key (index 1 or higher)")]
    NoPrimary,
    /// A key index at the largest value there is: the next rotation could not number its primary. Never
    /// wrapped around; treated as corruption.
    #[error("key index {index} is the largest there is; the next rotation could not number its new primary")]
    IndexAtLimit {
        /// The index.
        index: u32,
    },
    /// Two entries hold the same key.
    #[error("keys {a} and {b} are identical")]
    Duplicate {
        /// One index.
        a: u32,
        /// The other index.
        b: u32,
    },
}

impl Key {
    /// Generates a key from `rng`. An RNG failure yields an error, never an empty or weak key.
    pub fn generate(rng: &mut impl TryRngCore) -> Result<Key, KeyError> {
        let mut bytes = [0u8; KEY_BYTES];
        rng.try_fill_bytes(&mut bytes)
            .map_err(|e| KeyError::Rng(e.to_string()))?;
        if bytes.iter().all(|b| *b == 0) {
            return Err(KeyError::Rng("generator returned all-zero bytes".into()));
        }
        let key = Key(Redacted::new(URL_SAFE.encode(bytes)));
        key.validate("new")?;
        Ok(key)
    }

    /// Parses a key from a Secret value (a trailing newline is accepted, as Keystone accepts it).
    pub fn parse(index: &str, raw: &[u8]) -> Result<Key, KeyError> {
        let text = std::str::from_utf8(raw).map_err(|_| KeyError::Malformed {
            index: index.to_owned(),
        })?;
        let key = Key(Redacted::new(text.trim_end_matches(['\n', '\r']).to_owned()));
        key.validate(index)?;
        Ok(key)
    }

    fn validate(&self, index: &str) -> Result<(), KeyError> {
        let text = self.0.expose();
        match URL_SAFE.decode(text) {
            Ok(bytes) if bytes.len() == KEY_BYTES && text.len() == 44 => Ok(()),
            _ => Err(KeyError::Malformed {
                index: index.to_owned(),
            }),
        }
    }

    /// The file content.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

/// A validated key repository: staged `0` and at least one primary.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeySet(BTreeMap<u32, Key>);

impl KeySet {
    /// What `keystone-manage fernet_setup` makes: `0` (staged) and `1` (primary).
    pub fn initial(rng: &mut impl TryRngCore) -> Result<KeySet, KeyError> {
        let set = KeySet(BTreeMap::from([
            (0, Key::generate(rng)?),
            (1, Key::generate(rng)?),
        ]));
        set.check()?;
        Ok(set)
    }

    /// Reads and validates a Secret's data. Every problem is reported; the first is returned.
    pub fn from_data<'a>(
        data: impl IntoIterator<Item = (&'a String, &'a [u8])>,
    ) -> Result<KeySet, Vec<KeyError>> {
        let mut keys = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, raw) in data {
            match name.parse::<u32>() {
                Ok(i) if i.to_string() == *name => match Key::parse(name, raw) {
                    Ok(k) => {
                        keys.insert(i, k);
                    }
                    Err(e) => errors.push(e),
                },
                _ => errors.push(KeyError::BadName { name: name.clone() }),
            }
        }
        let set = KeySet(keys);
        if let Err(e) = set.check() {
            errors.push(e);
        }
        if errors.is_empty() { Ok(set) } else { Err(errors) }
    }

    fn check(&self) -> Result<(), KeyError> {
        if self.0.contains_key(&u32::MAX) {
            return Err(KeyError::IndexAtLimit { index: u32::MAX });
        }
        if !self.0.contains_key(&0) {
            return Err(KeyError::NoStaged);
        }
        if self.0.len() < 2 {
            return Err(KeyError::NoPrimary);
        }
        let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
        for (i, k) in &self.0 {
            if let Some(a) = seen.insert(k.expose(), *i) {
                return Err(KeyError::Duplicate { a, b: *i });
            }
        }
        Ok(())
    }

    /// Keystone's `fernet_rotate`: the staged key becomes the primary at index max+1, a fresh key becomes
    /// the staged `0`, and the lowest-indexed secondaries are dropped while more than `max_active_keys` keys
    /// remain (the count includes `0`). Returns the successor, checked as a successor of `self`.
    pub fn rotate(&self, max_active_keys: u32, rng: &mut impl TryRngCore) -> Result<KeySet, KeyError> {
        let fresh = Key::generate(rng)?;
        let mut next = self.0.clone();
        let new_primary = self
            .primary_index()
            .checked_add(1)
            .ok_or(KeyError::IndexAtLimit {
                index: self.primary_index(),
            })?;
        let staged = next.remove(&0).ok_or(KeyError::NoStaged)?;
        next.insert(new_primary, staged);
        next.insert(0, fresh);
        let max = usize::try_from(max_active_keys.max(2)).unwrap_or(usize::MAX);
        while next.len() > max {
            let lowest = next.keys().copied().find(|i| *i != 0 && *i != new_primary);
            match lowest {
                Some(i) => next.remove(&i),
                None => break,
            };
        }
        let next = KeySet(next);
        next.check()?;
        Ok(next)
    }

    /// The staged key and the primary only: the end of a credential rotation cycle, once no stored credential
    /// needs the previous primary any more.
    pub fn without_secondaries(&self) -> KeySet {
        let primary = self.primary_index();
        KeySet(
            self.0
                .iter()
                .filter(|(i, _)| **i == 0 || **i == primary)
                .map(|(i, k)| (*i, k.clone()))
                .collect(),
        )
    }

    /// Index of the primary key (the highest).
    pub fn primary_index(&self) -> u32 {
        self.0.keys().next_back().copied().unwrap_or(0)
    }

    /// Number of keys, counting the staged key.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false for a valid set; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Key indexes in ascending order.
    pub fn indexes(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.keys().copied()
    }

    /// The key at `index`.
    pub fn get(&self, index: u32) -> Option<&Key> {
        self.0.get(&index)
    }

    /// Secret data: file name → key file content.
    pub fn to_data(&self) -> BTreeMap<String, Vec<u8>> {
        self.0
            .iter()
            .map(|(i, k)| (i.to_string(), k.expose().as_bytes().to_vec()))
            .collect()
    }

    /// A fingerprint of the whole set (SHA-256 over indexes and keys, first 16 hex digits): tells that the set
    /// changed without revealing anything about the keys.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for (i, k) in &self.0 {
            h.update(i.to_be_bytes());
            h.update(k.expose().as_bytes());
        }
        let digest = h.finalize();
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn initial_set_is_staged_and_primary() {
        let set = KeySet::initial(&mut rng()).unwrap();
        assert_eq!(set.indexes().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(set.primary_index(), 1);
        for i in set.indexes() {
            let raw = set.get(i).unwrap().expose();
            assert_eq!(raw.len(), 44);
            assert_eq!(URL_SAFE.decode(raw).unwrap().len(), 32);
        }
    }

    #[test]
    fn rotation_promotes_the_staged_key_and_prunes_the_lowest() {
        let mut r = rng();
        let mut set = KeySet::initial(&mut r).unwrap();
        for _ in 0..4 {
            let staged = set.get(0).unwrap().clone();
            let next = set.rotate(4, &mut r).unwrap();
            assert_eq!(next.get(next.primary_index()), Some(&staged));
            assert_eq!(next.primary_index(), set.primary_index() + 1);
            set = next;
        }
        assert_eq!(set.indexes().collect::<Vec<_>>(), vec![0, 3, 4, 5]);
    }

    #[test]
    fn raising_the_maximum_adds_no_keys_and_lowering_prunes_at_the_next_rotation() {
        let mut r = rng();
        let set = KeySet::initial(&mut r)
            .unwrap()
            .rotate(5, &mut r)
            .unwrap()
            .rotate(5, &mut r)
            .unwrap();
        assert_eq!(set.len(), 4);
        let raised = set.rotate(10, &mut r).unwrap();
        assert_eq!(raised.len(), 5, "one rotation adds exactly one key");
        let lowered = raised.rotate(3, &mut r).unwrap();
        assert_eq!(lowered.indexes().collect::<Vec<_>>(), vec![0, 4, 5]);
    }

    struct FailingRng;
    impl TryRngCore for FailingRng {
        type Error = std::io::Error;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Err(std::io::Error::other("entropy source unavailable"))
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Err(std::io::Error::other("entropy source unavailable"))
        }
        fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), Self::Error> {
            Err(std::io::Error::other("entropy source unavailable"))
        }
    }

    #[test]
    fn rng_failure_writes_no_key() {
        assert!(matches!(KeySet::initial(&mut FailingRng), Err(KeyError::Rng(_))));
        let set = KeySet::initial(&mut rng()).unwrap();
        assert!(matches!(set.rotate(5, &mut FailingRng), Err(KeyError::Rng(_))));
    }

    #[test]
    fn malformed_and_incomplete_sets_are_rejected_with_every_problem() {
        let good = KeySet::initial(&mut rng()).unwrap().to_data();
        let mut data: BTreeMap<String, Vec<u8>> = good.clone();
        data.insert("2".into(), b"not-a-key".to_vec());
        data.insert("x".into(), b"whatever".to_vec());
        data.remove("0");
        let errs = KeySet::from_data(data.iter().map(|(k, v)| (k, v.as_slice()))).unwrap_err();
        assert!(
            errs.contains(&KeyError::Malformed { index: "2".into() }),
            "{errs:?}"
        );
        assert!(errs.contains(&KeyError::BadName { name: "x".into() }), "{errs:?}");
        assert!(errs.contains(&KeyError::NoStaged), "{errs:?}");
        // Messages never carry key material.
        let text = format!(
            "{errs:?} {}",
            errs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
        );
        for v in good.values() {
            assert!(!text.contains(std::str::from_utf8(v).unwrap()));
        }
        // A trailing newline (as `echo` writes) is accepted; 16-byte and unpadded keys are not.
        let k = std::str::from_utf8(&good["1"]).unwrap();
        assert!(Key::parse("1", format!("{k}\n").as_bytes()).is_ok());
        assert!(Key::parse("1", k.trim_end_matches('=').as_bytes()).is_err());
        assert!(Key::parse("1", URL_SAFE.encode([7u8; 16]).as_bytes()).is_err());
    }

    /// A key index at `u32::MAX` (a Secret edited by hand, or ~4 billion rotations) is corruption: reported
    /// like any other, never rotated into index 0 (which in a release build would have overwritten the staged
    /// key and left the primary stuck).
    #[test]
    fn a_key_index_at_the_limit_is_corruption_never_wrapped() {
        let mut r = rng();
        let good = KeySet::initial(&mut r).unwrap().to_data();
        let mut data = good.clone();
        let primary = data.remove("1").unwrap();
        data.insert(u32::MAX.to_string(), primary);
        let errs = KeySet::from_data(data.iter().map(|(k, v)| (k, v.as_slice()))).unwrap_err();
        assert!(
            errs.contains(&KeyError::IndexAtLimit { index: u32::MAX }),
            "{errs:?}"
        );
        // One below the limit is valid, and its rotation reaches the limit, which is then refused.
        let mut data = good;
        let primary = data.remove("1").unwrap();
        data.insert((u32::MAX - 1).to_string(), primary);
        let set = KeySet::from_data(data.iter().map(|(k, v)| (k, v.as_slice()))).unwrap();
        assert!(matches!(
            set.rotate(5, &mut r),
            Err(KeyError::IndexAtLimit { .. })
        ));
    }

    #[test]
    fn debug_output_never_shows_keys() {
        let set = KeySet::initial(&mut rng()).unwrap();
        let dbg = format!("{set:?}");
        assert!(!dbg.contains(set.get(1).unwrap().expose()));
    }

    /// The credential_migrate Job checks the keys it mounted with a Python script: it must compute exactly
    /// this fingerprint (and refuse any other set).
    #[test]
    fn the_migration_jobs_key_check_computes_this_fingerprint() {
        let mut r = rng();
        let set = KeySet::initial(&mut r).unwrap().rotate(3, &mut r).unwrap();
        let dir = std::env::temp_dir().join(format!("keystone-keys-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("..2026_11_25")).unwrap();
        for (name, content) in set.to_data() {
            // as a Secret volume shows them: a trailing newline is tolerated
            let mut content = content;
            if name == "0" {
                content.push(b'\n');
            }
            std::fs::write(dir.join(name), content).unwrap();
        }
        let run = |hash: &str| {
            std::process::Command::new("python3")
                .args(["-c", keystone_types::credential_rotation::KEYS_CHECK_SCRIPT])
                .env("CREDENTIAL_KEYS_DIR", &dir)
                .env("CREDENTIAL_KEYS_HASH", hash)
                .output()
                .expect("python3")
        };
        let ok = run(&set.fingerprint());
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
        let other = run("0123456789abcdef");
        assert_eq!(other.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&other.stderr).contains("not the set this Job was started for"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
