//! Getting user data in and out: `.npy`/`.npz` arrays and images with their preprocessing.

pub mod augment;
pub mod cifar;
pub mod dataset;
pub mod folder;
pub mod idx;
pub mod image;
pub mod npy;
pub mod recipe;

use std::io::Write;

/// A line for the user on stderr while data loads (a closed stderr is not an error).
pub(crate) fn note(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `note`, as a warning.
pub(crate) fn warn(line: &str) {
    note(&format!("warning: {line}"));
}
