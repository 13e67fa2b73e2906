//! Option values from Python, checked as the CLI checks its flags: a bad value is one line of
//! `edgetune.InputError`, kind `config`, before any work, with the message `edgetune` prints
//! after `error: ` for the same value (`invalid value 'adamx' for '--optimizer <OPTIMIZER>'
//! [possible values: sgd, adam, adamw]`: clap's wording, the flag named as the CLI names it).

use std::fmt::Display;
use std::str::FromStr;

use edgetune::autodiff::BnMode;
use edgetune::data::image::{Preprocess, Resize};
use edgetune::device::Device;
use edgetune::train::finetune::OnNonFinite;
use edgetune::train::optim::OptimizerName;
use edgetune::train::schedule::Schedule;
use edgetune::train::transform::ZnormScope;
use edgetune::values;
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt, PyString, PyTuple};

use super::config_error;

/// The CLI's message for a bad value of the option the keyword `name` stands for
/// (`grad_norm` is `--grad-norm <GRAD_NORM>`), with the reason the value is refused.
pub fn invalid(py: Python<'_>, name: &str, value: impl Display, why: impl Display) -> PyErr {
    config_error(py, format!("invalid value '{value}' for '{}': {why}", flag(name)))
}

/// `--grad-norm <GRAD_NORM>` for `grad_norm`, as clap writes a flag and its value.
pub fn flag(name: &str) -> String {
    format!("--{} <{}>", name.replace('_', "-"), name.to_uppercase())
}

/// An option whose values are a fixed list of names (the library's `choices!` enums, which
/// the CLI takes as clap value enums).
pub trait Named: FromStr {
    fn names() -> Vec<&'static str>;
}

macro_rules! named {
    ($($t:ty),+) => {
        $(impl Named for $t {
            fn names() -> Vec<&'static str> {
                <$t>::ALL.iter().map(|v| v.name()).collect()
            }
        })+
    };
}
named!(BnMode, Device, OnNonFinite, OptimizerName, Preprocess, Resize, Schedule, ZnormScope);

/// One of a named option's values (`optimizer="adam"`, `bn="auto"`), any case.
pub fn choice<T: Named>(py: Python<'_>, name: &str, value: &str) -> PyResult<T> {
    value.parse().map_err(|_| {
        let names = T::names().join(", ");
        config_error(py, format!("invalid value '{value}' for '{}' [possible values: {names}]", flag(name)))
    })
}

/// A value the library parses from text (`grad_norm="clip:1"`, `augment="crop,flip"`).
pub fn parsed<T: FromStr<Err = String>>(py: Python<'_>, name: &str, value: &str) -> PyResult<T> {
    value.parse().map_err(|e| invalid(py, name, value, e))
}

/// `train`: all, head or a regex on initializer names.
pub fn train_spec(py: Python<'_>, value: &str) -> PyResult<String> {
    edgetune::train::select::parse_spec(value).map_err(|e| invalid(py, "train", value, e))
}

/// A whole number >= 1 (a batch size, a step count).
pub fn count(py: Python<'_>, name: &str, v: i64) -> PyResult<usize> {
    values::count(&v.to_string()).map_err(|e| invalid(py, name, v, e))
}

/// A whole number >= 0 (threads, warm-up steps, a seed). The CLI cannot be given a negative
/// one (its parser says `invalid digit found in string`); this says what it wants instead.
pub fn whole(py: Python<'_>, name: &str, v: i64) -> PyResult<usize> {
    usize::try_from(v).map_err(|_| invalid(py, name, v, format!("'{v}' is not a whole number >= 0")))
}

/// A rate checked by the command line's own parser of it (`edgetune::values`), given the text
/// Python writes for the value (`-1.0`, `1e-05`, `nan`): `lr=-1.0` and `--lr -1.0` are the same
/// value, refused with the same message.
fn rate(py: Python<'_>, name: &str, v: f64, parse: fn(&str) -> Result<f32, String>) -> PyResult<f32> {
    let text = PyFloat::new(py, v).repr().map(|r| r.to_string()).unwrap_or_else(|_| v.to_string());
    parse(&text).map_err(|e| invalid(py, name, &text, e))
}

/// A finite number > 0 (a learning rate, an ε).
pub fn positive(py: Python<'_>, name: &str, v: f64) -> PyResult<f32> {
    rate(py, name, v, values::positive)
}

/// A finite number >= 0 (weight decay).
pub fn non_negative(py: Python<'_>, name: &str, v: f64) -> PyResult<f32> {
    rate(py, name, v, values::non_negative)
}

/// A finite number in [0, 1) (momentum).
pub fn fraction(py: Python<'_>, name: &str, v: f64) -> PyResult<f32> {
    rate(py, name, v, values::fraction)
}

/// An image size: `32`, `(32, 48)` or `"32x48"`.
pub fn size(value: &Bound<'_, PyAny>) -> PyResult<[usize; 2]> {
    let py = value.py();
    if let Ok(s) = value.cast::<PyString>() {
        let s = s.to_string();
        return edgetune::data::image::parse_size(&s).map_err(|e| invalid(py, "size", &s, e));
    }
    let positive = |n: i64| usize::try_from(n).ok().filter(|&n| n > 0);
    let hw = match value.extract::<i64>() {
        Ok(n) => positive(n).map(|n| [n, n]),
        Err(_) => match value.extract::<(i64, i64)>() {
            Ok((h, w)) => positive(h).zip(positive(w)).map(|(h, w)| [h, w]),
            Err(_) => None,
        },
    };
    hw.ok_or_else(|| invalid(py, "size", repr(value), "not H, (H, W) or 'HxW' with positive sizes"))
}

/// Augmentations: `"crop,flip"` or `["crop", "flip"]`.
pub fn augment(value: &Bound<'_, PyAny>) -> PyResult<edgetune::data::augment::Augment> {
    let py = value.py();
    let text = if let Ok(s) = value.cast::<PyString>() {
        s.to_string()
    } else if let Ok(parts) = value.extract::<Vec<String>>() {
        parts.join(",")
    } else {
        return Err(invalid(py, "augment", repr(value), "not a string or a list of strings"));
    };
    parsed(py, "augment", &text)
}

/// `repr(value)`, for messages.
pub fn repr(value: &Bound<'_, PyAny>) -> String {
    value.repr().map(|r| r.to_string()).unwrap_or_else(|_| "?".into())
}

/// A declared shape as Python sees it: numbers, names of symbolic dims, `None` for unnamed ones.
pub fn dims<'py>(py: Python<'py>, dims: Option<&[edgetune::graph::Dim]>) -> PyResult<Bound<'py, PyAny>> {
    use edgetune::graph::Dim;
    let Some(dims) = dims else { return Ok(py.None().into_bound(py)) };
    let items = dims.iter().map(|d| match d {
        Dim::Fixed(n) => PyInt::new(py, *n).into_any(),
        Dim::Symbolic(s) if s.is_empty() => py.None().into_bound(py),
        Dim::Symbolic(s) => PyString::new(py, s).into_any(),
    });
    Ok(PyTuple::new(py, items)?.into_any())
}
