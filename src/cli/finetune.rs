//! `edgetune finetune`: the options of a run (`train::finetune::Finetune`) from the command line,
//! and what the run reports, printed: a progress bar, the validations, notes on stderr, the
//! `--log` file, Ctrl-C as a request to stop after the step (the library runs the loop).

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::steplog::{f32_json, StepLog};
use super::{interrupt, progress};
use crate::autodiff::BnMode;
use crate::data::augment::Augment;
use crate::data::image::{Preprocess, Resize};
use crate::error::{Error, Result};
use crate::train::finetune::{self, Control, Event, Finetune, Finished, OnNonFinite};
use crate::train::optim::OptimizerName;
use crate::train::schedule::Schedule;
use crate::train::transform::{GradNorm, ZnormScope};
use crate::values;

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
    #[arg(long, default_value_t = defaults().val_every, requires = "val")]
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
    #[arg(long, default_value_t = defaults().epochs, value_parser = values::count)]
    pub epochs: usize,
    /// Exactly this many optimizer steps.
    #[arg(long, value_parser = values::count)]
    pub steps: Option<usize>,
    /// Images per optimizer step (the last batch of an epoch may be smaller).
    #[arg(long, default_value_t = defaults().batch, value_parser = values::count)]
    pub batch: usize,
    /// The optimizer, as torch.optim: sgd (with --momentum), adam, adamw.
    #[arg(long, value_enum, default_value_t = defaults().optimizer)]
    pub optimizer: OptimizerName,
    /// Learning rate (the peak of --schedule), a finite number > 0.
    #[arg(long, default_value_t = defaults().lr, value_parser = values::positive, allow_hyphen_values = true)]
    pub lr: f32,
    /// SGD momentum, in [0, 1).
    #[arg(long, default_value_t = defaults().momentum, value_parser = values::fraction, allow_hyphen_values = true)]
    pub momentum: f32,
    /// Nesterov momentum (SGD).
    #[arg(long)]
    pub nesterov: bool,
    /// L2 penalty (SGD, Adam) or decoupled decay (AdamW), as torch.optim; >= 0.
    #[arg(long, default_value_t = defaults().weight_decay, value_parser = values::non_negative, allow_hyphen_values = true)]
    pub weight_decay: f32,
    /// Learning-rate schedule over the run's steps (after --warmup): constant, cosine (to 0 at
    /// the last step) or step (x0.1 after each third of the run).
    #[arg(long, value_enum, default_value_t = defaults().schedule)]
    pub schedule: Schedule,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = defaults().warmup)]
    pub warmup: usize,
    /// Gradient transform: none, znorm, gc or clip:MAXNORM.
    #[arg(long, default_value_t = defaults().grad_norm)]
    pub grad_norm: GradNorm,
    /// ZNorm's ε in (g − mean) / (std + ε), > 0.
    #[arg(long, default_value_t = defaults().grad_norm.znorm_options().0, value_parser = values::positive, allow_hyphen_values = true)]
    pub znorm_eps: f32,
    /// ZNorm on every tensor, or only on weights with ndim > 1.
    #[arg(long, value_enum, default_value_t = defaults().grad_norm.znorm_options().1)]
    pub znorm_scope: ZnormScope,
    /// Replace the classifier by a fresh K-way one (initialised like torch.nn.Linear).
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Which initializers train: all, head or a regex on names.
    #[arg(long, default_value_t = defaults().train, value_parser = crate::train::select::parse_spec)]
    pub train: String,
    /// BatchNorm while training: train (batch statistics; running statistics updated as
    /// PyTorch's model.train()), frozen (running statistics, kept), or auto: train where the
    /// layer's scale or bias trains, frozen where neither does (with --train head the backbone
    /// keeps its statistics, as Keras' trainable=False).
    #[arg(long, value_enum, default_value_t = defaults().bn)]
    pub bn: BnMode,
    /// Training augmentation: a comma-separated list of crop (pad 4, random crop) and flip.
    #[arg(long, default_value_t = defaults().augment)]
    pub augment: Augment,
    /// Batches in file order (no shuffling).
    #[arg(long)]
    pub no_shuffle: bool,
    /// Seed of the shuffling, the augmentation and a new head's initialisation (same seed,
    /// same run).
    #[arg(long, default_value_t = defaults().seed)]
    pub seed: u64,
    /// Save a checkpoint here every --checkpoint-every steps and at the end of each epoch
    /// (written atomically: an interrupted run keeps the last complete one).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Steps between checkpoints (besides the end of each epoch and of the run).
    #[arg(long, default_value_t = defaults().checkpoint_every, value_parser = values::count)]
    pub checkpoint_every: usize,
    /// Continue from the checkpoint in --checkpoint (same options required).
    #[arg(long, requires = "checkpoint")]
    pub resume: bool,
    /// What a step whose loss or gradients are NaN or infinite does: abort the run (naming the
    /// first tensor that went non-finite) or skip the step and go on (counted in the log).
    #[arg(long, value_enum, default_value_t = defaults().on_nonfinite)]
    pub on_nonfinite: OnNonFinite,
    /// One JSON line per step (step, epoch, loss, accuracy, lr, images_per_s, skipped) and one
    /// per validation (step, epoch, val_loss, val_accuracy; step 0 is before training), each
    /// with time (UTC) and elapsed_s.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = defaults().threads)]
    pub threads: usize,
    /// Where to train: cpu, or cuda (a build with `--features cuda` and an NVIDIA GPU).
    #[arg(long, value_enum, default_value_t = defaults().device)]
    pub device: crate::device::Device,
    /// No progress bar (it is also off when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

