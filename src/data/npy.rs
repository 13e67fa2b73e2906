//! `.npy` / `.npz` in and out (through `ndarray-npy`), converted to and from our `Tensor`.

use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

fn read_err(path: &Path, e: ReadNpyError) -> Error {
    Error::data(
        path.display().to_string(),
        format!("not a readable float32 .npy array: {e}"),
    )
}

/// Reads a float32 (or float64, converted) `.npy` file.
pub fn read_tensor(path: &Path) -> Result<Tensor> {
    let open = || std::fs::File::open(path).map_err(|e| Error::io(path, e));
    let arr: ArrayD<f32> = match ArrayD::<f32>::read_npy(open()?) {
        Ok(a) => a,
        Err(ReadNpyError::WrongDescriptor(_)) => ArrayD::<f64>::read_npy(open()?)
            .map_err(|e| read_err(path, e))?
            .mapv(|v| v as f32),
        Err(e) => return Err(read_err(path, e)),
    };
    Ok(from_array(arr))
}

pub fn from_array(arr: ArrayD<f32>) -> Tensor {
    let shape = arr.shape().to_vec();
    let data = if arr.is_standard_layout() {
        arr.into_raw_vec_and_offset().0
    } else {
        arr.iter().copied().collect()
    };
    Tensor::from_vec(shape, data)
}

pub fn to_array(t: &Tensor) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(t.shape()), t.data().to_vec())
        .expect("tensor data matches its shape")
}

/// Writes `t` as a float32 `.npy`, atomically.
pub fn write_tensor(path: &Path, t: &Tensor) -> Result<()> {
    let arr = to_array(t);
    write_atomic(path, |w| arr.write_npy(w).map_err(std::io::Error::other))
}
