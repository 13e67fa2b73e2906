//! A whole finetuning run, as a library call: load the model and the data, optionally replace
//! the head, train (batches decoded while the previous step trains, validation, checkpoints,
//! resume, the non-finite policy) and write the updated model, checked by reloading it. What
//! happens is reported to an [`Observer`] (the `edgetune finetune` command prints from it; a
//! program may log, draw progress or stop the run); the run itself prints nothing.
//!
//! ```no_run
//! use edgetune::train::finetune::{self, Event, Finetune};
//! use edgetune::train::transform::GradNorm;
//!
//! let mut run = Finetune::new("resnet18.onnx", "folder:photos/train", "tuned.onnx");
//! run.val = Some("folder:photos/val".into());
//! run.num_classes = Some(3);
//! run.size = Some([128, 128]);
//! run.grad_norm = GradNorm::ZNorm { eps: 1e-8, matrices_only: false };
//! run.steps = Some(100);
//! let done = finetune::run(&run, &mut |e: Event| {
//!     if let Event::Step(s) = e {
//!         println!("step {} loss {:?}", s.step, s.loss);
//!     }
//!     finetune::Control::Continue
//! })?;
//! println!("{} images in {:.1} s", done.images, done.train_secs);
//! # Ok::<(), edgetune::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::checkpoint::{self, RunOptions};
use super::optim::{OptimizerName, Rule};
use super::schedule::{lr_at, Schedule};
use super::trainer::{StepStats, TrainConfig, Trainer};
use super::transform::{GradNorm, ZNORM_EPS};
use crate::autodiff::BnMode;
use crate::data::augment::Augment;
use crate::data::dataset::{self, epoch_order, Dataset, Images, Prep, Rng};
use crate::data::image::{Preprocess, Resize};
use crate::data::recipe::{Recipe, CLASSES};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::{Dim, Graph};
use crate::onnx::{Export, Model};
use crate::ops::softmax_2d;
use crate::tensor::Tensor;

crate::choices::choices! {
    /// What a step whose loss or gradients are NaN or infinite does.
    pub enum OnNonFinite {
        /// Skip the step (nothing changes) and go on; counted in the step events.
        Skip = "skip",
        /// Stop the run, naming the first tensor that went non-finite.
        Abort = "abort",
    }
}

/// Everything a run needs; [`Finetune::new`] gives the defaults of `edgetune finetune`.
#[derive(Clone, Debug)]
pub struct Finetune {
    /// The ONNX model (read, never changed unless `output` names it and `overwrite` is set).
    pub model: PathBuf,
    /// Training data SPEC: `npz:FILE`, `idx:DIR`, `cifar:DIR` or `folder:DIR`.
    pub data: String,
    /// Validation data (same forms; a folder is matched to the training classes by name).
    pub val: Option<String>,
    /// Also validate every N steps (0: before training and after each epoch only).
    pub val_every: usize,
    /// Image size (default: what the model records, else its declared size, else the data's).
    pub size: Option<[usize; 2]>,
    /// Image preprocessing (default: what the model records, else `Unit`).
    pub preprocess: Option<Preprocess>,
    /// How images reach `size` (default: what the model records, else `Stretch`).
    pub resize: Option<Resize>,
    /// Where the updated model goes (`<output>.data` beside it for external data).
    pub output: PathBuf,
    /// Allow `output` to replace the input model or a data file it reads.
    pub overwrite: bool,
    /// Passes over the data (when `steps` is `None`).
    pub epochs: usize,
    /// Exactly this many optimizer steps.
    pub steps: Option<usize>,
    pub batch: usize,
    pub optimizer: OptimizerName,
    /// Learning rate (the schedule's peak).
    pub lr: f32,
    /// SGD momentum.
    pub momentum: f32,
    pub nesterov: bool,
    /// L2 penalty (SGD, Adam) or decoupled decay (AdamW), as torch.optim.
    pub weight_decay: f32,
    pub schedule: Schedule,
    /// Linear warm-up steps.
    pub warmup: usize,
    /// The gradient transform before each optimizer step (ZNorm with its ε and scope, ...).
    pub grad_norm: GradNorm,
    /// Replace the classifier by a fresh K-way one.
    pub num_classes: Option<usize>,
    /// Which initializers train: `all`, `head` or a regex on names.
    pub train: String,
    pub bn: BnMode,
    pub augment: Augment,
    /// Batches in a seeded random order per epoch (else file order).
    pub shuffle: bool,
    pub seed: u64,
    /// Save checkpoints here (every `checkpoint_every` steps, each epoch, the end, a stop).
    pub checkpoint: Option<PathBuf>,
    pub checkpoint_every: usize,
    /// Continue from the checkpoint in `checkpoint` (same options; a larger length continues a
    /// finished run).
    pub resume: bool,
    pub on_nonfinite: OnNonFinite,
    /// Worker threads (0: one per core).
    pub threads: usize,
    pub device: Device,
}

