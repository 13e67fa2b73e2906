//! Getting user data in and out: `.npy`/`.npz` arrays and images with their preprocessing.

pub mod augment;
pub mod cifar;
pub mod dataset;
pub mod folder;
pub mod idx;
pub mod image;
pub mod npy;
pub mod recipe;
