//! `edgetune.grad` (one forward and backward pass, what `edgetune grad` writes) and
//! `edgetune.Trainer` (one optimizer step per call, then export).

use std::path::PathBuf;
use std::sync::Mutex;

use edgetune::train::optim::{OptimizerName, Rule};
use edgetune::train::trainer::{StepStats, TrainConfig};
use edgetune::train::transform::GradNorm;
use numpy::PyArrayDyn;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{arrays, guarded, options, py_float, to_py};

/// The loss and the gradient of every trainable initializer on one labelled batch.
#[pyfunction]
#[pyo3(signature = (model_path, x, labels, *, train = "all", bn = "auto", threads = 0, device = "cpu"))]
#[allow(clippy::too_many_arguments)]
pub fn grad<'py>(
    py: Python<'py>,
    model_path: PathBuf,
    x: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    train: &str,
    bn: &str,
    threads: i64,
    device: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let train = options::train_spec(py, train)?;
    let bn = options::choice(py, "bn", bn)?;
    let threads = options::whole(py, "threads", threads)?;
    let device = options::choice(py, "device", device)?;
    let (x, labels) = (arrays::batch_in(x, "x")?, arrays::labels_in(labels, "labels")?);
    let g = py
        .detach(|| {
            guarded(|| {
                let model = edgetune::onnx::load(&model_path)?;
                let pool = edgetune::exec::thread_pool(threads)?;
                pool.install(|| edgetune::train::gradients::gradients(&model.graph, x, &labels, &train, bn, device))
            })
        })
        .map_err(|e| to_py(py, e))?;
    let dict = PyDict::new(py);
    dict.set_item("loss", arrays::tensor_out(py, edgetune::Tensor::scalar(g.loss))?)?;
    for (name, t) in g.grads {
        dict.set_item(name, arrays::tensor_out(py, t)?)?;
    }
    Ok(dict)
}

/// What a trainer keeps: the model (for export), the trainer and the workers it runs on.
struct State {
    model: edgetune::onnx::Model,
    trainer: edgetune::train::trainer::Trainer,
    pool: rayon::ThreadPool,
    /// Set when a call panicked: the weights may be half-updated, so no further call runs.
    broken: bool,
}

/// A model trained one optimizer step at a time, then exported (see __init__.pyi).
#[pyclass(frozen, module = "edgetune")]
pub struct Trainer {
    state: Mutex<State>,
    path: PathBuf,
    lr: f32,
}

impl Trainer {
    /// Runs `f` on the state with the interpreter released; a panic marks the trainer unusable.
    fn with<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut State) -> edgetune::Result<T> + Send) -> PyResult<T> {
        py.detach(|| {
            let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if state.broken {
                return Err(edgetune::Error::Runtime(format!(
                    "{}: this trainer stopped after an internal error; create a new one",
                    self.path.display()
                )));
            }
            let state = &mut *state;
            let result = guarded(|| f(state));
            if matches!(&result, Err(edgetune::Error::Runtime(m)) if m.starts_with("internal error:")) {
                state.broken = true;
            }
            result
        })
        .map_err(|e| to_py(py, e))
    }

    fn scores(s: StepStats) -> (f64, f64) {
        (py_float(s.loss), s.correct as f64 / s.total.max(1) as f64)
    }
}

