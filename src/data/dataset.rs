//! Labelled image datasets in memory and their batches. `load` reads a data SPEC (design.md):
//! `npz:FILE` (arrays `x`: N×C×H×W float32, `y`: N integer labels, used as they are) or
//! `idx:DIR` (MNIST/Fashion-MNIST idx files, gzipped or not; the `train` split, or `t10k` for a
//! validation set), `cifar:DIR` (CIFAR-10 binary; `test_batch.bin` for validation) or
//! `folder:DIR` (a sub-folder of images per class; the rules in `folder`). Images are turned into
//! model inputs per batch: resized to the model's size, gray replicated to its channels,
//! preprocessed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::{DynamicImage, GrayImage, RgbImage};

pub use super::image::Prep;
use super::image::{fit, preprocess, Layout};
use super::npy::{from_array, Npz};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The samples of a dataset.
pub enum Images {
    /// Ready model inputs, `[N, C, H, W]`.
    Float(Tensor),
    /// 8-bit images, `n` of `h`×`w`×`c` (channel-last), converted per batch.
    Bytes { data: Vec<u8>, n: usize, h: usize, w: usize, c: usize },
    /// Image files, decoded per batch.
    Files(Vec<PathBuf>),
}

pub struct Dataset {
    pub images: Images,
    pub y: Vec<i64>,
    /// The class names of a `folder:` dataset, label k being `classes[k]`: the sorted class
    /// folder names of a training folder, or the training classes a validation folder was
    /// matched to (`load_with_classes`). `None` for npz, idx and cifar data (numbered labels).
    pub classes: Option<Vec<String>>,
    /// Files that passed the header check but do not decode, each named once when found.
    undecodable: Mutex<BTreeSet<usize>>,
    /// What loading and decoding had to say (files skipped, images replaced), not yet taken.
    notes: Mutex<Vec<String>>,
}

impl Dataset {
    pub fn new(images: Images, y: Vec<i64>, classes: Option<Vec<String>>) -> Dataset {
        Dataset { images, y, classes, undecodable: Mutex::new(BTreeSet::new()), notes: Mutex::new(Vec::new()) }
    }

