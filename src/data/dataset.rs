//! Labelled image datasets in memory and their batches. `load` reads a data SPEC (design.md):
//! `npz:FILE` (arrays `x`: N×C×H×W float32, `y`: N integer labels, used as they are) or
//! `idx:DIR` (MNIST/Fashion-MNIST idx files, gzipped or not; the `train` split, or `t10k` for a
//! validation set), `cifar:DIR` (CIFAR-10 binary; `test_batch.bin` for validation) or
//! `folder:DIR` (a sub-folder of PNG/JPEG images per class). Images are turned into model inputs
//! per batch: resized to the model's size, gray replicated to its channels, preprocessed.

use std::path::Path;

use image::imageops::FilterType;
use image::{GrayImage, RgbImage};

use super::image::{preprocess, Layout, Preprocess};
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
    Files(Vec<std::path::PathBuf>),
}

/// How byte images become model inputs.
#[derive(Clone, Copy, Debug)]
pub struct Prep {
    pub channels: usize,
    pub size: [usize; 2],
    pub preprocess: Preprocess,
    /// The model's input layout: batches are built NCHW and transposed for an NHWC model.
    pub layout: Layout,
}

pub struct Dataset {
    pub images: Images,
    pub y: Vec<i64>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The samples at `indices`, as one `[B, C, H, W]` batch (`prep` applies to byte images and
    /// files; an image file that fails to decode is an error naming it).
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
        let labels = indices.iter().map(|&i| self.y[i]).collect();
        match &self.images {
            Images::Float(x) => {
                let per: usize = x.shape()[1..].iter().product();
                let mut data = Vec::with_capacity(per * indices.len());
                for &i in indices {
                    data.extend_from_slice(&x.data()[i * per..(i + 1) * per]);
                }
                let mut shape = x.shape().to_vec();
                shape[0] = indices.len();
                Ok((Tensor::from_vec(shape, data), labels))
            }
            Images::Files(paths) => {
                let chosen: Vec<&std::path::Path> = indices.iter().map(|&i| paths[i].as_path()).collect();
                let x = super::image::load_batch(
                    &chosen,
                    prep.size,
                    prep.channels,
                    prep.preprocess,
                    super::image::Layout::Nchw,
                )?;
                Ok((x, labels))
            }
            Images::Bytes { data, h, w, c, .. } => {
                let [oh, ow] = prep.size;
                let mut out = Vec::with_capacity(indices.len() * prep.channels * oh * ow);
                for &i in indices {
                    let px = &data[i * h * w * c..(i + 1) * h * w * c];
                    out.extend(to_input(px, [*h, *w], *c, prep));
                }
                Ok((Tensor::from_vec([indices.len(), prep.channels, oh, ow], out), labels))
            }
        }
    }
}

/// One 8-bit image (channel-last) as channel-major model input.
fn to_input(px: &[u8], [h, w]: [usize; 2], c: usize, prep: &Prep) -> Vec<f32> {
    let [oh, ow] = prep.size;
    let plane = oh * ow;
    let mut chw = vec![0.0f32; prep.channels * plane];
    let resize = [h, w] != prep.size;
    if c == 1 {
        let img = GrayImage::from_raw(w as u32, h as u32, px.to_vec()).expect("sizes checked at load");
        let img = if resize { image::imageops::resize(&img, ow as u32, oh as u32, FilterType::Triangle) } else { img };
        for ch in 0..prep.channels {
            for (d, p) in chw[ch * plane..(ch + 1) * plane].iter_mut().zip(img.pixels()) {
                *d = p.0[0] as f32;
            }
        }
    } else {
        let img = RgbImage::from_raw(w as u32, h as u32, px.to_vec()).expect("sizes checked at load");
        let img = if resize { image::imageops::resize(&img, ow as u32, oh as u32, FilterType::Triangle) } else { img };
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
    if let Some((kind, dir)) = spec.split_once(':').filter(|(k, _)| ["idx", "cifar", "folder"].contains(k)) {
        if !Path::new(dir).is_dir() {
            return Err(Error::data(dir, format!("no such folder (data '{kind}:' names a folder)")));
        }
    }
    let ds = match spec.split_once(':') {
        Some(("npz", file)) => load_npz(Path::new(file))?,
        Some(("idx", dir)) => {
            let (images, y) = super::idx::load(Path::new(dir), test)?;
            Dataset { images, y }
        }
        Some(("cifar", dir)) => {
            let (images, y) = super::cifar::load(Path::new(dir), test)?;
            Dataset { images, y }
        }
        Some(("folder", dir)) => {
            let (files, y, _) = super::folder::load(Path::new(dir))?;
            Dataset { images: Images::Files(files), y }
        }
        _ => return Err(Error::Usage(format!("data '{spec}': expected npz:FILE, idx:DIR, cifar:DIR or folder:DIR"))),
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
    Ok(Dataset { images: Images::Float(from_array(x)), y })
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