impl Finetune {
    /// A run of `model` on `data` into `output`, with the defaults of `edgetune finetune`:
    /// one epoch, batch 32, Adam at 1e-3, ZNorm, constant schedule, BatchNorm auto.
    pub fn new(model: impl Into<PathBuf>, data: impl Into<String>, output: impl Into<PathBuf>) -> Finetune {
        Finetune {
            model: model.into(),
            data: data.into(),
            val: None,
            val_every: 0,
            size: None,
            preprocess: None,
            resize: None,
            output: output.into(),
            overwrite: false,
            epochs: 1,
            steps: None,
            batch: 32,
            optimizer: OptimizerName::Adam,
            lr: 1e-3,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            schedule: Schedule::Constant,
            warmup: 0,
            grad_norm: GradNorm::ZNorm { eps: ZNORM_EPS, matrices_only: false },
            num_classes: None,
            train: "all".into(),
            bn: BnMode::Auto,
            augment: Augment::default(),
            shuffle: true,
            seed: 0,
            checkpoint: None,
            checkpoint_every: 100,
            resume: false,
            on_nonfinite: OnNonFinite::Abort,
            threads: 0,
            device: Device::Cpu,
        }
    }
}

/// A validation's accuracy and mean loss.
#[derive(Clone, Copy, Debug)]
pub struct Scores {
    pub accuracy: f64,
    pub loss: f64,
}

/// One step of a run, as it ended.
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    /// Steps completed, this one included (1-based).
    pub step: usize,
    /// The epoch it belongs to (1-based).
    pub epoch: usize,
    pub total: usize,
    /// `None` for a step skipped for non-finite values.
    pub loss: Option<f32>,
    pub accuracy: Option<f64>,
    pub lr: f32,
    pub images_per_s: Option<f64>,
    /// Steps skipped so far.
    pub skipped: usize,
}

/// What a run reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// What the run decided, for the user (a replaced head, the device, a resume).
    Info(String),
    /// A note or warning about the data or the options (files skipped, a batch larger than the
    /// data, a step skipped for non-finite values).
    Note(String),
    /// Training starts after step `start` of `total`.
    Started { start: usize, total: usize },
    /// Validation progress: `done` of `total` batches.
    Validating { done: usize, total: usize },
    /// A validation after `step` steps (`before`: ahead of this run's first step).
    Validated { step: usize, epoch: usize, before: bool, epoch_end: bool, scores: Scores },
    /// One optimizer step done (or skipped).
    Step(StepReport),
    /// A checkpoint of the first `step` steps is about to be written to `dir` (what an observer
    /// keeps of those steps, e.g. a log, belongs on disk with it).
    Checkpointing { step: usize, dir: &'a Path },
}