    /// The notes and warnings loading and decoding gave since the last call (the library prints
    /// nothing: a program shows them as it likes; `edgetune finetune` on stderr).
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn note(&self, line: String) {
        self.notes.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The samples at `indices`, as one `[B, C, H, W]` batch (`prep` applies to byte images and
    /// files). An image file that fails to decode (a PNG cut off in its pixel data passes the
    /// header check made at load time) is replaced by the next file of the dataset that decodes, with that file's
    /// label, and named once in `take_notes`: one bad file does not stop a run, and the batch keeps
    /// its size and stays the same on every run (resume included).
    pub fn batch(&self, indices: &[usize], prep: &Prep) -> Result<(Tensor, Vec<i64>)> {
        self.batch_augmented(indices, prep, None)
    }

    /// `batch`, augmented (in NCHW, before any transpose to the model's layout).
    pub fn batch_augmented(
        &self,
        indices: &[usize],
        prep: &Prep,
        aug: Option<(&super::augment::Augment, &mut Rng)>,
    ) -> Result<(Tensor, Vec<i64>)> {
        let (mut x, labels) = self.batch_nchw(indices, prep)?;
        if let Some((a, rng)) = aug {
            a.apply(&mut x, rng);
        }
        if prep.layout == Layout::Nhwc && x.rank() == 4 {
            let s = x.shape().to_vec();
            let t = crate::kernels::layout::transpose(x.data(), &s, &[0, 2, 3, 1]);
            return Ok((Tensor::from_vec([s[0], s[2], s[3], s[1]], t), labels));
        }
        Ok((x, labels))
    }

    fn batch_nchw(&self, indices: &[usize], prep: &Prep) -> Result<(Tensor, Vec<i64>)> {
        let labels = || indices.iter().map(|&i| self.y[i]).collect();
        match &self.images {
            Images::Float(x) => {
                let per: usize = x.shape()[1..].iter().product();
                let mut data = Vec::with_capacity(per * indices.len());
                for &i in indices {
                    data.extend_from_slice(&x.data()[i * per..(i + 1) * per]);
                }
                let mut shape = x.shape().to_vec();
                shape[0] = indices.len();
                Ok((Tensor::from_vec(shape, data), labels()))
            }
            Images::Files(paths) => {
                let [h, w] = prep.size;
                let mut data = Vec::with_capacity(indices.len() * prep.channels * h * w);
                let mut labels = Vec::with_capacity(indices.len());
                for &i in indices {
                    let (j, img) = self.decode_or_next(paths, i)?;
                    data.extend(super::image::planes(&img, prep, &paths[j])?);
                    labels.push(self.y[j]);
                }
                Ok((Tensor::from_vec([indices.len(), prep.channels, h, w], data), labels))
            }
            Images::Bytes { data, h, w, c, .. } => {
                let [oh, ow] = prep.size;
                let mut out = Vec::with_capacity(indices.len() * prep.channels * oh * ow);
                for &i in indices {
                    let px = &data[i * h * w * c..(i + 1) * h * w * c];
                    out.extend(to_input(px, [*h, *w], *c, prep));
                }
                Ok((Tensor::from_vec([indices.len(), prep.channels, oh, ow], out), labels()))
            }
        }
    }

    /// File `i` decoded, or the first file after it (wrapping) that decodes; its index too.
    fn decode_or_next(&self, paths: &[PathBuf], i: usize) -> Result<(usize, DynamicImage)> {
        let known_bad = |j: &usize| self.undecodable.lock().unwrap_or_else(|e| e.into_inner()).contains(j);
        for j in (i..paths.len()).chain(0..i).filter(|j| !known_bad(j)) {
            match super::image::decode(&paths[j]) {
                Ok(img) => return Ok((j, img)),
                Err(e) => {
                    if self.undecodable.lock().unwrap_or_else(|e| e.into_inner()).insert(j) {
                        self.note(format!("warning: {e}; the next image that decodes takes its place in every batch"));
                    }
                }
            }
        }
        Err(Error::data(paths[i].display().to_string(), "cannot read image, nor any other image of the dataset"))
    }
}

/// One 8-bit image (channel-last) as channel-major model input.
fn to_input(px: &[u8], [h, w]: [usize; 2], c: usize, prep: &Prep) -> Vec<f32> {
    let [oh, ow] = prep.size;
    let plane = oh * ow;
    let mut chw = vec![0.0f32; prep.channels * plane];
    if c == 1 {
        let img = GrayImage::from_raw(w as u32, h as u32, px.to_vec()).expect("sizes checked at load");
        let img = fit(&DynamicImage::ImageLuma8(img), prep.size, prep.resize).into_luma8();
        for ch in 0..prep.channels {
            for (d, p) in chw[ch * plane..(ch + 1) * plane].iter_mut().zip(img.pixels()) {
                *d = p.0[0] as f32;
            }
        }
    } else {
        let img = RgbImage::from_raw(w as u32, h as u32, px.to_vec()).expect("sizes checked at load");
        let img = fit(&DynamicImage::ImageRgb8(img), prep.size, prep.resize).into_rgb8();
        for (i, p) in img.pixels().enumerate() {
            for ch in 0..prep.channels {
                chw[ch * plane + i] = if prep.channels == 1 {
                    (0.299 * p.0[0] as f32 + 0.587 * p.0[1] as f32 + 0.114 * p.0[2] as f32).round()
                } else {
                    p.0[ch.min(2)] as f32
                };
            }
        }
    }
    preprocess(&mut chw, prep.channels, plane, prep.preprocess);
    chw
}

/// Reads a data SPEC; `test` picks the held-out split where the format has one (idx: t10k).
pub fn load(spec: &str, test: bool) -> Result<Dataset> {
    load_with_classes(spec, test, None)
}

/// `load`, a `folder:` SPEC labelled by `classes` (the training set's names, for validation
/// data): each class folder takes the label of its name, a name not in `classes` is an error.
/// Without `classes` (or for other formats) labels are as `load` gives them. Files skipped at
/// load time are counted in one line on stderr.
pub fn load_with_classes(spec: &str, test: bool, classes: Option<&[String]>) -> Result<Dataset> {
    if let Some((kind, dir)) = spec.split_once(':').filter(|(k, _)| ["idx", "cifar", "folder"].contains(k)) {
        if !Path::new(dir).is_dir() {
            return Err(Error::data(dir, format!("no such folder (data '{kind}:' names a folder)")));
        }
    }
    let ds = match spec.split_once(':') {
        Some(("npz", file)) => load_npz(Path::new(file))?,
        Some(("idx", dir)) => {
            let (images, y) = super::idx::load(Path::new(dir), test)?;
            Dataset::new(images, y, None)
        }
        Some(("cifar", dir)) => {
            let (images, y) = super::cifar::load(Path::new(dir), test)?;
            Dataset::new(images, y, None)
        }
        Some(("folder", dir)) => {
            let f = super::folder::load(Path::new(dir), classes)?;
            let ds = Dataset::new(Images::Files(f.files), f.labels, Some(f.classes));
            if !f.skipped.is_empty() {
                ds.note(format!("{spec}: {}", f.skipped.summary()));
            }
            ds
        }
        _ => return Err(Error::Config(format!("data '{spec}': expected npz:FILE, idx:DIR, cifar:DIR or folder:DIR"))),
    };
    if ds.is_empty() {
        return Err(Error::data(spec, "the dataset is empty"));
    }
    Ok(ds)
}

fn load_npz(path: &Path) -> Result<Dataset> {
    let what = path.display().to_string();
    let mut npz = Npz::open(path)?;
    let x = npz.floats("x").map_err(|_| Error::data(&what, "needs a float array 'x' (N×C×H×W)"))?;
    let y = npz.labels("y").map_err(|_| Error::data(&what, "needs an integer array 'y' of labels"))?;
    if x.ndim() != 4 {
        return Err(Error::data(&what, format!("'x' has shape {:?}; expected N×C×H×W", x.shape())));
    }
    if x.shape()[0] != y.len() {
        return Err(Error::data(&what, format!("{} images but {} labels", x.shape()[0], y.len())));
    }
    Ok(Dataset::new(Images::Float(from_array(x)), y, None))
}

/// A small seeded generator (SplitMix64) for shuffling: deterministic across platforms.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// The sample order of epoch `epoch`: file order, or a permutation seeded by (seed, epoch).
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        Rng(seed ^ (epoch as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)).shuffle(&mut order);
    }
    order
}