/// The library's defaults of a run (`Finetune::new`): what the flags default to, so that the
/// command and a program using the library start from the same run.
fn defaults() -> Finetune {
    Finetune::new(PathBuf::new(), String::new(), PathBuf::new())
}

impl FinetuneArgs {
    /// The run these options describe.
    fn to_run(&self) -> Finetune {
        Finetune {
            model: self.model.clone(),
            data: self.data.clone(),
            val: self.val.clone(),
            val_every: self.val_every,
            size: self.size,
            preprocess: self.preprocess,
            resize: self.resize,
            output: self.output.clone(),
            overwrite: self.overwrite,
            epochs: self.epochs,
            steps: self.steps,
            batch: self.batch,
            optimizer: self.optimizer,
            lr: self.lr,
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            schedule: self.schedule,
            warmup: self.warmup,
            grad_norm: self.grad_norm.with_znorm(Some(self.znorm_eps), Some(self.znorm_scope)),
            num_classes: self.num_classes,
            train: self.train.clone(),
            bn: self.bn,
            augment: self.augment.clone(),
            shuffle: !self.no_shuffle,
            seed: self.seed,
            checkpoint: self.checkpoint.clone(),
            checkpoint_every: self.checkpoint_every,
            resume: self.resume,
            on_nonfinite: self.on_nonfinite,
            threads: self.threads,
            device: self.device,
        }
    }
}

pub fn run(a: FinetuneArgs) -> Result<()> {
    if let Some(p) = &a.log {
        // An unwritable log fails before any training (opening it for real waits for the
        // step the run starts after).
        let existed = p.exists();
        std::fs::OpenOptions::new().create(true).append(true).open(p).map_err(|e| Error::io(p, e))?;
        if !existed {
            let _ = std::fs::remove_file(p);
        }
    }
    let mut shown =
        Shown { quiet: a.quiet, log_path: a.log.clone(), log: None, bar: None, val_bar: None, start: 0, error: None };
    interrupt::install();
    let done = finetune::run(&a.to_run(), &mut |e: Event| shown.show(e));
    if let Some(b) = shown.bar.take() {
        b.finish_and_clear();
    }
    shown.flush();
    // A log that could not be written stopped the run: that is the error to report.
    if let Some(e) = shown.error.take() {
        return Err(e);
    }
    let done = done?;
    summary(&done, &a);
    Ok(())
}

/// What the terminal and the log show of a run.
struct Shown {
    quiet: bool,
    log_path: Option<PathBuf>,
    log: Option<StepLog>,
    bar: Option<indicatif::ProgressBar>,
    val_bar: Option<indicatif::ProgressBar>,
    start: usize,
    /// A failure of the log, which stops the run after its step.
    error: Option<Error>,
}

