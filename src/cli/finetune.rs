//! `edgetune finetune`: train on a dataset and write the updated model as ONNX.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::json;

use super::steplog::{f32_json, StepLog};
use super::{progress, values};
use crate::autodiff::BnMode;
use crate::data::augment::Augment;
use crate::data::dataset::{self, epoch_order, Images, Prep, Rng};
use crate::data::image::{Preprocess, Resize};
use crate::data::recipe::Recipe;
use crate::error::{Error, Result};
use crate::graph::Dim;
use crate::onnx::Export;
use crate::ops::softmax_2d;
use crate::tensor::Tensor;
use crate::train::optim::{OptimizerName, Rule};
use crate::train::schedule::{lr_at, Schedule};
use crate::train::trainer::{TrainConfig, Trainer};
use crate::train::transform::GradNorm;

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// The ONNX model to finetune (it is read, never changed: see --output).
    pub model: PathBuf,
    /// Training data: npz:FILE (arrays x: N×C×H×W float32, y: N integer labels), idx:DIR
    /// (MNIST/Fashion-MNIST idx files, gzipped or not; the train-* files), cifar:DIR (CIFAR-10
    /// binary) or folder:DIR (one sub-folder of PNG, JPEG, BMP or WebP images per class, the
    /// sorted folder names being the classes; files that are not readable images are skipped
    /// and counted, names starting with '.' ignored, an empty class folder is an error).
    #[arg(long)]
    pub data: String,
    /// Validation data, evaluated before training and after each epoch (same forms; idx:DIR
    /// reads the t10k-* files, cifar:DIR test_batch.bin). A folder:DIR is matched to a training
    /// folder's classes by name: it may hold some of them, not others.
    #[arg(long)]
    pub val: Option<String>,
    /// Also validate every N steps (learning curves; 0: only before training and per epoch).
    #[arg(long, default_value_t = 0, requires = "val")]
    pub val_every: usize,
    /// Input size HxW for image data (default: the size the model records, else its declared
    /// size, else the images'). The written model declares the size it was trained at.
    #[arg(long, value_parser = super::input::parse_size)]
    pub size: Option<[usize; 2]>,
    /// Preprocessing of image data (default: what the model records, else unit: pixels / 255).
    #[arg(long, value_enum)]
    pub preprocess: Option<Preprocess>,
    /// How images reach --size: stretch (scaled to exactly HxW) or crop (aspect ratio kept:
    /// scaled to cover HxW, then the centre cut out, as torchvision's Resize + CenterCrop).
    /// Default: what the model records, else stretch.
    #[arg(long, value_enum)]
    pub resize: Option<Resize>,
    /// The updated model (.onnx), written atomically at the end (with `<OUTPUT>.data` beside it
    /// when the input keeps its tensors as external data).
    #[arg(long)]
    pub output: PathBuf,
    /// Allow --output to replace the input model (or its data file).
    #[arg(long)]
    pub overwrite: bool,
    /// Passes over the data (ignored with --steps).
    #[arg(long, default_value_t = 1, value_parser = values::count)]
    pub epochs: usize,
    /// Exactly this many optimizer steps.
    #[arg(long, value_parser = values::count)]
    pub steps: Option<usize>,
    /// Images per optimizer step (the last batch of an epoch may be smaller).
    #[arg(long, default_value_t = 32, value_parser = values::count)]
    pub batch: usize,
    /// The optimizer, as torch.optim: sgd (with --momentum), adam, adamw.
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerName,
    /// Learning rate (the peak of --schedule), a finite number > 0.
    #[arg(long, default_value_t = 1e-3, value_parser = values::positive, allow_negative_numbers = true)]
    pub lr: f32,
    /// SGD momentum, in [0, 1).
    #[arg(long, default_value_t = 0.9, value_parser = values::fraction, allow_negative_numbers = true)]
    pub momentum: f32,
    /// Nesterov momentum (SGD).
    #[arg(long)]
    pub nesterov: bool,
    /// L2 penalty (SGD, Adam) or decoupled decay (AdamW), as torch.optim; >= 0.
    #[arg(long, default_value_t = 0.0, value_parser = values::non_negative, allow_negative_numbers = true)]
    pub weight_decay: f32,
    /// Learning-rate schedule over the run's steps (after --warmup): constant, cosine (to 0 at
    /// the last step) or step (x0.1 after each third of the run).
    #[arg(long, value_enum, default_value = "constant")]
    pub schedule: Schedule,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// Gradient transform: none, znorm, gc or clip:MAXNORM.
    #[arg(long, default_value = "znorm")]
    pub grad_norm: GradNorm,
    /// ZNorm's ε in (g − mean) / (std + ε), > 0.
    #[arg(long, default_value_t = 1e-8, value_parser = values::positive, allow_negative_numbers = true)]
    pub znorm_eps: f32,
    /// ZNorm on every tensor, or only on weights with ndim > 1.
    #[arg(long, value_enum, default_value = "all")]
    pub znorm_scope: ZnormScope,
    /// Replace the classifier by a fresh K-way one (initialised like torch.nn.Linear).
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Which initializers train: all, head or a regex on names.
    #[arg(long, default_value = "all", value_parser = crate::train::select::parse_spec)]
    pub train: String,
    /// BatchNorm while training: train (batch statistics; running statistics updated as
    /// PyTorch's model.train()), frozen (running statistics, kept), or auto: train where the
    /// layer's scale or bias trains, frozen where neither does (with --train head the backbone
    /// keeps its statistics, as Keras' trainable=False).
    #[arg(long, value_enum, default_value = "auto")]
    pub bn: BnMode,
    /// Training augmentation: a comma-separated list of crop (pad 4, random crop) and flip.
    #[arg(long, default_value = "")]
    pub augment: Augment,
    /// Batches in file order (no shuffling).
    #[arg(long)]
    pub no_shuffle: bool,
    /// Seed of the shuffling, the augmentation and a new head's initialisation (same seed,
    /// same run).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Save a checkpoint here every --checkpoint-every steps and at the end of each epoch
    /// (written atomically: an interrupted run keeps the last complete one).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Steps between checkpoints (besides the end of each epoch and of the run).
    #[arg(long, default_value_t = 100, value_parser = values::count)]
    pub checkpoint_every: usize,
    /// Continue from the checkpoint in --checkpoint (same options required).
    #[arg(long, requires = "checkpoint")]
    pub resume: bool,
    /// What a step whose loss or gradients are NaN or infinite does: abort the run (naming the
    /// first tensor that went non-finite) or skip the step and go on (counted in the log).
    #[arg(long, value_enum, default_value = "abort")]
    pub on_nonfinite: OnNonFinite,
    /// One JSON line per step (step, epoch, loss, accuracy, lr, images_per_s, skipped) and one
    /// per validation (step, epoch, val_loss, val_accuracy; step 0 is before training), each
    /// with time (UTC) and elapsed_s.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Where to train: cpu, or cuda (a build with `--features cuda` and an NVIDIA GPU).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: crate::device::Device,
    /// No progress bar (it is also off when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnNonFinite {
    Skip,
    Abort,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ZnormScope {
    All,
    Matrices,
}

