//! `edgetune.finetune`: the whole `edgetune finetune` (`train::finetune::run`) with the CLI's
//! options as keyword arguments; its events go to an optional callback, which may stop the run
//! by returning False. Ctrl-C (KeyboardInterrupt) stops it after the current step too.

use std::path::PathBuf;

use edgetune::train::finetune::{run as run_finetune, Control, Event, Finetune, Finished, Observer, Scores};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

use super::{config_error, guarded, options, py_float, to_py};

/// The run's events, passed to the callback (and kept for the summary).
struct Relay {
    callback: Option<Py<PyAny>>,
    /// The first exception the callback raised (or a KeyboardInterrupt): raised after the run.
    error: Option<PyErr>,
    /// Once asked to stop, every later event says so too (not every event can stop a run).
    stop: bool,
    notes: Vec<String>,
    info: Vec<String>,
    validated: Option<Scores>,
}

impl Observer for Relay {
    fn observe(&mut self, event: Event<'_>) -> Control {
        match &event {
            Event::Note(n) => self.notes.push(n.clone()),
            Event::Info(i) => self.info.push(i.clone()),
            Event::Validated { scores, .. } => self.validated = Some(*scores),
            _ => {}
        }
        Python::attach(|py| {
            if let Err(e) = py.check_signals() {
                self.error.get_or_insert(e);
                self.stop = true;
            }
            let Some(callback) = self.callback.as_ref().filter(|_| !self.stop) else { return };
            match event_dict(py, &event).and_then(|d| callback.call1(py, (d,))) {
                Ok(answer) if answer.bind(py).is(PyBool::new(py, false)) => self.stop = true,
                Ok(_) => {}
                Err(e) => {
                    self.error = Some(e);
                    self.stop = true;
                }
            }
        });
        if self.stop {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

/// An event as a dict: `event` names it, the other keys are its fields.
fn event_dict<'py>(py: Python<'py>, event: &Event<'_>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match event {
        Event::Info(m) => {
            d.set_item("event", "info")?;
            d.set_item("message", m)?;
        }
        Event::Note(m) => {
            d.set_item("event", "note")?;
            d.set_item("message", m)?;
        }
        Event::Started { start, total } => {
            d.set_item("event", "started")?;
            d.set_item("start", start)?;
            d.set_item("total", total)?;
        }
        Event::Validating { done, total } => {
            d.set_item("event", "validating")?;
            d.set_item("done", done)?;
            d.set_item("total", total)?;
        }
        Event::Validated { step, epoch, before, epoch_end, scores } => {
            d.set_item("event", "validated")?;
            d.set_item("step", step)?;
            d.set_item("epoch", epoch)?;
            d.set_item("before", before)?;
            d.set_item("epoch_end", epoch_end)?;
            d.set_item("accuracy", scores.accuracy)?;
            d.set_item("loss", scores.loss)?;
        }
        Event::Step(s) => {
            d.set_item("event", "step")?;
            d.set_item("step", s.step)?;
            d.set_item("epoch", s.epoch)?;
            d.set_item("total", s.total)?;
            d.set_item("loss", s.loss.map(py_float))?;
            d.set_item("accuracy", s.accuracy)?;
            d.set_item("lr", py_float(s.lr))?;
            d.set_item("images_per_s", s.images_per_s)?;
            d.set_item("skipped", s.skipped)?;
        }
        Event::Checkpointing { step, dir } => {
            d.set_item("event", "checkpointing")?;
            d.set_item("step", step)?;
            d.set_item("dir", dir.display().to_string())?;
        }
    }
    Ok(d)
}

/// How the run ended, as a dict.
fn summary<'py>(py: Python<'py>, run: &Finetune, done: &Finished, relay: &Relay) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("output", run.output.display().to_string())?;
    d.set_item("start", done.start)?;
    d.set_item("total", done.total)?;
    d.set_item("images", done.images)?;
    d.set_item("train_secs", done.train_secs)?;
    d.set_item("loss", done.last.map(|s| py_float(s.loss)))?;
    d.set_item("accuracy", done.last.map(|s| s.correct as f64 / s.total.max(1) as f64))?;
    d.set_item("val_loss", relay.validated.map(|s| s.loss))?;
    d.set_item("val_accuracy", relay.validated.map(|s| s.accuracy))?;
    d.set_item("skipped", done.skipped)?;
    d.set_item("max_diff", py_float(done.max_diff))?;
    d.set_item("notes", &relay.notes)?;
    d.set_item("info", &relay.info)?;
    Ok(d)
}

