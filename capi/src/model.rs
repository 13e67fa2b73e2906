//! Models and inference sessions.

use std::ffi::c_char;
use std::path::Path;

use edgetune::graph::{Dim, ValueDecl};
use edgetune::onnx::Model;
use edgetune::Session;

use crate::tensor::{et_tensor, tensor_arg};
use crate::{arg_mut, arg_ref, bad_input, c_str, et_status, free_box, guard, out_slot, Outcome};

/// An ONNX model loaded from a file (its graph and the file's contents, to export from).
pub struct et_model {
    pub(crate) model: Model,
}

/// A model ready to run, with its own pool of worker threads and a plan per input shape.
/// One session may run on several threads at once.
pub struct et_session {
    session: Session,
}

// The promise above ("may run on several threads at once") holds while Session is Sync.
const _: fn() = || {
    fn sync<T: Sync>() {}
    sync::<Session>();
};

pub(crate) fn load(path: *const c_char) -> Outcome<Model> {
    let path = unsafe { c_str(path, "model path") }?;
    Ok(edgetune::onnx::load(Path::new(path))?)
}

/// Loads the ONNX model at `path` (external data beside it is mapped, not copied).
///
/// Ownership: on success `*out` is a new model the caller frees with `et_model_free`; on
/// failure `*out` is NULL.
/// Errors: `ET_BAD_INPUT` for a missing or unreadable file, an invalid model or unsupported ops
/// (the message names the file); `ET_INVALID_ARGUMENT` for a NULL pointer or non-UTF-8 path.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn et_model_load(path: *const c_char, out: *mut *mut et_model) -> et_status {
    guard(|| {
        let out = unsafe { out_slot(out, "out") }?;
        *out = Box::into_raw(Box::new(et_model { model: load(path)? }));
        Ok(())
    })
}

/// Frees a model. NULL does nothing.
///
/// # Safety
/// `model` is NULL or a model from `et_model_load` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn et_model_free(model: *mut et_model) {
    unsafe { free_box(model) }
}

/// Copies the declared dims of `decl` into `dims` (-1 for a dim not fixed by the model).
unsafe fn declared(decl: &ValueDecl, dims: *mut i64, capacity: usize, rank: *mut usize) -> Outcome {
    let rank = unsafe { arg_mut(rank, "rank") }?;
    let shape = decl.dims.as_ref().ok_or_else(|| bad_input(format!("'{}': no declared shape", decl.name)))?;
    *rank = shape.len();
    if capacity < shape.len() {
        return Err(crate::invalid(format!(
            "'{}': rank {} needs {} dims, capacity is {capacity}",
            decl.name,
            shape.len(),
            shape.len()
        )));
    }
    if dims.is_null() {
        return Err(crate::invalid("dims: NULL pointer"));
    }
    for (i, d) in shape.iter().enumerate() {
        let v = match d {
            Dim::Fixed(n) => i64::try_from(*n).unwrap_or(-1),
            Dim::Symbolic(_) => -1,
        };
        // SAFETY: `dims` has room for `capacity` >= rank values (header contract).
        unsafe { dims.add(i).write(v) };
    }
    Ok(())
}

/// The first input's declared shape: `*rank` dims written to `dims` (room for `capacity`),
/// -1 where the model leaves a dim free (batch, often the image size).
///
/// Errors: `ET_BAD_INPUT` when the model declares no shape; `ET_INVALID_ARGUMENT` for a NULL
/// pointer or a `capacity` too small (then `*rank` still says how many dims are needed).
///
/// # Safety
/// `model` is NULL or a live model; `dims` is NULL or has room for `capacity` values; `rank`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn et_model_input_shape(
    model: *const et_model,
    dims: *mut i64,
    capacity: usize,
    rank: *mut usize,
) -> et_status {
    guard(|| {
        let m = unsafe { arg_ref(model, "model") }?;
        let (_, decl) = m.model.graph.inputs.first().ok_or_else(|| bad_input("the model has no inputs"))?;
        unsafe { declared(decl, dims, capacity, rank) }
    })
}

/// The first output's declared shape (for a classifier `[-1, classes]`), as
/// `et_model_input_shape`.
///
/// # Safety
/// As `et_model_input_shape`.
#[no_mangle]
pub unsafe extern "C" fn et_model_output_shape(
    model: *const et_model,
    dims: *mut i64,
    capacity: usize,
    rank: *mut usize,
) -> et_status {
    guard(|| {
        let m = unsafe { arg_ref(model, "model") }?;
        let (_, decl) = m.model.graph.outputs.first().ok_or_else(|| bad_input("the model has no outputs"))?;
        unsafe { declared(decl, dims, capacity, rank) }
    })
}

/// Loads the model at `path` and makes a session on `threads` worker threads (0: one per
/// core).
///
/// Ownership: on success `*out` is a new session the caller frees with `et_session_free`; on
/// failure `*out` is NULL.
/// Errors: as `et_model_load`; `ET_RUNTIME` when the threads cannot start.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn et_session_new(path: *const c_char, threads: usize, out: *mut *mut et_session) -> et_status {
    guard(|| {
        let out = unsafe { out_slot(out, "out") }?;
        let session = Session::new(load(path)?.graph, threads)?;
        *out = Box::into_raw(Box::new(et_session { session }));
        Ok(())
    })
}

/// A session on a copy of `model`'s graph (the model stays the caller's).
///
/// Ownership and errors: as `et_session_new`.
///
/// # Safety
/// `model` is NULL or a live model; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn et_session_from_model(
    model: *const et_model,
    threads: usize,
    out: *mut *mut et_session,
) -> et_status {
    guard(|| {
        let out = unsafe { out_slot(out, "out") }?;
        let m = unsafe { arg_ref(model, "model") }?;
        let session = Session::new(m.model.graph.clone(), threads)?;
        *out = Box::into_raw(Box::new(et_session { session }));
        Ok(())
    })
}

/// Runs the model on one input batch: `rank` dims at `shape` (e.g. N, C, H, W), their product
/// of floats at `x` (row-major). `*out` is the model's first output (for a classifier the
/// logits or probabilities, `[N, classes]`). Batch and image size may change between calls
/// (a plan per shape is made once and kept).
///
/// Ownership: `x` and `shape` stay the caller's (copied); on success `*out` is a new tensor
/// the caller frees with `et_tensor_free`; on failure `*out` is NULL.
/// Errors: `ET_BAD_INPUT` when the shape does not fit the model or would not fit in memory;
/// `ET_INVALID_ARGUMENT` for a NULL pointer or an element count that overflows.
///
/// # Safety
/// `session` is NULL or a live session; `shape` has `rank` values and `x` their product;
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn et_session_run(
    session: *const et_session,
    x: *const f32,
    shape: *const usize,
    rank: usize,
    out: *mut *mut et_tensor,
) -> et_status {
    guard(|| {
        let out = unsafe { out_slot(out, "out") }?;
        let s = unsafe { arg_ref(session, "session") }?;
        let x = unsafe { tensor_arg(x, shape, rank, "x") }?;
        let first = s.session.run(vec![x])?.into_iter().next();
        *out = et_tensor::into_raw(first.ok_or_else(|| bad_input("the model has no outputs"))?);
        Ok(())
    })
}

/// Frees a session (and stops its threads). NULL does nothing.
///
/// # Safety
/// `session` is NULL or a session from this library not yet freed, no longer running.
#[no_mangle]
pub unsafe extern "C" fn et_session_free(session: *mut et_session) {
    unsafe { free_box(session) }
}