impl Shown {
    fn show(&mut self, e: Event) -> Control {
        match e {
            Event::Info(line) => self.say(&line),
            Event::Note(line) => self.note(&line),
            Event::Started { start, total } => {
                self.start = start;
                if let Some(p) = &self.log_path {
                    // A resumed run's log keeps the rows up to its checkpoint and goes on.
                    match StepLog::open(p, start) {
                        Ok(l) => self.log = Some(l),
                        Err(e) => self.error = Some(e),
                    }
                }
                let bar = progress::bar(total as u64, "finetune", self.quiet);
                bar.set_position(start as u64);
                self.bar = Some(bar);
            }
            Event::Validating { done, total } => {
                let bar = self.val_bar.get_or_insert_with(|| progress::bar(total as u64, "validate", self.quiet));
                bar.set_position(done as u64);
                if done == total {
                    bar.finish_and_clear();
                    self.val_bar = None;
                }
            }
            Event::Validated { step, epoch, before, epoch_end, scores } => {
                let when = match (before, epoch_end) {
                    (true, _) => "validation accuracy before:".to_string(),
                    (false, true) => format!("epoch {epoch} validation accuracy"),
                    (false, false) => format!("step {step} validation accuracy"),
                };
                self.say(&format!("{when} {:.4} (loss {:.4})", scores.accuracy, scores.loss));
                // A resumed run's validation before training repeats a row the log holds.
                if !(before && self.start > 0) {
                    let row =
                        json!({"step": step, "epoch": epoch, "val_loss": scores.loss, "val_accuracy": scores.accuracy});
                    self.write(row);
                }
            }
            Event::Step(s) => {
                if let Some(b) = &self.bar {
                    b.inc(1);
                    if let (Some(loss), Some(acc), Some(ips)) = (s.loss, s.accuracy, s.images_per_s) {
                        b.set_message(format!("loss {loss:.4} acc {acc:.3} {ips:.1} img/s"));
                    }
                }
                let row = json!({"step": s.step, "epoch": s.epoch, "loss": s.loss.map(f32_json), "accuracy": s.accuracy, "lr": f32_json(s.lr), "images_per_s": s.images_per_s, "skipped": s.skipped});
                self.write(row);
                if interrupt::requested() || self.error.is_some() {
                    // The rows of every step the stop's checkpoint holds are on disk with it.
                    self.flush();
                    return Control::Stop;
                }
            }
            Event::Checkpointing { .. } => self.flush(),
        }
        Control::Continue
    }

    fn say(&self, line: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| say!("{line}")),
            None => say!("{line}"),
        }
    }

    fn note(&self, line: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| note!("{line}")),
            None => note!("{line}"),
        }
    }

    fn write(&mut self, row: serde_json::Value) {
        if let Some(Err(e)) = self.log.as_mut().map(|l| l.write(row)) {
            self.error.get_or_insert(e);
        }
    }

    fn flush(&mut self) {
        if let Some(Err(e)) = self.log.as_mut().map(StepLog::flush) {
            self.error.get_or_insert(e);
        }
    }
}

/// The run's last lines.
fn summary(done: &Finished, a: &FinetuneArgs) {
    if let Some(s) = done.last {
        let steps = match (done.start, done.total - done.start) {
            (0, 1) => "1 step".to_string(),
            (0, n) => format!("{n} steps"),
            (s, _) => format!("steps {}-{} of a resumed run", s + 1, done.total),
        };
        say!(
            "{steps} ({} images) in {:.1} s of training, {:.1} img/s; last batch loss {:.4}, accuracy {:.3}",
            done.images,
            done.train_secs,
            done.images as f64 / done.train_secs,
            s.loss,
            s.correct as f64 / s.total as f64,
        );
    }
    if done.skipped > 0 {
        say!("{} step(s) skipped for non-finite values", done.skipped);
    }
    say!(
        "wrote {}: it reloads and gives the trained model's outputs (max difference {:.1e})",
        a.output.display(),
        done.max_diff
    );
}
