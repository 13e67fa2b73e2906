//! Labelled image datasets in memory and their batches. `load` reads a data SPEC
//! (design.md): `npz:FILE` with arrays `x` (N×C×H×W float32) and `y` (N integer labels).

use std::path::Path;

use ndarray::ArrayD;
use ndarray_npy::{NpzReader, ReadableElement};

use super::npy::from_array;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub struct Dataset {
    /// `[N, C, H, W]`.
    pub x: Tensor,
    pub y: Vec<i64>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The samples at `indices`, as one batch.
    pub fn batch(&self, indices: &[usize]) -> (Tensor, Vec<i64>) {
        let per: usize = self.x.shape()[1..].iter().product();
        let mut data = Vec::with_capacity(per * indices.len());
        for &i in indices {
            data.extend_from_slice(&self.x.data()[i * per..(i + 1) * per]);
        }
        let mut shape = self.x.shape().to_vec();
        shape[0] = indices.len();
        (Tensor::from_vec(shape, data), indices.iter().map(|&i| self.y[i]).collect())
    }
}

/// Reads a data SPEC.
pub fn load(spec: &str) -> Result<Dataset> {
    match spec.split_once(':') {
        Some(("npz", file)) => load_npz(Path::new(file)),
        _ => Err(Error::Usage(format!("--data '{spec}': expected npz:FILE"))),
    }
}

fn array<T: ReadableElement>(npz: &mut NpzReader<std::fs::File>, name: &str) -> Option<ArrayD<T>> {
    npz.by_name(name).ok()
}

fn load_npz(path: &Path) -> Result<Dataset> {
    let what = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut npz = NpzReader::new(file).map_err(|e| Error::data(&what, format!("not an .npz archive: {e}")))?;
    let x = match array::<f32>(&mut npz, "x") {
        Some(a) => a,
        None => array::<f64>(&mut npz, "x")
            .map(|a| a.mapv(|v| v as f32))
            .ok_or_else(|| Error::data(&what, "needs a float array 'x' (N×C×H×W)"))?,
    };
    let y: Vec<i64> = if let Some(a) = array::<i64>(&mut npz, "y") {
        a.iter().copied().collect()
    } else if let Some(a) = array::<i32>(&mut npz, "y") {
        a.iter().map(|&v| v.into()).collect()
    } else if let Some(a) = array::<u8>(&mut npz, "y") {
        a.iter().map(|&v| v.into()).collect()
    } else {
        return Err(Error::data(&what, "needs an integer array 'y' of labels"));
    };
    if x.ndim() != 4 {
        return Err(Error::data(&what, format!("'x' has shape {:?}; expected N×C×H×W", x.shape())));
    }
    if x.shape()[0] != y.len() {
        return Err(Error::data(&what, format!("{} images but {} labels", x.shape()[0], y.len())));
    }
    if y.is_empty() {
        return Err(Error::data(&what, "the dataset is empty"));
    }
    Ok(Dataset { x: from_array(x), y })
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
