//! An image folder: one sub-folder per class, image files inside (sub-folders of a class folder
//! included, as torchvision's `ImageFolder`). Training classes are the sorted sub-folder names
//! (label k is the k-th); a validation folder is matched to them by name.
//!
//! What counts: a file is an image when its first bytes are a PNG, JPEG, BMP or WebP signature
//! (or its extension says image) — the extension alone decides nothing. Every image's header is
//! read at load time; files that are not images, and images whose header cannot be read (or in a
//! format not built in, such as GIF), are skipped and counted (`Skipped`). Names starting with
//! `.` (`.DS_Store`, macOS `._photo.jpg` resource forks, `.ipynb_checkpoints/`) are ignored
//! silently, as `ls` does; so are files beside the class folders. A class folder left with no
//! image is an error naming it: it would still take a label.

use std::collections::HashSet;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A loaded folder: files in class order, their labels, the class names.
pub struct Folder {
    pub files: Vec<PathBuf>,
    pub labels: Vec<i64>,
    /// Label k is `classes[k]`.
    pub classes: Vec<String>,
    pub skipped: Skipped,
}

/// Files left out at load time, named relative to the dataset folder.
#[derive(Default)]
pub struct Skipped {
    pub not_images: Vec<String>,
    /// (file, why)
    pub unreadable: Vec<(String, String)>,
}

impl Skipped {
    pub fn is_empty(&self) -> bool {
        self.not_images.is_empty() && self.unreadable.is_empty()
    }

    /// One line: `skipped 2 files that are not images (a/notes.txt, Thumbs.db) and 1 image that
    /// cannot be read (b/x.png: why)`; a few names, the reason of the first unreadable one.
    pub fn summary(&self) -> String {
        const SHOWN: usize = 3;
        let list = |names: Vec<&str>| {
            let more = names.len().saturating_sub(SHOWN);
            let mut s = names.into_iter().take(SHOWN).collect::<Vec<_>>().join(", ");
            if more > 0 {
                s += &format!(", ... {more} more");
            }
            s
        };
        let mut parts = Vec::new();
        if !self.not_images.is_empty() {
            let n = self.not_images.len();
            let what = if n == 1 { "file that is not an image" } else { "files that are not images" };
            parts.push(format!("{n} {what} ({})", list(self.not_images.iter().map(String::as_str).collect())));
        }
        if let Some((first, why)) = self.unreadable.first() {
            let n = self.unreadable.len();
            let what = if n == 1 { "image that cannot be read" } else { "images that cannot be read" };
            let mut names: Vec<&str> = self.unreadable.iter().map(|(f, _)| f.as_str()).collect();
            let head = format!("{first}: {why}");
            names[0] = &head;
            parts.push(format!("{n} {what} ({})", list(names)));
        }
        format!("skipped {}", parts.join(" and "))
    }

    fn extend(&mut self, other: Skipped) {
        self.not_images.extend(other.not_images);
        self.unreadable.extend(other.unreadable);
    }
}

/// Reads the folder `dir`. With `known` (the training classes), every class folder must be one
/// of them and takes its label; without, the sorted class folders are the classes.
pub fn load(dir: &Path, known: Option<&[String]>) -> Result<Folder> {
    let what = dir.display().to_string();
    let classes: Vec<(String, PathBuf)> = visible_entries(dir)?
        .into_iter()
        .filter(|(_, p)| p.is_dir())
        .map(|(name, p)| (name.to_string_lossy().into_owned(), p))
        .collect();
    if classes.is_empty() {
        return Err(Error::data(
            &what,
            "no class sub-folders here (folder:DIR holds one sub-folder of images per class)",
        ));
    }
    let names: Vec<String> = match known {
        Some(k) => k.to_vec(),
        None => classes.iter().map(|(n, _)| n.clone()).collect(),
    };
    let (mut files, mut labels, mut skipped) = (Vec::new(), Vec::new(), Skipped::default());
    for (name, class_dir) in &classes {
        let label = names.iter().position(|n| n == name).ok_or_else(|| {
            Error::data(
                class_dir.display().to_string(),
                format!("class folder '{name}' is not one of the training classes ({})", short_list(&names)),
            )
        })?;
        let (mut found, mut left_out) = (Vec::new(), Skipped::default());
        walk(dir, class_dir, &mut found, &mut left_out, &mut HashSet::new())?;
        found.sort();
        if found.is_empty() {
            let why = if left_out.is_empty() { String::new() } else { format!("; {}", left_out.summary()) };
            return Err(Error::data(
                class_dir.display().to_string(),
                format!("class folder '{name}' holds no images (a class needs at least one: add images or remove the folder){why}"),
            ));
        }
        labels.extend(std::iter::repeat_n(label as i64, found.len()));
        files.extend(found);
        skipped.extend(left_out);
    }
    Ok(Folder { files, labels, classes: names, skipped })
}