/// Every label must name one of the model's classes (its declared output size, or --num-classes).
fn check_classes(graph: &crate::graph::Graph, spec: &str, data: &dataset::Dataset, k: Option<usize>) -> Result<()> {
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
fn declared_classes(graph: &crate::graph::Graph) -> Option<usize> {
    graph.outputs.first().and_then(|(_, d)| d.dims.as_ref()).and_then(|d| match d.last() {
        Some(Dim::Fixed(n)) => Some(*n),
        _ => None,
    })
}

/// How the dataset's images become this model's inputs (`size`: the flag, else what the model
/// records).
fn prep_for(
    graph: &crate::graph::Graph,
    data: &dataset::Dataset,
    size: Option<[usize; 2]>,
    pre: Preprocess,
    resize: Resize,
) -> Result<Prep> {
    let info = super::input::image_input(graph)?;
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

/// Refuses an output that would replace the input model or a data file it reads, unless the
/// user said `--overwrite`.
fn check_not_input(model: &crate::onnx::Model, output: &std::path::Path, overwrite: bool) -> Result<()> {
    let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let inputs = model.files();
    for written in crate::onnx::files_written(model, output) {
        if let Some(hit) = inputs.iter().find(|f| same(f, &written)).filter(|_| !overwrite) {
            return Err(Error::Usage(format!(
                "--output {} would replace the input's {}; name another file, or add --overwrite",
                output.display(),
                hit.display()
            )));
        }
    }
    Ok(())
}

/// Fails early (before any training) when the output cannot be written.
fn check_writable(output: &std::path::Path) -> Result<()> {
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

pub fn run(a: FinetuneArgs) -> Result<()> {
    crate::device::check(a.device)?;
    check_writable(&a.output)?;
    let mut model = crate::onnx::load(&a.model)?;
    check_not_input(&model, &a.output, a.overwrite)?;
    let recipe = Recipe::of(&model);
    if let Some(k) = a.num_classes {
        let old = crate::train::head::replace_head(&mut model, k, a.seed)?;
        say!("classifier replaced: {old} -> {k} classes");
    }
    // What trains is known from the model alone: a --train that selects nothing fails here,
    // before the data is read.
    crate::train::select::trainable(&model.graph, &a.train)?;
    let data = dataset::load(&a.data, false)?;
    // A validation folder takes the training folder's class names -> labels.
    let val = a.val.as_deref().map(|v| dataset::load_with_classes(v, true, data.classes.as_deref())).transpose()?;
    check_classes(&model.graph, &a.data, &data, a.num_classes)?;
    if let (Some(v), Some(spec)) = (&val, &a.val) {
        check_classes(&model.graph, spec, v, a.num_classes)?;
    }
    let preprocess = a.preprocess.or(recipe.preprocess).unwrap_or(Preprocess::Unit);
    if a.preprocess.is_none() && recipe.preprocess.is_none() && matches!(data.images, Images::Files(_)) {
        note!("note: images preprocessed as pixels / 255 (unit); a model pretrained on ImageNet wants --preprocess imagenet");
    }
    let resize = a.resize.or(recipe.resize).unwrap_or(Resize::Stretch);
    let prep = prep_for(&model.graph, &data, a.size.or(recipe.input_size), preprocess, resize)?;
    let norm = match a.grad_norm {
        GradNorm::ZNorm { .. } => {
            GradNorm::ZNorm { eps: a.znorm_eps, matrices_only: a.znorm_scope == ZnormScope::Matrices }
        }
        other => other,
    };
    let rule = Rule::new(a.optimizer, a.lr, a.momentum, a.weight_decay, a.nesterov);
    let pool = super::thread_pool(a.threads)?;
    let mut trainer = Trainer::new(model.graph.clone(), TrainConfig { train: a.train.clone(), bn: a.bn, norm, rule })?;
    trainer.set_device(a.device)?;
    if let Some(name) = trainer.device_name() {
        say!("training on {name}");
    }
    let per_epoch = data.len().div_ceil(a.batch);
    let total = a.steps.unwrap_or(a.epochs * per_epoch);
    let options = run_options(&a, &prep);
    let start = match (&a.checkpoint, a.resume) {
        (Some(dir), true) => {
            let (step, was) = crate::train::checkpoint::load(dir, &mut trainer, &options)?;
            if step > total {
                return Err(Error::Usage(format!(
                    "the checkpoint in {} is at step {step}, past this run's {total} steps (--steps / --epochs)",
                    dir.display()
                )));
            }
            if let Some(was) = was.filter(|&w| w != total) {
                note!("note: the checkpoint's run was {was} steps, this one is {total}: the schedule follows {total}");
            }
            let how = if step == total { "the run is complete at" } else { "resuming after" };
            say!("{how} step {step} of {total} from {}", dir.display());
            step
        }
        _ => 0,
    };
    if a.batch > data.len() {
        note!(
            "note: --batch {} is larger than the {} training samples: each step takes all of them",
            a.batch,
            data.len()
        );
    }
    // A resumed run's log keeps the rows up to its checkpoint (a killed run may have written
    // some past it) and goes on from there.
    let mut log = a.log.as_deref().map(|p| StepLog::open(p, start)).transpose()?;
    // Validation time is kept out of the reported training time and images/s.
    let val_secs = std::cell::Cell::new(0.0);
    let evaluate = |trainer: &mut Trainer| -> Result<Option<Scores>> {
        let Some(v) = &val else { return Ok(None) };
        let t = Instant::now();
        let scores = validate(trainer, v, &prep, a.batch, &pool, a.quiet);
        val_secs.set(val_secs.get() + t.elapsed().as_secs_f64());
        scores.map(Some)
    };
    if let Some(v) = evaluate(&mut trainer)? {
        say!("validation accuracy before: {:.4} (loss {:.4})", v.accuracy, v.loss);
        if let Some(w) = log.as_mut().filter(|_| start == 0) {
            w.write(v.row(start, start / per_epoch))?;
        }
    }
    super::interrupt::install();
    let pb = progress::bar(total as u64, "finetune", a.quiet);
    let (mut seen, mut skipped, started) = (0usize, 0usize, Instant::now());
    val_secs.set(0.0);
    let mut last = None;
    pb.set_position(start as u64);
    // The batch of a step: its epoch's order, its position in it, augmentation seeded per step
    // (so a resumed run sees exactly the batches of an uninterrupted one).
    let make_batch = |step: usize| {
        let (epoch, pos) = (step / per_epoch, step % per_epoch);
        let order = epoch_order(data.len(), !a.no_shuffle, a.seed, epoch);
        let idx = &order[pos * a.batch..((pos + 1) * a.batch).min(data.len())];
        let mut rng = Rng(a.seed ^ (step as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x6175_6775);
        data.batch_augmented(idx, &prep, Some((&a.augment, &mut rng)))
    };
    let mut next = if start < total { Some(make_batch(start)?) } else { None };
    for step in start..total {
        let epoch = step / per_epoch;
        let (x, y) = next.take().expect("prepared before the step");
        let lr = lr_at(a.schedule, a.lr, step, total, a.warmup);
        let t = Instant::now();
        // Loading overlaps compute: the next batch is decoded while this step trains.
        let (result, prefetched) = std::thread::scope(|scope| {
            let loader = (step + 1 < total).then(|| scope.spawn(|| make_batch(step + 1)));
            let r = pool.install(|| trainer.step(x, &y, lr));
            (r, loader.map(|h| h.join().expect("the batch loader does not panic")))
        });
        next = prefetched.transpose()?;
        let s = match result {
            Ok(s) => Some(s),
            Err(Error::NonFinite(what)) if a.on_nonfinite == OnNonFinite::Skip => {
                skipped += 1;
                pb.suspend(|| note!("step {}: {what}; step skipped", step + 1));
                None
            }
            Err(Error::NonFinite(what)) => {
                return Err(Error::NonFinite(format!(
                "step {}: {what}; run stopped, the last checkpoint kept (--on-nonfinite skip goes on past such steps)",
                step + 1
            )))
            }
            Err(Error::Data { what, msg }) if what == "labels" => {
                return Err(Error::data(format!("{}: labels", a.data), msg))
            }
            Err(e) => return Err(e),
        };
        pb.inc(1);
        // A skipped step logs null loss, accuracy and speed.
        let (loss, acc, ips) = match &s {
            Some(s) => (
                Some(s.loss),
                Some(s.correct as f64 / s.total as f64),
                Some(s.total as f64 / t.elapsed().as_secs_f64()),
            ),
            None => (None, None, None),
        };
        if let (Some(s), Some(acc), Some(ips)) = (&s, acc, ips) {
            seen += s.total;
            pb.set_message(format!("loss {:.4} acc {:.3} {:.1} img/s", s.loss, acc, ips));
        }
        if let Some(w) = log.as_mut() {
            let loss = loss.map(f32_json);
            w.write(json!({"step": step + 1, "epoch": epoch + 1, "loss": loss, "accuracy": acc, "lr": f32_json(lr), "images_per_s": ips, "skipped": skipped}))?;
        }
        last = s.or(last);
        let epoch_end = (step + 1) % per_epoch == 0;
        let stop = super::interrupt::requested();
        let run_end = step + 1 == total;
        let save =
            a.checkpoint.as_ref().filter(|_| stop || epoch_end || run_end || (step + 1) % a.checkpoint_every == 0);
        if stop || save.is_some() {
            // The rows of every step a checkpoint holds are on disk with it.
            log.as_mut().map(StepLog::flush).transpose()?;
        }
        if let Some(dir) = save {
            crate::train::checkpoint::save(dir, &trainer, (step + 1, total), &options)?;
        }
        if stop {
            pb.finish_and_clear();
            return Err(Error::Interrupted(match &a.checkpoint {
                Some(dir) => format!(
                    "interrupted after step {} of {total}; checkpoint saved in {} (the same command with --resume continues)",
                    step + 1,
                    dir.display()
                ),
                None => format!("interrupted after step {} of {total}; nothing written (--checkpoint DIR makes a run resumable)", step + 1),
            }));
        }
        let every = a.val_every > 0 && (step + 1) % a.val_every == 0;
        if epoch_end || step + 1 == total || every {
            if let Some(v) = evaluate(&mut trainer)? {
                let when = if epoch_end || step + 1 == total {
                    format!("epoch {}", epoch + 1)
                } else {
                    format!("step {}", step + 1)
                };
                pb.suspend(|| say!("{when} validation accuracy {:.4} (loss {:.4})", v.accuracy, v.loss));
                if let Some(w) = log.as_mut() {
                    w.write(v.row(step + 1, epoch + 1))?;
                }
            }
        }
    }
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64() - val_secs.get();
    // The written model is checked before it takes the output's name (`verify_export`).
    let (probe, _) = match &val {
        Some(v) => v.batch(&(0..v.len().min(a.batch)).collect::<Vec<_>>(), &prep)?,
        None => data.batch(&(0..data.len().min(a.batch)).collect::<Vec<_>>(), &prep)?,
    };
    let mut diff = 0.0;
    let values = trainer.values()?;
    let classes = trainer.logits_shape(probe.shape())?.last().copied();
    let trained = trained_recipe(&recipe, &data, &prep, classes, a.num_classes.is_some());
    let mut metadata = trained.to_metadata();
    if trained.classes.is_none() && (a.num_classes.is_some() || data.classes.is_some()) {
        // The labels mean something else now: names recorded before would be wrong.
        metadata.push((crate::data::recipe::CLASSES.into(), None));
    }
    let export = Export { values: &values, input_size: trained.input_size, metadata };
    crate::onnx::save(&model, &export, &a.output, |written| {
        diff = verify_export(written, &a.output, &mut trainer, probe, &pool)?;
        Ok(())
    })?;
    if let Some(s) = last {
        say!(
            "{} ({seen} images) in {secs:.1} s of training, {:.1} img/s; last batch loss {:.4}, accuracy {:.3}",
            steps_done(start, total),
            seen as f64 / secs,
            s.loss,
            s.correct as f64 / s.total as f64,
        );
    }
    if skipped > 0 {
        say!("{skipped} step(s) skipped for non-finite values");
    }
    say!("wrote {}: it reloads and gives the trained model's outputs (max difference {diff:.1e})", a.output.display());
    Ok(())
}

/// Everything that shapes the trajectory, as the checkpoint records it (paths canonical, so
/// `folder:./data` and `folder:data` are one run). Not the run's length: a finished run can be
/// continued to more steps.
fn run_options(a: &FinetuneArgs, prep: &Prep) -> crate::train::checkpoint::RunOptions {
    let canonical = |p: &std::path::Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    let data = match a.data.split_once(':') {
        Some((kind, path)) => format!("{kind}:{}", canonical(path.as_ref())),
        None => a.data.clone(),
    };
    // The flag's value as typed (the enums' names are their variants in lower case).
    let name = |v: &dyn std::fmt::Debug| format!("{v:?}").to_lowercase();
    vec![
        ("model", canonical(&a.model)),
        ("data", data),
        ("batch", a.batch.to_string()),
        ("size", format!("{}x{}", prep.size[0], prep.size[1])),
        ("preprocess", name(&prep.preprocess)),
        ("resize", name(&prep.resize)),
        ("optimizer", name(&a.optimizer)),
        ("lr", a.lr.to_string()),
        ("momentum", a.momentum.to_string()),
        ("nesterov", a.nesterov.to_string()),
        ("weight-decay", a.weight_decay.to_string()),
        ("schedule", name(&a.schedule)),
        ("warmup", a.warmup.to_string()),
        ("grad-norm", a.grad_norm.to_string()),
        ("znorm-eps", a.znorm_eps.to_string()),
        ("znorm-scope", name(&a.znorm_scope)),
        ("train", a.train.clone()),
        ("bn", name(&a.bn)),
        ("no-shuffle", a.no_shuffle.to_string()),
        ("seed", a.seed.to_string()),
        ("augment", a.augment.to_string()),
        ("num-classes", a.num_classes.map_or("unset".into(), |k| k.to_string())),
    ]
}

/// `12 steps`, `1 step`, or `steps 14-40` for a resumed run.
fn steps_done(start: usize, total: usize) -> String {
    match (start, total - start) {
        (0, 1) => "1 step".into(),
        (0, n) => format!("{n} steps"),
        (s, _) => format!("steps {}-{total} of a resumed run", s + 1),
    }
}

/// What the finetuned model records about its inputs: the size it was trained at, the
/// preprocessing of its image data (arrays are taken as given: the model's own recipe stays),
/// and its class names where they are known (a replaced head drops the old ones).
fn trained_recipe(
    model: &Recipe,
    data: &dataset::Dataset,
    prep: &Prep,
    classes: Option<usize>,
    new_head: bool,
) -> Recipe {
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

/// A validation's accuracy and mean loss.
struct Scores {
    accuracy: f64,
    loss: f64,
}

impl Scores {
    /// The --log row of a validation after `step` steps.
    fn row(&self, step: usize, epoch: usize) -> serde_json::Value {
        json!({"step": step, "epoch": epoch, "val_loss": self.loss, "val_accuracy": self.accuracy})
    }
}

/// Accuracy and mean loss over a validation set, BatchNorm on its running statistics.
fn validate(
    trainer: &mut Trainer,
    val: &dataset::Dataset,
    prep: &Prep,
    batch: usize,
    pool: &rayon::ThreadPool,
    quiet: bool,
) -> Result<Scores> {
    let order: Vec<usize> = (0..val.len()).collect();
    let pb = progress::bar(order.len().div_ceil(batch) as u64, "validate", quiet);
    let (mut correct, mut seen, mut loss_sum) = (0usize, 0usize, 0.0f64);
    for chunk in order.chunks(batch) {
        let (x, y) = val.batch(chunk, prep)?;
        let s = pool.install(|| trainer.evaluate(x, &y))?;
        (correct, seen) = (correct + s.correct, seen + s.total);
        loss_sum += s.loss as f64 * s.total as f64;
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(Scores { accuracy: correct as f64 / seen as f64, loss: loss_sum / seen as f64 })
}

/// Loads the written model (`written`, about to become `output`) as any user would (a fresh
/// import, the inference plan with its fusions) and checks that its class probabilities on
/// `probe` are the trained ones; returns the largest difference.
fn verify_export(
    written: &std::path::Path,
    output: &std::path::Path,
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
