//! `Tensor`: a dense, row-major f32 array. Storage is shared (cheap clones for parameters that
//! flow through `Identity`) and may be a read-only memory map of external weight data; writing
//! through `data_mut` copies on demand.

use std::fmt;
use std::sync::Arc;

use memmap2::Mmap;

/// Where a tensor's elements live.
pub enum Storage {
    Heap(Vec<f32>),
    /// `len` f32 values at byte `offset` of a mapped file; `offset` is 4-byte aligned.
    Mapped {
        map: Arc<Mmap>,
        offset: usize,
        len: usize,
    },
}

impl Storage {
    fn as_slice(&self) -> &[f32] {
        match self {
            Storage::Heap(v) => v,
            Storage::Mapped { map, offset, len } => {
                let bytes = &map[*offset..*offset + *len * 4];
                // SAFETY: the constructor checked bounds and 4-byte alignment of the mapped
                // range (the map itself is page aligned); f32 has no invalid bit patterns.
                unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), *len) }
            }
        }
    }
}

#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Arc<Storage>,
}

impl Tensor {
    /// A tensor over `data`; panics if the length does not match the shape (a bug, not input).
    pub fn from_vec(shape: impl Into<Vec<usize>>, data: Vec<f32>) -> Tensor {
        let shape = shape.into();
        assert_eq!(numel(&shape), data.len(), "tensor data does not match shape {shape:?}");
        Tensor { shape, data: Arc::new(Storage::Heap(data)) }
    }

    pub fn zeros(shape: impl Into<Vec<usize>>) -> Tensor {
        let shape = shape.into();
        let n = numel(&shape);
        Tensor::from_vec(shape, vec![0.0; n])
    }

    pub fn scalar(v: f32) -> Tensor {
        Tensor::from_vec(Vec::new(), vec![v])
    }

    /// A tensor viewing `len` floats of a mapped file at byte `offset`. Returns `None` when the
    /// range is out of bounds or misaligned (the caller then copies the bytes).
    pub fn from_mapped(shape: Vec<usize>, map: Arc<Mmap>, offset: usize, len: usize) -> Option<Tensor> {
        let end = len.checked_mul(4)?.checked_add(offset)?;
        let aligned = (map.as_ptr() as usize + offset).is_multiple_of(std::mem::align_of::<f32>());
        if end > map.len() || !aligned || numel(&shape) != len {
            return None;
        }
        Some(Tensor { shape, data: Arc::new(Storage::Mapped { map, offset, len }) })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn len(&self) -> usize {
        numel(&self.shape)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn data(&self) -> &[f32] {
        self.data.as_slice()
    }

    /// Mutable elements; copies first if the storage is shared or mapped.
    pub fn data_mut(&mut self) -> &mut [f32] {
        if !matches!(Arc::get_mut(&mut self.data), Some(Storage::Heap(_))) {
            self.data = Arc::new(Storage::Heap(self.data().to_vec()));
        }
        match Arc::get_mut(&mut self.data) {
            Some(Storage::Heap(v)) => v,
            _ => unreachable!("storage was just made unique"),
        }
    }

    /// The elements as an owned vector (no copy when this tensor owns a heap buffer alone).
    pub fn into_vec(self) -> Vec<f32> {
        match Arc::try_unwrap(self.data) {
            Ok(Storage::Heap(v)) => v,
            Ok(other) => other.as_slice().to_vec(),
            Err(shared) => shared.as_slice().to_vec(),
        }
    }

    /// Same elements, new shape of equal element count (shares storage).
    pub fn into_reshaped(self, shape: impl Into<Vec<usize>>) -> Tensor {
        let shape = shape.into();
        assert_eq!(numel(&shape), self.len(), "reshape must keep the element count");
        Tensor { shape, data: self.data }
    }

    /// True when the elements are read in place from a mapped file (not copied).
    pub fn is_mapped(&self) -> bool {
        matches!(*self.data, Storage::Mapped { .. })
    }

    /// True when both tensors share one storage (an `Identity` or reshape of the other).
    pub fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}

/// `n` deterministic pseudo-random values in [-1, 1) from a fixed LCG (benchmark inputs; no RNG
/// dependency, and tools/bench_infer.py reproduces the sequence for seed 12345 exactly).
pub fn lcg_values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// Number of elements of a shape (1 for a scalar).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Element count with overflow checking, for shapes read from files.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Row-major strides (in elements) of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Resolves a possibly negative ONNX axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

/// Numpy-style broadcast of two shapes, or `None` when they do not broadcast.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|i| {
            let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
            let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
            match (da, db) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shapes(&[2, 3, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast_shapes(&[1, 64, 1, 1], &[8, 64, 7, 7]), Some(vec![8, 64, 7, 7]));
        assert_eq!(broadcast_shapes(&[], &[5]), Some(vec![5]));
        assert_eq!(broadcast_shapes(&[2, 3], &[4, 3]), None);
    }

    #[test]
    fn data_mut_copies_shared_storage() {
        let a = Tensor::from_vec([2], vec![1.0, 2.0]);
        let mut b = a.clone();
        b.data_mut()[0] = 5.0;
        assert_eq!(a.data(), &[1.0, 2.0]);
        assert_eq!(b.data(), &[5.0, 2.0]);
    }

    #[test]
    fn strides_and_axes() {
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(norm_axis(-1, 4), Some(3));
        assert_eq!(norm_axis(4, 4), None);
        assert_eq!(checked_numel(&[usize::MAX, 2]), None);
    }
}
