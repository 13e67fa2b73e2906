//! numpy arrays in and out: any floating-point array (or what `numpy.asarray` makes one of)
//! becomes a float32 tensor (a C-contiguous copy where needed), integer arrays become labels,
//! and tensors go back as float32 arrays of their shape.

use edgetune::Tensor;
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::prelude::*;
use numpy::{PyArrayDyn, PyUntypedArray};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

/// `numpy.asarray(obj)`, as an array.
fn as_array<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Bound<'py, PyUntypedArray>> {
    let numpy = obj.py().import("numpy")?;
    let arr = numpy
        .call_method1("asarray", (obj,))
        .map_err(|e| PyTypeError::new_err(format!("{what}: cannot be made a numpy array ({})", e.value(obj.py()))))?;
    Ok(arr.cast_into::<PyUntypedArray>()?)
}

fn dtype_name(arr: &Bound<'_, PyUntypedArray>) -> String {
    arr.dtype().str().map(|s| s.to_string()).unwrap_or_else(|_| "?".into())
}

/// A float32 tensor from any floating-point array (float16, float32, float64, ...).
pub fn tensor_in(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Tensor> {
    let py = obj.py();
    let arr = as_array(obj, what)?;
    if arr.dtype().kind() != b'f' {
        return Err(PyTypeError::new_err(format!(
            "{what}: expected a floating-point array, got dtype {}",
            dtype_name(&arr)
        )));
    }
    if arr.ndim() == 0 {
        let msg = "a 0-d array (one number); the model takes arrays whose axis 0 is the batch";
        return Err(super::to_py(py, edgetune::Error::data(what, msg)));
    }
    let numpy = py.import("numpy")?;
    let f32s = numpy.call_method1("ascontiguousarray", (&arr, numpy.getattr("float32")?))?;
    let f32s = f32s.cast_into::<PyArrayDyn<f32>>()?.readonly();
    let shape = f32s.shape().to_vec();
    let data = f32s.as_slice().map_err(|e| PyTypeError::new_err(format!("{what}: {e}")))?.to_vec();
    Ok(Tensor::from_vec(shape, data))
}

/// A batch for training or gradients: at least one dimension and one sample.
pub fn batch_in(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Tensor> {
    let x = tensor_in(obj, what)?;
    if x.shape().first().copied().unwrap_or(0) == 0 {
        let msg = format!("shape {:?} holds no samples (axis 0 is the batch)", x.shape());
        return Err(super::to_py(obj.py(), edgetune::Error::data(what, msg)));
    }
    Ok(x)
}

/// Class labels from a one-dimensional integer array (or sequence).
pub fn labels_in(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<i64>> {
    let py = obj.py();
    let arr = as_array(obj, what)?;
    if !matches!(arr.dtype().kind(), b'i' | b'u') {
        return Err(PyTypeError::new_err(format!(
            "{what}: expected an integer array of class labels, got dtype {}",
            dtype_name(&arr)
        )));
    }
    if arr.ndim() != 1 {
        let msg = format!("shape {:?}: expected one label per sample (one dimension)", arr.shape());
        return Err(super::to_py(py, edgetune::Error::data(what, msg)));
    }
    let numpy = py.import("numpy")?;
    // Unsigned labels past i64::MAX wrap to negative ones, which the library refuses by value.
    let ints = numpy.call_method1("ascontiguousarray", (&arr, numpy.getattr("int64")?))?;
    let ints = ints.cast_into::<PyArrayDyn<i64>>()?.readonly();
    Ok(ints.as_slice().map_err(|e| PyTypeError::new_err(format!("{what}: {e}")))?.to_vec())
}

/// A tensor as a float32 array of its shape.
pub fn tensor_out(py: Python<'_>, t: Tensor) -> PyResult<Bound<'_, PyArrayDyn<f32>>> {
    let shape = t.shape().to_vec();
    let data = t.into_vec();
    let array = ArrayD::from_shape_vec(IxDyn(&shape), data)
        .map_err(|e| super::to_py(py, edgetune::Error::Runtime(format!("tensor of shape {shape:?}: {e}"))))?;
    Ok(array.into_pyarray(py))
}