/// The entries of `dir` whose names do not start with `.`, sorted by name.
fn visible_entries(dir: &Path) -> Result<Vec<(std::ffi::OsString, PathBuf)>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name(), e.path()))
        .filter(|(n, _)| !n.as_encoded_bytes().starts_with(b"."))
        .collect();
    v.sort();
    Ok(v)
}

/// Collects the images under `dir` (recursively; each real folder once, so a link loop ends).
fn walk(
    root: &Path,
    dir: &Path,
    found: &mut Vec<PathBuf>,
    skipped: &mut Skipped,
    seen: &mut HashSet<PathBuf>,
) -> Result<()> {
    if !seen.insert(std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?) {
        return Ok(());
    }
    for (_, path) in visible_entries(dir)? {
        let rel = path.strip_prefix(root).unwrap_or(&path).display().to_string();
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => walk(root, &path, found, skipped, seen)?,
            Ok(m) if m.is_file() => match probe(&path) {
                Probe::Image => found.push(path),
                Probe::NotImage => skipped.not_images.push(rel),
                Probe::Unreadable(why) => skipped.unreadable.push((rel, why)),
            },
            Ok(_) => skipped.not_images.push(rel),
            Err(e) => skipped.unreadable.push((rel, e.to_string())),
        }
    }
    Ok(())
}

enum Probe {
    Image,
    NotImage,
    Unreadable(String),
}

/// Extensions that make a file an image even when its contents say otherwise (it is then
/// reported as an image that cannot be read, not as a stray file).
const IMAGE_EXTENSIONS: [&str; 11] =
    ["png", "jpg", "jpeg", "bmp", "webp", "gif", "tif", "tiff", "avif", "heic", "heif"];

/// Is `path` an image whose header reads? Decided by its first bytes (and its extension).
fn probe(path: &Path) -> Probe {
    let ext_says_image = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return Probe::Unreadable(e.to_string()),
    };
    let mut head = Vec::with_capacity(32);
    if let Err(e) = (&mut file).take(32).read_to_end(&mut head) {
        return Probe::Unreadable(e.to_string());
    }
    let format = image::guess_format(&head).ok();
    match format {
        Some(f) if f.reading_enabled() => {
            if let Err(e) = file.rewind() {
                return Probe::Unreadable(e.to_string());
            }
            let reader = image::ImageReader::with_format(std::io::BufReader::new(file), f);
            match reader.into_dimensions() {
                Ok((w, h)) if w > 0 && h > 0 => Probe::Image,
                Ok(_) => Probe::Unreadable("the image has no pixels".into()),
                Err(e) => Probe::Unreadable(one_line(&e.to_string())),
            }
        }
        // A format not built in counts as an image only by its extension: short signatures
        // (PNM's "P1", ICO's 0 0 1 0) also start other files.
        Some(f) if ext_says_image => {
            Probe::Unreadable(format!("{f:?} images are not read (PNG, JPEG, BMP and WebP are)"))
        }
        _ if ext_says_image => Probe::Unreadable("its contents are not a PNG, JPEG, BMP or WebP image".into()),
        _ => Probe::NotImage,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Up to 10 names, then how many more.
fn short_list(names: &[String]) -> String {
    let mut s = names.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 10 {
        s += &format!(", ... {} more", names.len() - 10);
    }
    s
}
