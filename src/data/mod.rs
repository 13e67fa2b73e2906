//! Getting user data in and out: `.npy`/`.npz` arrays and images with their preprocessing.

pub mod dataset;
pub mod idx;
pub mod image;
pub mod npy;
