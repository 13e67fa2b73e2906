//! Tensors across the boundary: C buffers copied in, results handed out as `et_tensor` handles.

use edgetune::Tensor;

use crate::et_status;
use crate::{arg_mut, arg_ref, arg_slice, bad_input, free_box, guard, invalid, Outcome};

/// A float32 tensor the library returns (row-major, C order). Read it with
/// `et_tensor_shape` and `et_tensor_data`; free it with `et_tensor_free`.
pub struct et_tensor {
    tensor: Tensor,
}

impl et_tensor {
    pub(crate) fn into_raw(tensor: Tensor) -> *mut et_tensor {
        Box::into_raw(Box::new(et_tensor { tensor }))
    }
}

/// A tensor copied from a C buffer: `rank` dims at `shape`, their product of floats at `data`.
pub(crate) unsafe fn tensor_arg(data: *const f32, shape: *const usize, rank: usize, what: &str) -> Outcome<Tensor> {
    let dims = unsafe { arg_slice(shape, rank, &format!("{what} shape")) }?;
    if rank == 0 {
        return Err(bad_input(format!("{what}: rank 0 (a batch needs at least one dim)")));
    }
    let len = edgetune::tensor::checked_numel(dims)
        .ok_or_else(|| invalid(format!("{what}: shape {dims:?} has more elements than fit in memory")))?;
    if len == 0 {
        return Err(bad_input(format!("{what}: shape {dims:?} holds no values")));
    }
    if data.is_null() {
        return Err(invalid(format!("{what}: NULL pointer")));
    }
    // The copy is the caller's size again: an error, not an abort, when it cannot be had.
    let mut copy = Vec::new();
    copy.try_reserve_exact(len).map_err(|_| {
        let gib = len as f64 * 4.0 / (1u64 << 30) as f64;
        bad_input(format!("{what}: shape {dims:?} needs {gib:.1} GiB, more than can be allocated"))
    })?;
    copy.extend_from_slice(unsafe { arg_slice(data, len, what) }?);
    Ok(Tensor::from_vec(dims.to_vec(), copy))
}

/// The tensor's shape: `*rank` dims at `*dims`.
///
/// Ownership: `*dims` points into the tensor and stays valid until `et_tensor_free(tensor)`.
/// Errors: `ET_INVALID_ARGUMENT` when a pointer is NULL.
///
/// # Safety
/// `tensor` is NULL or a live tensor; `dims` and `rank` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn et_tensor_shape(
    tensor: *const et_tensor,
    dims: *mut *const usize,
    rank: *mut usize,
) -> et_status {
    guard(|| {
        let t = unsafe { arg_ref(tensor, "tensor") }?;
        let (dims, rank) = (unsafe { arg_mut(dims, "dims") }?, unsafe { arg_mut(rank, "rank") }?);
        *dims = t.tensor.shape().as_ptr();
        *rank = t.tensor.rank();
        Ok(())
    })
}

/// The tensor's values: `*len` floats at `*data`, row-major.
///
/// Ownership: `*data` points into the tensor and stays valid until `et_tensor_free(tensor)`.
/// Errors: `ET_INVALID_ARGUMENT` when a pointer is NULL.
///
/// # Safety
/// `tensor` is NULL or a live tensor; `data` and `len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn et_tensor_data(tensor: *const et_tensor, data: *mut *const f32, len: *mut usize) -> et_status {
    guard(|| {
        let t = unsafe { arg_ref(tensor, "tensor") }?;
        let (data, len) = (unsafe { arg_mut(data, "data") }?, unsafe { arg_mut(len, "len") }?);
        *data = t.tensor.data().as_ptr();
        *len = t.tensor.len();
        Ok(())
    })
}

/// Frees a tensor. NULL does nothing.
///
/// # Safety
/// `tensor` is NULL or a tensor from this library not yet freed.
#[no_mangle]
pub unsafe extern "C" fn et_tensor_free(tensor: *mut et_tensor) {
    unsafe { free_box(tensor) }
}
