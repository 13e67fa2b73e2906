//! Python bindings of edgetune: the native module `edgetune._native`, re-exported by the
//! `edgetune` package (python/edgetune/__init__.py; the API is in __init__.pyi).
//!
//! Every call that runs a model releases the interpreter (`Python::detach`) while it works and
//! turns the library's errors into `edgetune.Error` subclasses whose message is the library's
//! one-line message, unchanged. A panic inside the library becomes `edgetune.RunError`
//! ("internal error: ...") instead of unwinding into Python.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

mod arrays;
mod finetune;
mod options;
mod session;
mod trainer;

create_exception!(
    edgetune,
    Error,
    PyException,
    "Any failure edgetune reports; the message is the library's one-line message. `kind` names the class of error (config, data, invalid-model, unsupported, node, io, non-finite, runtime, device, stopped)."
);
create_exception!(
    edgetune,
    InputError,
    Error,
    "The input is at fault: a file, a model, data, an option value, a device that cannot run (kinds config, data, invalid-model, unsupported, node, io, device)."
);
create_exception!(
    edgetune,
    RunError,
    Error,
    "A failure while running: non-finite values, a runtime failure (kinds non-finite, runtime)."
);
create_exception!(
    edgetune,
    Stopped,
    Error,
    "A run stopped on request (its callback returned False); the message says what was saved."
);

/// The Python exception for a library error: its class, the message unchanged, and `kind`.
pub(crate) fn to_py(py: Python<'_>, e: edgetune::Error) -> PyErr {
    use edgetune::Error as E;
    let kind = match &e {
        E::Config(_) => "config",
        E::Data { .. } => "data",
        E::InvalidModel { .. } => "invalid-model",
        E::Unsupported { .. } => "unsupported",
        E::Node { .. } => "node",
        E::Io { .. } => "io",
        E::NonFinite(_) => "non-finite",
        E::Runtime(_) => "runtime",
        E::Device(_) => "device",
        E::Stopped(_) => "stopped",
    };
    let msg = e.to_string();
    let err = match e {
        // As the command's exit codes: 1 for these, 2 for the input's faults (a device that
        // cannot run, like a missing file, is one).
        E::NonFinite(_) | E::Runtime(_) => RunError::new_err(msg),
        E::Stopped(_) => Stopped::new_err(msg),
        _ => InputError::new_err(msg),
    };
    // Setting an attribute on a fresh exception instance cannot fail in practice; if it did,
    // the exception would still carry its class and message.
    let _ = err.value(py).setattr("kind", kind);
    err
}

/// A bad option value or argument, as `edgetune.InputError` of kind `config`.
pub(crate) fn config_error(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    to_py(py, edgetune::Error::Config(msg.into()))
}

/// An f32 as the Python float that prints as it does (`0.001`, not `0.0010000000474974513`):
/// the shortest decimal that reads back as the same f32, as the CLI's `--log` rows write it.
pub(crate) fn py_float(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

/// Runs `f`, turning a panic into `Error::Runtime` so that none unwinds into Python.
pub(crate) fn guarded<T>(f: impl FnOnce() -> edgetune::Result<T>) -> edgetune::Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(edgetune::Error::Runtime(format!("internal error: {}", what.lines().next().unwrap_or(""))))
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("RunError", py.get_type::<RunError>())?;
    m.add("Stopped", py.get_type::<Stopped>())?;
    m.add_class::<session::Session>()?;
    m.add_class::<trainer::Trainer>()?;
    m.add_function(wrap_pyfunction!(trainer::grad, m)?)?;
    m.add_function(wrap_pyfunction!(finetune::finetune, m)?)?;
    Ok(())
}
