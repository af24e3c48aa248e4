//! Secret, ConfigMap and emptyDir volumes, written the way the kubelet's AtomicWriter does: the files live in
//! a timestamped `..<ts>` directory, `..data` is a symlink to it, and every top-level name is a symlink into
//! `..data/`. An update writes a new directory and swaps `..data` with one rename, so a reader sees either
//! the old set or the new one, never a mix (Keystone relies on this for its key repositories).

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Secret};
use sha2::{Digest, Sha256};

/// One file of a volume: relative path, content, mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// Path relative to the volume root (may contain `/`).
    pub path: String,
    /// Content.
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// The files of a volume source.
pub type Files = Vec<File>;

fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
    what: &str,
) -> Result<Files, String> {
    match items {
        None => Ok(data
            .iter()
            .map(|(k, v)| File {
                path: k.clone(),
                data: v.clone(),
                mode: default_mode,
            })
            .collect()),
        Some(items) => {
            let mut files = Vec::new();
            for item in items {
                match data.get(&item.key) {
                    Some(v) => files.push(File {
                        path: item.path.clone(),
                        data: v.clone(),
                        mode: item.mode.map_or(default_mode, |m| m as u32),
                    }),
                    None if optional => {}
                    None => return Err(format!("{what} has no key {:?}", item.key)),
                }
            }
            Ok(files)
        }
    }
}

/// The files a Secret volume shows (`None`: the Secret does not exist).
pub fn secret_files(
    secret: Option<&Secret>,
    source: &k8s_openapi::api::core::v1::SecretVolumeSource,
) -> Result<Files, String> {
    let name = source.secret_name.clone().unwrap_or_default();
    let optional = source.optional.unwrap_or(false);
    let mode = source.default_mode.map_or(0o644, |m| m as u32);
    let Some(secret) = secret else {
        return if optional {
            Ok(Vec::new())
        } else {
            Err(format!("secret {name:?} not found"))
        };
    };
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    project(
        &data,
        source.items.as_deref(),
        mode,
        optional,
        &format!("secret {name:?}"),
    )
}

/// The files a ConfigMap volume shows (`None`: the ConfigMap does not exist).
pub fn config_map_files(
    cm: Option<&ConfigMap>,
    source: &k8s_openapi::api::core::v1::ConfigMapVolumeSource,
) -> Result<Files, String> {
    let name = source.name.clone();
    let optional = source.optional.unwrap_or(false);
    let mode = source.default_mode.map_or(0o644, |m| m as u32);
    let Some(cm) = cm else {
        return if optional {
            Ok(Vec::new())
        } else {
            Err(format!("configmap {name:?} not found"))
        };
    };
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    data.extend(
        cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    project(
        &data,
        source.items.as_deref(),
        mode,
        optional,
        &format!("configmap {name:?}"),
    )
}

/// A digest of a file set (to notice changes).
pub fn digest(files: &Files) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update(f.mode.to_le_bytes());
        h.update((f.data.len() as u64).to_le_bytes());
        h.update(&f.data);
    }
    hex::encode(&h.finalize()[..8])
}

/// Writes `files` into `dir` atomically (see the module doc). Files are owned by root and, with `fs_group`,
/// by that group (the kubelet's fsGroup semantics; modes are as given).
pub fn write_atomic(dir: &Path, files: &Files, fs_group: Option<u32>, generation: u64) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    if let Some(gid) = fs_group {
        std::os::unix::fs::chown(dir, Some(0), Some(gid))?;
    }
    let stamp = format!(
        "..{}_{generation}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let new_dir = dir.join(&stamp);
    std::fs::create_dir(&new_dir)?;
    std::fs::set_permissions(&new_dir, std::fs::Permissions::from_mode(0o755))?;
    for f in files {
        let path = new_dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &f.data)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))?;
        if let Some(gid) = fs_group {
            std::os::unix::fs::chown(&path, Some(0), Some(gid))?;
        }
    }
    // The swap: ..data_tmp -> new dir, renamed over ..data.
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&stamp, &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;
    // Top-level names point into ..data; names that left the set go.
    let top: std::collections::BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.path.split('/').next().map(str::to_owned))
        .collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(PathBuf::from("..data").join(name), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            if name != "..data" && name != stamp {
                std::fs::remove_dir_all(entry.path())?;
            }
        } else if !top.contains(&name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn file(path: &str, data: &str, mode: u32) -> File {
        File {
            path: path.into(),
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn atomic_layout_and_update() {
        let dir = std::env::temp_dir().join(format!("kln-vol-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_atomic(
            &dir,
            &vec![file("0", "a", 0o440), file("sub/x", "b", 0o400)],
            None,
            1,
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("0")).unwrap(), "a");
        assert_eq!(
            std::fs::read_link(dir.join("0")).unwrap(),
            PathBuf::from("..data/0")
        );
        assert_eq!(std::fs::read_to_string(dir.join("sub/x")).unwrap(), "b");
        let mode = std::fs::metadata(dir.join("0")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o440);
        write_atomic(&dir, &vec![file("1", "c", 0o440)], None, 2).unwrap();
        assert!(
            std::fs::symlink_metadata(dir.join("0")).is_err(),
            "removed key stays"
        );
        assert_eq!(std::fs::read_to_string(dir.join("1")).unwrap(), "c");
        let stamps = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name().to_string_lossy().into_owned();
                n.starts_with("..") && n != "..data"
            })
            .count();
        assert_eq!(stamps, 1, "old generation directories are removed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn items_select_keys_paths_and_modes() {
        let data: BTreeMap<String, Vec<u8>> =
            [("a".to_string(), b"1".to_vec()), ("b".to_string(), b"2".to_vec())].into();
        let items = vec![KeyToPath {
            key: "b".into(),
            path: "dir/b.conf".into(),
            mode: Some(0o400),
            ..Default::default()
        }];
        let files = project(&data, Some(&items), 0o644, false, "x").unwrap();
        assert_eq!(files, vec![file("dir/b.conf", "2", 0o400)]);
        let missing = vec![KeyToPath {
            key: "c".into(),
            path: "c".into(),
            mode: None,
            ..Default::default()
        }];
        assert!(project(&data, Some(&missing), 0o644, false, "x").is_err());
        assert!(
            project(&data, Some(&missing), 0o644, true, "x")
                .unwrap()
                .is_empty()
        );
    }
}
