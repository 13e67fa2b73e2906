//! External tensor data: files beside the model, memory-mapped once each. A location must be a
//! relative path that stays inside the model's folder, also after following symlinks.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

pub struct ExternalFiles {
    dir: PathBuf,
    maps: HashMap<String, Arc<Mmap>>,
}

impl ExternalFiles {
    pub fn new(model_path: &Path) -> ExternalFiles {
        let dir = model_path.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        ExternalFiles { dir, maps: HashMap::new() }
    }

    /// The mapped file named by `location`, after checking it stays inside the model's folder.
    pub fn map(&mut self, location: &str) -> Result<Arc<Mmap>, String> {
        if let Some(m) = self.maps.get(location) {
            return Ok(m.clone());
        }
        let path = self.resolve(location)?;
        let file = File::open(&path).map_err(|e| format!("external data '{location}': {e}"))?;
        // SAFETY: the map is read-only; a file truncated under us while mapped is outside what a
        // process can defend against (as with any mmap-based loader).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| format!("external data '{location}': {e}"))?;
        let map = Arc::new(map);
        self.maps.insert(location.to_string(), map.clone());
        Ok(map)
    }

    fn resolve(&self, location: &str) -> Result<PathBuf, String> {
        let rel = Path::new(location);
        let escapes =
            rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
        if location.is_empty() || escapes {
            return Err(format!(
                "external data location '{location}' is not a plain relative path inside the model's folder; refused"
            ));
        }
        let joined = self.dir.join(rel);
        let real = joined.canonicalize().map_err(|e| format!("external data '{location}': {e}"))?;
        let root = self.dir.canonicalize().map_err(|e| format!("model folder: {e}"))?;
        if !real.starts_with(&root) {
            return Err(format!(
                "external data location '{location}' leads outside the model's folder (to {}); refused",
                real.display()
            ));
        }
        Ok(real)
    }
}
