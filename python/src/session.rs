//! `edgetune.Session`: a model loaded once, run on numpy batches (plans cached per shape).

use std::path::PathBuf;

use numpy::PyArrayDyn;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use super::{arrays, guarded, options, to_py};

/// An ONNX model loaded once and run on numpy batches (see __init__.pyi).
#[pyclass(frozen, module = "edgetune")]
pub struct Session {
    session: edgetune::Session,
    path: PathBuf,
}

impl Session {
    fn outputs_of(&self, py: Python<'_>, inputs: &Bound<'_, PyTuple>) -> PyResult<Vec<edgetune::Tensor>> {
        let tensors = inputs
            .iter()
            .enumerate()
            .map(|(i, x)| arrays::tensor_in(&x, &format!("input {i}")))
            .collect::<PyResult<Vec<_>>>()?;
        py.detach(|| guarded(|| self.session.run(tensors))).map_err(|e| to_py(py, e))
    }

    fn declared<'py>(py: Python<'py>, decls: &[(usize, edgetune::graph::ValueDecl)]) -> PyResult<Bound<'py, PyList>> {
        let items = decls
            .iter()
            .map(|(_, d)| Ok((d.name.as_str(), options::dims(py, d.dims.as_deref())?)))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }
}

#[pymethods]
impl Session {
    /// Loads the ONNX model at `path`; `threads` workers run it (0: one per core).
    #[new]
    #[pyo3(signature = (path, *, threads = 0))]
    fn new(py: Python<'_>, path: PathBuf, threads: i64) -> PyResult<Self> {
        let threads = options::whole(py, "threads", threads)?;
        let session = py
            .detach(|| guarded(|| edgetune::Session::new(edgetune::onnx::load(&path)?.graph, threads)))
            .map_err(|e| to_py(py, e))?;
        Ok(Session { session, path })
    }

    /// The first output on `inputs` (one array per graph input).
    #[pyo3(signature = (*inputs))]
    fn run<'py>(&self, py: Python<'py>, inputs: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let first = self.outputs_of(py, inputs)?.into_iter().next();
        let first = first.ok_or_else(|| to_py(py, edgetune::Error::Runtime("the model has no outputs".into())))?;
        arrays::tensor_out(py, first)
    }

    /// Every output on `inputs`, by output name (in the model's order).
    #[pyo3(signature = (*inputs))]
    fn run_all<'py>(&self, py: Python<'py>, inputs: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyDict>> {
        let outputs = self.outputs_of(py, inputs)?;
        let dict = PyDict::new(py);
        for ((_, decl), t) in self.session.graph().outputs.iter().zip(outputs) {
            dict.set_item(&decl.name, arrays::tensor_out(py, t)?)?;
        }
        Ok(dict)
    }

    /// The graph inputs: `(name, shape)`, shape a tuple of sizes, names of symbolic dims and
    /// `None` (an unnamed dim), or `None` where the model declares none.
    #[getter]
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        Self::declared(py, &self.session.graph().inputs)
    }

    /// The graph outputs, as `inputs`.
    #[getter]
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        Self::declared(py, &self.session.graph().outputs)
    }

    /// The model's path, as given.
    #[getter]
    fn path(&self) -> String {
        self.path.display().to_string()
    }

    /// The worker threads that run the model.
    #[getter]
    fn threads(&self) -> usize {
        self.session.threads()
    }

    fn __repr__(&self) -> String {
        format!("edgetune.Session({:?}, threads={})", self.path.display().to_string(), self.session.threads())
    }
}
