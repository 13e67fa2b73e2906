//! An image folder: one sub-folder per class (sorted names are the class indices), PNG or JPEG
//! files inside. Every file's header is read at load time, so an unreadable image is reported by
//! name before training starts; pixels are decoded per batch.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The image files and their labels, and the class names.
pub fn load(dir: &Path) -> Result<(Vec<PathBuf>, Vec<i64>, Vec<String>)> {
    let what = dir.display().to_string();
    let read = |d: &Path| -> Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> =
            std::fs::read_dir(d).map_err(|e| Error::io(d, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        v.sort();
        Ok(v)
    };
    let classes: Vec<PathBuf> = read(dir)?.into_iter().filter(|p| p.is_dir()).collect();
    if classes.is_empty() {
        return Err(Error::data(&what, "no class sub-folders here"));
    }
    let (mut files, mut labels) = (Vec::new(), Vec::new());
    for (k, class) in classes.iter().enumerate() {
        for f in read(class)?.into_iter().filter(|p| p.is_file()) {
            image::image_dimensions(&f)
                .map_err(|e| Error::data(f.display().to_string(), format!("cannot read image: {e}")))?;
            files.push(f);
            labels.push(k as i64);
        }
    }
    if files.is_empty() {
        return Err(Error::data(&what, "the class folders hold no images"));
    }
    let names =
        classes.iter().map(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()).collect();
    Ok((files, labels, names))
}
