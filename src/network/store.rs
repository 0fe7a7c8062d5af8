//! Persistence of the allocator: one JSON file in the data directory, replaced atomically.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::alloc::Allocator;
use crate::weave_cidr::Cidr;

const FILE_NAME: &str = "ipam.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: corrupt allocation data: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The on-disk form. Addresses are strings so the file stays readable and stable across
/// internal type changes.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    range: String,
    default_subnet: String,
    allocations: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Creates the data directory if needed.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Loads the saved allocations into `alloc` (which carries the configured range). Saved
    /// addresses are re-recorded as claims, so a changed range keeps old holders safe; entries that
    /// clash (only possible in a hand-edited file) are skipped with a warning. Returns how many
    /// addresses were restored.
    pub fn load_into(&self, alloc: &mut Allocator) -> Result<usize, StoreError> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        let snap: Snapshot = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if snap.version != FORMAT_VERSION {
            return Err(corrupt(format!("unknown format version {}", snap.version)));
        }
        if snap.range != alloc.range().to_string() {
            tracing::warn!(
                saved = %snap.range,
                configured = %alloc.range(),
                "allocation range changed since the last run; keeping the saved addresses"
            );
        }
        let mut restored = 0;
        for (id, cidrs) in &snap.allocations {
            for text in cidrs {
                let cidr: Cidr = text
                    .parse()
                    .map_err(|e: crate::weave_cidr::CidrParseError| {
                        corrupt(format!("container {id}: {e}"))
                    })?;
                match alloc.claim(id, cidr) {
                    Ok(()) => restored += 1,
                    Err(e) => tracing::warn!(container = %id, "dropping saved address: {e}"),
                }
            }
        }
        Ok(restored)
    }

    /// Writes `alloc` so that a crash at any point leaves either the old or the new file.
    pub fn save(&self, alloc: &Allocator) -> Result<(), StoreError> {
        let snap = Snapshot {
            version: FORMAT_VERSION,
            range: alloc.range().to_string(),
            default_subnet: alloc.default_subnet().to_string(),
            allocations: alloc
                .allocations()
                .map(|(id, cidrs)| (id.to_string(), cidrs.iter().map(Cidr::to_string).collect()))
                .collect(),
        };
        // Serializing a struct of strings and maps cannot fail.
        let mut bytes = serde_json::to_vec_pretty(&snap).unwrap_or_default();
        bytes.push(b'\n');

        let path = self.path();
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        // The rename itself is only durable once the directory entry is flushed.
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::alloc::DEFAULT_RANGE;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("sub")).unwrap();
        let mut a = Allocator::new(DEFAULT_RANGE, DEFAULT_RANGE).unwrap();
        a.allocate("one", DEFAULT_RANGE).unwrap();
        a.claim("two", c("10.2.1.1/24")).unwrap();
        a.allocate("two", c("10.33.0.0/16")).unwrap();
        store.save(&a).unwrap();
        assert!(!dir.path().join("sub/ipam.json.tmp").exists());

        let mut b = Allocator::new(DEFAULT_RANGE, DEFAULT_RANGE).unwrap();
        assert_eq!(store.load_into(&mut b).unwrap(), 3);
        assert_eq!(a, b);
        // Restored holders are respected.
        assert_eq!(b.allocate("three", DEFAULT_RANGE), Ok(c("10.32.0.2/12")));
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut a = Allocator::new(DEFAULT_RANGE, DEFAULT_RANGE).unwrap();
        assert_eq!(store.load_into(&mut a).unwrap(), 0);
    }

    #[test]
    fn corrupt_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::write(store.path(), "{not json").unwrap();
        let mut a = Allocator::new(DEFAULT_RANGE, DEFAULT_RANGE).unwrap();
        let err = store.load_into(&mut a).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        fs::write(
            store.path(),
            r#"{"version":1,"range":"10.32.0.0/12","default_subnet":"10.32.0.0/12","allocations":{"x":["bogus"]}}"#,
        )
        .unwrap();
        let err = store.load_into(&mut a).unwrap_err().to_string();
        assert!(err.contains("container x"), "{err}");
    }
}