/// Finetunes `model` on `data` and writes `output` (see __init__.pyi for the options; `None`
/// takes `edgetune finetune`'s default, which the library defines).
#[pyfunction]
#[pyo3(signature = (
    model, data, output, *, val = None, val_every = None, size = None, preprocess = None,
    resize = None, overwrite = None, epochs = None, steps = None, batch = None, optimizer = None,
    lr = None, momentum = None, nesterov = None, weight_decay = None, schedule = None,
    warmup = None, grad_norm = None, znorm_eps = None, znorm_scope = None, num_classes = None,
    train = None, bn = None, augment = None, shuffle = None, seed = None, checkpoint = None,
    checkpoint_every = None, resume = None, on_nonfinite = None, threads = None, device = None,
    callback = None
))]
#[allow(clippy::too_many_arguments)]
pub fn finetune<'py>(
    py: Python<'py>,
    model: PathBuf,
    data: String,
    output: PathBuf,
    val: Option<String>,
    val_every: Option<i64>,
    size: Option<Bound<'py, PyAny>>,
    preprocess: Option<&str>,
    resize: Option<&str>,
    overwrite: Option<bool>,
    epochs: Option<i64>,
    steps: Option<i64>,
    batch: Option<i64>,
    optimizer: Option<&str>,
    lr: Option<f64>,
    momentum: Option<f64>,
    nesterov: Option<bool>,
    weight_decay: Option<f64>,
    schedule: Option<&str>,
    warmup: Option<i64>,
    grad_norm: Option<&str>,
    znorm_eps: Option<f64>,
    znorm_scope: Option<&str>,
    num_classes: Option<i64>,
    train: Option<&str>,
    bn: Option<&str>,
    augment: Option<Bound<'py, PyAny>>,
    shuffle: Option<bool>,
    seed: Option<i64>,
    checkpoint: Option<PathBuf>,
    checkpoint_every: Option<i64>,
    resume: Option<bool>,
    on_nonfinite: Option<&str>,
    threads: Option<i64>,
    device: Option<&str>,
    callback: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let mut run = Finetune::new(model, data, output);
    run.val = val;
    if let Some(v) = val_every {
        run.val_every = options::whole(py, "val_every", v)?;
    }
    run.size = size.as_ref().map(options::size).transpose()?;
    run.preprocess = preprocess.map(|v| options::choice(py, "preprocess", v)).transpose()?;
    run.resize = resize.map(|v| options::choice(py, "resize", v)).transpose()?;
    run.overwrite = overwrite.unwrap_or(run.overwrite);
    if let Some(v) = epochs {
        run.epochs = options::count(py, "epochs", v)?;
    }
    run.steps = steps.map(|v| options::count(py, "steps", v)).transpose()?;
    if let Some(v) = batch {
        run.batch = options::count(py, "batch", v)?;
    }
    if let Some(v) = optimizer {
        run.optimizer = options::choice(py, "optimizer", v)?;
    }
    if let Some(v) = lr {
        run.lr = options::positive(py, "lr", v)?;
    }
    if let Some(v) = momentum {
        run.momentum = options::fraction(py, "momentum", v)?;
    }
    run.nesterov = nesterov.unwrap_or(run.nesterov);
    if let Some(v) = weight_decay {
        run.weight_decay = options::non_negative(py, "weight_decay", v)?;
    }
    if let Some(v) = schedule {
        run.schedule = options::choice(py, "schedule", v)?;
    }
    if let Some(v) = warmup {
        run.warmup = options::whole(py, "warmup", v)?;
    }
    if let Some(v) = grad_norm {
        run.grad_norm = options::parsed(py, "grad_norm", v)?;
    }
    let znorm_eps = znorm_eps.map(|v| options::positive(py, "znorm_eps", v)).transpose()?;
    let znorm_scope = znorm_scope.map(|v| options::choice(py, "znorm_scope", v)).transpose()?;
    run.grad_norm = run.grad_norm.with_znorm(znorm_eps, znorm_scope);
    run.num_classes = num_classes.map(|k| options::count(py, "num_classes", k)).transpose()?;
    if let Some(v) = train {
        run.train = options::train_spec(py, v)?;
    }
    if let Some(v) = bn {
        run.bn = options::choice(py, "bn", v)?;
    }
    if let Some(v) = &augment {
        run.augment = options::augment(v)?;
    }
    run.shuffle = shuffle.unwrap_or(run.shuffle);
    if let Some(v) = seed {
        run.seed = options::whole(py, "seed", v)? as u64;
    }
    run.checkpoint = checkpoint;
    if let Some(v) = checkpoint_every {
        run.checkpoint_every = options::count(py, "checkpoint_every", v)?;
    }
    run.resume = resume.unwrap_or(run.resume);
    if let Some(v) = on_nonfinite {
        run.on_nonfinite = options::choice(py, "on_nonfinite", v)?;
    }
    if let Some(v) = threads {
        run.threads = options::whole(py, "threads", v)?;
    }
    if let Some(v) = device {
        run.device = options::choice(py, "device", v)?;
    }
    // What the CLI's argument parser requires of option pairs, in its words
    // (resume=True needs checkpoint=DIR, val_every=N needs val=SPEC).
    let missing =
        |name| config_error(py, format!("the following required arguments were not provided: {}", options::flag(name)));
    if run.resume && run.checkpoint.is_none() {
        return Err(missing("checkpoint"));
    }
    if run.val_every > 0 && run.val.is_none() {
        return Err(missing("val"));
    }
    if let Some(cb) = &callback {
        if !cb.is_callable() {
            return Err(config_error(py, format!("callback={}: not callable", options::repr(cb))));
        }
    }
    let relay = Relay {
        callback: callback.map(Bound::unbind),
        error: None,
        stop: false,
        notes: Vec::new(),
        info: Vec::new(),
        validated: None,
    };
    let (result, relay) = py.detach(move || {
        let mut relay = relay;
        let result = guarded(|| run_finetune(&run, &mut relay));
        (result.map(|done| (done, run)), relay)
    });
    if let Some(e) = relay.error {
        return Err(e);
    }
    let (done, run) = result.map_err(|e| to_py(py, e))?;
    summary(py, &run, &done, &relay)
}