/// What the observer wants after an event: `Stop` ends the run after the current step (with a
/// checkpoint when the run has a folder for them) as `Error::Stopped`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Receives a run's events.
pub trait Observer {
    fn observe(&mut self, event: Event<'_>) -> Control;
}

impl<F: FnMut(Event<'_>) -> Control> Observer for F {
    fn observe(&mut self, event: Event<'_>) -> Control {
        self(event)
    }
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The steps of this run: after `start` (a resumed run's checkpoint), up to `total`.
    pub start: usize,
    pub total: usize,
    /// Images trained on by this run, and the seconds it trained (validation excluded).
    pub images: usize,
    pub train_secs: f64,
    /// The last step that went through.
    pub last: Option<StepStats>,
    pub skipped: usize,
    /// Largest difference between the written model's class probabilities (reloaded from the
    /// file) and the trained model's on a probe batch.
    pub max_diff: f32,
}

/// Runs `cfg`, reporting to `observer`.
pub fn run(cfg: &Finetune, observer: &mut dyn Observer) -> Result<Finished> {
    crate::device::check(cfg.device)?;
    check_writable(&cfg.output)?;
    let mut model = crate::onnx::load(&cfg.model)?;
    check_not_input(&model, &cfg.output, cfg.overwrite)?;
    let recipe = Recipe::of(&model);
    if let Some(k) = cfg.num_classes {
        let old = super::head::replace_head(&mut model, k, cfg.seed)?;
        observer.observe(Event::Info(format!("classifier replaced: {old} -> {k} classes")));
    }
    // What trains is known from the model alone: a selection of nothing fails before the data
    // is read.
    super::select::trainable(&model.graph, &cfg.train)?;
    let data = dataset::load(&cfg.data, false)?;
    // A validation folder takes the training folder's class names -> labels.
    let val = cfg.val.as_deref().map(|v| dataset::load_with_classes(v, true, data.classes.as_deref())).transpose()?;
    for d in std::iter::once(&data).chain(&val) {
        relay_notes(d, observer);
    }
    check_classes(&model.graph, &cfg.data, &data, cfg.num_classes)?;
    if let (Some(v), Some(spec)) = (&val, &cfg.val) {
        check_classes(&model.graph, spec, v, cfg.num_classes)?;
    }
    let preprocess = cfg.preprocess.or(recipe.preprocess).unwrap_or(Preprocess::Unit);
    if cfg.preprocess.is_none() && recipe.preprocess.is_none() && matches!(data.images, Images::Files(_)) {
        observer.observe(Event::Note(
            "note: images preprocessed as pixels / 255 (unit); a model pretrained on ImageNet wants --preprocess imagenet"
                .into(),
        ));
    }
    let resize = cfg.resize.or(recipe.resize).unwrap_or(Resize::Stretch);
    let prep = prep_for(&model.graph, &data, cfg.size.or(recipe.input_size), preprocess, resize)?;
    let rule = Rule::new(cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.nesterov);
    let pool = crate::exec::thread_pool(cfg.threads)?;
    let config = TrainConfig { train: cfg.train.clone(), bn: cfg.bn, norm: cfg.grad_norm, rule };
    let mut trainer = Trainer::new(model.graph.clone(), config)?;
    trainer.set_device(cfg.device)?;
    if let Some(name) = trainer.device_name() {
        observer.observe(Event::Info(format!("training on {name}")));
    }
    let per_epoch = data.len().div_ceil(cfg.batch);
    let total = cfg.steps.unwrap_or(cfg.epochs * per_epoch);
    let options = run_options(cfg, &prep);
    let start = match (&cfg.checkpoint, cfg.resume) {
        (Some(dir), true) => resume(dir, &mut trainer, &options, total, observer)?,
        _ => 0,
    };
    if cfg.batch > data.len() {
        observer.observe(Event::Note(format!(
            "note: --batch {} is larger than the {} training samples: each step takes all of them",
            cfg.batch,
            data.len()
        )));
    }
    observer.observe(Event::Started { start, total });
    // Validation time is kept out of the reported training time and images/s.
    let mut val_secs = 0.0;
    let mut validate_at =
        |trainer: &mut Trainer, (step, epoch): (usize, usize), epoch_end, observer: &mut dyn Observer| {
            let Some(v) = &val else { return Ok(Control::Continue) };
            let t = Instant::now();
            let scores = validate(trainer, v, &prep, cfg.batch, &pool, observer)?;
            val_secs += t.elapsed().as_secs_f64();
            let event = Event::Validated { step, epoch, before: step == start, epoch_end, scores };
            Ok::<_, Error>(observer.observe(event))
        };
    // The clock starts before the first validation, whose time `val_secs` takes out again.
    let started = Instant::now();
    validate_at(&mut trainer, (start, start / per_epoch), false, observer)?;
    let (mut images, mut skipped) = (0usize, 0usize);
    let mut last = None;
    // The batch of a step: its epoch's order, its position in it, augmentation seeded per step
    // (so a resumed run sees exactly the batches of an uninterrupted one).
    let make_batch = |step: usize| {
        let (epoch, pos) = (step / per_epoch, step % per_epoch);
        let order = epoch_order(data.len(), cfg.shuffle, cfg.seed, epoch);
        let idx = &order[pos * cfg.batch..((pos + 1) * cfg.batch).min(data.len())];
        let mut rng = Rng(cfg.seed ^ (step as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x6175_6775);
        data.batch_augmented(idx, &prep, Some((&cfg.augment, &mut rng)))
    };
    let mut next = if start < total { Some(make_batch(start)?) } else { None };
    for step in start..total {
        let epoch = step / per_epoch;
        let (x, y) = next.take().expect("prepared before the step");
        let lr = lr_at(cfg.schedule, cfg.lr, step, total, cfg.warmup);
        let t = Instant::now();
        // Loading overlaps compute: the next batch is decoded while this step trains.
        let (result, prefetched) = std::thread::scope(|scope| {
            let loader = (step + 1 < total).then(|| scope.spawn(|| make_batch(step + 1)));
            let r = pool.install(|| trainer.step(x, &y, lr));
            (r, loader.map(|h| h.join().expect("the batch loader does not panic")))
        });
        next = prefetched.transpose()?;
        relay_notes(&data, observer);
        let s = match result {
            Ok(s) => Some(s),
            Err(Error::NonFinite(what)) if cfg.on_nonfinite == OnNonFinite::Skip => {
                skipped += 1;
                observer.observe(Event::Note(format!("step {}: {what}; step skipped", step + 1)));
                None
            }
            Err(Error::NonFinite(what)) => {
                return Err(Error::NonFinite(format!(
                "step {}: {what}; run stopped, the last checkpoint kept (--on-nonfinite skip goes on past such steps)",
                step + 1
            )))
            }
            Err(Error::Data { what, msg }) if what == "labels" => {
                return Err(Error::data(format!("{}: labels", cfg.data), msg))
            }
            Err(e) => return Err(e),
        };
        if let Some(s) = &s {
            images += s.total;
        }
        let report = StepReport {
            step: step + 1,
            epoch: epoch + 1,
            total,
            loss: s.map(|s| s.loss),
            accuracy: s.map(|s| s.correct as f64 / s.total as f64),
            lr,
            images_per_s: s.map(|s| s.total as f64 / t.elapsed().as_secs_f64()),
            skipped,
        };
        let stop = observer.observe(Event::Step(report)) == Control::Stop;
        last = s.or(last);
        let epoch_end = (step + 1) % per_epoch == 0;
        let run_end = step + 1 == total;
        let save = cfg
            .checkpoint
            .as_ref()
            .filter(|_| stop || epoch_end || run_end || (step + 1) % cfg.checkpoint_every.max(1) == 0);
        if let Some(dir) = save {
            observer.observe(Event::Checkpointing { step: step + 1, dir });
            checkpoint::save(dir, &trainer, (step + 1, total), &options)?;
        }
        if stop {
            return Err(Error::Stopped(match &cfg.checkpoint {
                Some(dir) => format!(
                    "interrupted after step {} of {total}; checkpoint saved in {} (the same command with --resume continues)",
                    step + 1,
                    dir.display()
                ),
                None => format!(
                    "interrupted after step {} of {total}; nothing written (--checkpoint DIR makes a run resumable)",
                    step + 1
                ),
            }));
        }
        let every = cfg.val_every > 0 && (step + 1) % cfg.val_every == 0;
        let at = (step + 1, epoch + 1);
        if (epoch_end || run_end || every)
            && validate_at(&mut trainer, at, epoch_end || run_end, observer)? == Control::Stop
        {
            return Err(Error::Stopped(format!("stopped after step {} of {total}", step + 1)));
        }
    }
    let train_secs = started.elapsed().as_secs_f64() - val_secs;
    let max_diff = export(cfg, &model, &recipe, &data, val.as_ref(), &prep, &mut trainer, &pool)?;
    Ok(Finished { start, total, images, train_secs, last, skipped, max_diff })
}

/// Restores `trainer` from the checkpoint in `dir`; returns the steps it holds.
fn resume(
    dir: &Path,
    trainer: &mut Trainer,
    options: &RunOptions,
    total: usize,
    observer: &mut dyn Observer,
) -> Result<usize> {
    let (step, was) = checkpoint::load(dir, trainer, options)?;
    if step > total {
        return Err(Error::Config(format!(
            "the checkpoint in {} is at step {step}, past this run's {total} steps (--steps / --epochs)",
            dir.display()
        )));
    }
    if let Some(was) = was.filter(|&w| w != total) {
        observer.observe(Event::Note(format!(
            "note: the checkpoint's run was {was} steps, this one is {total}: the schedule follows {total}"
        )));
    }
    let how = if step == total { "the run is complete at" } else { "resuming after" };
    observer.observe(Event::Info(format!("{how} step {step} of {total} from {}", dir.display())));
    Ok(step)
}

/// Writes the trained model (weights, running statistics, what it records about its inputs)
/// and checks it by reloading it; returns the largest probability difference.
#[allow(clippy::too_many_arguments)]
fn export(
    cfg: &Finetune,
    model: &Model,
    recipe: &Recipe,
    data: &Dataset,
    val: Option<&Dataset>,
    prep: &Prep,
    trainer: &mut Trainer,
    pool: &rayon::ThreadPool,
) -> Result<f32> {
    // The written model is checked before it takes the output's name (`verify_export`).
    let probe_set = val.unwrap_or(data);
    let (probe, _) = probe_set.batch(&(0..probe_set.len().min(cfg.batch)).collect::<Vec<_>>(), prep)?;
    let values = trainer.values()?;
    let classes = trainer.logits_shape(probe.shape())?.last().copied();
    let trained = trained_recipe(recipe, data, prep, classes, cfg.num_classes.is_some());
    let mut metadata = trained.to_metadata();
    if trained.classes.is_none() && (cfg.num_classes.is_some() || data.classes.is_some()) {
        // The labels mean something else now: names recorded before would be wrong.
        metadata.push((CLASSES.into(), None));
    }
    let export = Export { values: &values, input_size: trained.input_size, metadata };
    let mut diff = 0.0;
    crate::onnx::save(model, &export, &cfg.output, |written| {
        diff = verify_export(written, &cfg.output, trainer, probe, pool)?;
        Ok(())
    })?;
    Ok(diff)
}

/// Passes on what loading or decoding `data` had to say.
fn relay_notes(data: &Dataset, observer: &mut dyn Observer) {
    for n in data.take_notes() {
        observer.observe(Event::Note(n));
    }
}

/// Every label must name one of the model's classes (its declared output size, or K).
fn check_classes(graph: &Graph, spec: &str, data: &Dataset, k: Option<usize>) -> Result<()> {
    let Some(classes) = k.or(declared_classes(graph)) else { return Ok(()) };
    match data.y.iter().enumerate().find(|(_, &l)| l < 0 || l as usize >= classes) {
        Some((i, l)) => Err(Error::data(
            spec,
            format!("label {l} (sample {i}) does not fit the model's {classes} classes; --num-classes replaces the classifier"),
        )),
        None => Ok(()),
    }
}

/// The class count the first output declares (its last dim), when fixed.
fn declared_classes(graph: &Graph) -> Option<usize> {
    graph.outputs.first().and_then(|(_, d)| d.dims.as_ref()).and_then(|d| match d.last() {
        Some(Dim::Fixed(n)) => Some(*n),
        _ => None,
    })
}

/// How the dataset's images become this model's inputs (`size`: asked for, else recorded).
fn prep_for(graph: &Graph, data: &Dataset, size: Option<[usize; 2]>, pre: Preprocess, resize: Resize) -> Result<Prep> {
    let info = crate::exec::image_input(graph)?;
    let native = match &data.images {
        Images::Bytes { h, w, .. } => [*h, *w],
        Images::Float(x) => [x.shape()[2], x.shape()[3]],
        Images::Files(_) => [224, 224],
    };
    let declared = crate::exec::declared_size(graph.inputs[0].1.dims.as_deref().unwrap_or(&[]));
    Ok(Prep {
        channels: info.channels,
        size: size.or(declared).unwrap_or(native),
        preprocess: pre,
        layout: info.layout,
        resize,
    })
}

/// Refuses an output that would replace the input model or a data file it reads, unless
/// `overwrite`.
fn check_not_input(model: &Model, output: &Path, overwrite: bool) -> Result<()> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let inputs = model.files();
    for written in crate::onnx::files_written(model, output) {
        if let Some(hit) = inputs.iter().find(|f| same(f, &written)).filter(|_| !overwrite) {
            return Err(Error::Config(format!(
                "--output {} would replace the input's {}; name another file, or add --overwrite",
                output.display(),
                hit.display()
            )));
        }
    }
    Ok(())
}

/// Fails early (before any training) when the output cannot be written.
fn check_writable(output: &Path) -> Result<()> {
    if output.is_dir() {
        return Err(Error::data(output.display().to_string(), "is a directory; name the .onnx file to write"));
    }
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let probe = dir.join(format!(".edgetune-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| Error::data(output.display().to_string(), format!("cannot write there: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Everything that shapes the trajectory, as the checkpoint records it (paths canonical, so
/// `folder:./data` and `folder:data` are one run). Not the run's length: a finished run can be
/// continued to more steps.
fn run_options(a: &Finetune, prep: &Prep) -> RunOptions {
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    let data = match a.data.split_once(':') {
        Some((kind, path)) => format!("{kind}:{}", canonical(path.as_ref())),
        None => a.data.clone(),
    };
    let (znorm_eps, znorm_scope) = a.grad_norm.znorm_options();
    vec![
        ("model", canonical(&a.model)),
        ("data", data),
        ("batch", a.batch.to_string()),
        ("size", format!("{}x{}", prep.size[0], prep.size[1])),
        ("preprocess", prep.preprocess.to_string()),
        ("resize", prep.resize.to_string()),
        ("optimizer", a.optimizer.to_string()),
        ("lr", a.lr.to_string()),
        ("momentum", a.momentum.to_string()),
        ("nesterov", a.nesterov.to_string()),
        ("weight-decay", a.weight_decay.to_string()),
        ("schedule", a.schedule.to_string()),
        ("warmup", a.warmup.to_string()),
        ("grad-norm", a.grad_norm.to_string()),
        ("znorm-eps", znorm_eps.to_string()),
        ("znorm-scope", znorm_scope.to_string()),
        ("train", a.train.clone()),
        ("bn", a.bn.to_string()),
        ("no-shuffle", (!a.shuffle).to_string()),
        ("seed", a.seed.to_string()),
        ("augment", a.augment.to_string()),
        ("num-classes", a.num_classes.map_or("unset".into(), |k| k.to_string())),
    ]
}

/// What the finetuned model records about its inputs: the size it was trained at, the
/// preprocessing of its image data (arrays are taken as given: the model's own recipe stays),
/// and its class names where they are known.
fn trained_recipe(model: &Recipe, data: &Dataset, prep: &Prep, classes: Option<usize>, new_head: bool) -> Recipe {
    let (size, preprocess, resize) = match &data.images {
        Images::Float(x) => ([x.shape()[2], x.shape()[3]], model.preprocess, model.resize),
        _ => (prep.size, Some(prep.preprocess), Some(prep.resize)),
    };
    // Folder data names its classes (when there are as many as the model's outputs: else the
    // labels' names are unknown); otherwise a new head makes the old names wrong.
    let classes = match &data.classes {
        Some(names) => Some(names.clone()).filter(|c| Some(c.len()) == classes),
        None if new_head => None,
        None => model.classes.clone(),
    };
    Recipe { preprocess, input_size: Some(size), resize, classes }
}

/// Accuracy and mean loss over a validation set, BatchNorm on its running statistics.
fn validate(
    trainer: &mut Trainer,
    val: &Dataset,
    prep: &Prep,
    batch: usize,
    pool: &rayon::ThreadPool,
    observer: &mut dyn Observer,
) -> Result<Scores> {
    let order: Vec<usize> = (0..val.len()).collect();
    let batches = order.len().div_ceil(batch);
    let (mut correct, mut seen, mut loss_sum) = (0usize, 0usize, 0.0f64);
    for (k, chunk) in order.chunks(batch).enumerate() {
        let (x, y) = val.batch(chunk, prep)?;
        let s = pool.install(|| trainer.evaluate(x, &y))?;
        (correct, seen) = (correct + s.correct, seen + s.total);
        loss_sum += s.loss as f64 * s.total as f64;
        observer.observe(Event::Validating { done: k + 1, total: batches });
    }
    relay_notes(val, observer);
    Ok(Scores { accuracy: correct as f64 / seen as f64, loss: loss_sum / seen as f64 })
}

/// Loads the written model (`written`, about to become `output`) as any user would (a fresh
/// import, the inference plan with its fusions) and checks that its class probabilities on
/// `probe` are the trained ones; returns the largest difference.
fn verify_export(
    written: &Path,
    output: &Path,
    trainer: &mut Trainer,
    probe: Tensor,
    pool: &rayon::ThreadPool,
) -> Result<f32> {
    let graph = crate::onnx::load(written)?.graph;
    let first = graph.outputs[0].0;
    let ends_in_softmax = graph.nodes.iter().any(|n| n.op_type == "Softmax" && n.outputs.contains(&first));
    // The training plan fitted, so this smaller batch does: no memory check may cost the run.
    let session = crate::exec::Session::new(graph, pool.current_num_threads())?.without_memory_check();
    let out = session.run(vec![probe.clone()])?.swap_remove(0);
    // Training stops at the logits, before a trailing Softmax.
    let got = if ends_in_softmax { out.data().to_vec() } else { softmax_2d(&out) };
    let want = softmax_2d(&pool.install(|| trainer.logits(probe))?);
    let diff = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
    // f32 rounding of the fused inference plan moves probabilities by ~1e-6; a wrong or stale
    // tensor moves them by orders of magnitude more.
    if got.len() != want.len() || diff.is_nan() || diff > 1e-4 {
        return Err(Error::Runtime(format!(
            "{}: the written model's outputs differ from the trained model's (max difference {diff:e})",
            output.display()
        )));
    }
    Ok(diff)
}