#[pymethods]
impl Trainer {
    /// A trainer on the model at `model_path` (see __init__.pyi for the options).
    #[new]
    #[pyo3(signature = (
        model_path, *, optimizer = "adam", lr = 1e-3, grad_norm = "znorm", train = "all", bn = "auto",
        num_classes = None, seed = 0, momentum = 0.9, weight_decay = 0.0, nesterov = false,
        znorm_eps = 1e-8, znorm_scope = "all", threads = 0, device = "cpu"
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model_path: PathBuf,
        optimizer: &str,
        lr: f64,
        grad_norm: &str,
        train: &str,
        bn: &str,
        num_classes: Option<i64>,
        seed: i64,
        momentum: f64,
        weight_decay: f64,
        nesterov: bool,
        znorm_eps: f64,
        znorm_scope: &str,
        threads: i64,
        device: &str,
    ) -> PyResult<Self> {
        let optimizer: OptimizerName = options::choice(py, "optimizer", optimizer)?;
        let lr = options::positive(py, "lr", lr)?;
        let (eps, scope) =
            (options::positive(py, "znorm_eps", znorm_eps)?, options::choice(py, "znorm_scope", znorm_scope)?);
        let norm = options::parsed::<GradNorm>(py, "grad_norm", grad_norm)?.with_znorm(Some(eps), Some(scope));
        let train = options::train_spec(py, train)?;
        let bn = options::choice(py, "bn", bn)?;
        let num_classes = num_classes.map(|k| options::count(py, "num_classes", k)).transpose()?;
        let seed = options::whole(py, "seed", seed)? as u64;
        let momentum = options::fraction(py, "momentum", momentum)?;
        let weight_decay = options::non_negative(py, "weight_decay", weight_decay)?;
        let threads = options::whole(py, "threads", threads)?;
        let device = options::choice(py, "device", device)?;
        let rule = Rule::new(optimizer, lr, momentum, weight_decay, nesterov);
        let state = py
            .detach(|| {
                guarded(|| {
                    let mut model = edgetune::onnx::load(&model_path)?;
                    if let Some(k) = num_classes {
                        edgetune::train::head::replace_head(&mut model, k, seed)?;
                    }
                    let config = TrainConfig { train, bn, norm, rule };
                    let mut trainer = edgetune::train::trainer::Trainer::new(model.graph.clone(), config)?;
                    trainer.set_device(device)?;
                    let pool = edgetune::exec::thread_pool(threads)?;
                    Ok(State { model, trainer, pool, broken: false })
                })
            })
            .map_err(|e| to_py(py, e))?;
        Ok(Trainer { state: Mutex::new(state), path: model_path, lr })
    }

    /// One optimizer step on the batch `x` with labels `y` at `lr` (default: the trainer's);
    /// returns the batch's loss and accuracy before the update.
    #[pyo3(signature = (x, y, *, lr = None))]
    fn step(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        lr: Option<f64>,
    ) -> PyResult<(f64, f64)> {
        let lr = lr.map(|v| options::positive(py, "lr", v)).transpose()?.unwrap_or(self.lr);
        let (x, y) = (arrays::batch_in(x, "x")?, arrays::labels_in(y, "y")?);
        self.with(py, |s| s.pool.install(|| s.trainer.step(x, &y, lr))).map(Self::scores)
    }

    /// The logits with the current weights (BatchNorm on its running statistics).
    fn logits<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let x = arrays::batch_in(x, "x")?;
        let logits = self.with(py, |s| s.pool.install(|| s.trainer.logits(x)))?;
        arrays::tensor_out(py, logits)
    }

    /// Loss and accuracy on `x`, `y` with the current weights, nothing changed.
    fn evaluate(&self, py: Python<'_>, x: &Bound<'_, PyAny>, y: &Bound<'_, PyAny>) -> PyResult<(f64, f64)> {
        let (x, y) = (arrays::batch_in(x, "x")?, arrays::labels_in(y, "y")?);
        self.with(py, |s| s.pool.install(|| s.trainer.evaluate(x, &y))).map(Self::scores)
    }

    /// Writes the model with the trained weights and running statistics to `path`
    /// (atomically; the rest of the file as the input model has it).
    fn export(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.with(py, |s| s.trainer.export(&s.model, &path))
    }

    /// The trained weights, then the BatchNorm running statistics, by initializer name.
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let values = self.with(py, |s| s.trainer.values())?;
        let dict = PyDict::new(py);
        for (name, t) in values {
            dict.set_item(name, arrays::tensor_out(py, t)?)?;
        }
        Ok(dict)
    }

    /// Names of the initializers that train.
    #[getter]
    fn trainable(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.with(py, |s| Ok(s.trainer.param_names().map(str::to_string).collect()))
    }

    /// Optimizer steps taken.
    #[getter]
    fn steps(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |s| Ok(s.trainer.optimizer.steps))
    }

    /// The learning rate `step` uses when given none.
    #[getter]
    fn lr(&self) -> f64 {
        py_float(self.lr)
    }

    fn __repr__(&self) -> String {
        format!("edgetune.Trainer({:?})", self.path.display().to_string())
    }
}
