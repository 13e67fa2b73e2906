//! Training from C: a configuration struct with documented defaults, a trainer that takes one
//! optimizer step per call, and its export.

use std::ffi::c_char;
use std::path::Path;

use edgetune::autodiff::BnMode;
use edgetune::onnx::Model;
use edgetune::train::finetune::Finetune;
use edgetune::train::optim::{OptimizerName, Rule};
use edgetune::train::trainer::{TrainConfig, Trainer};
use edgetune::train::transform::{GradNorm, ZnormScope};
use edgetune::values;

use crate::model::{et_model, load};
use crate::tensor::{et_tensor, tensor_arg};
use crate::{arg_mut, arg_ref, arg_slice, bad_input, c_str, et_status, free_box, guard, out_slot, Outcome};

/// How a trainer (or `et_finetune`) trains. Start from `et_train_config_default()` and change
/// fields; the strings are read during the call that takes the struct and not kept.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct et_train_config {
    /// "sgd", "adam" or "adamw" (default "adam"; Adam's betas 0.9, 0.999 and eps 1e-8 as torch).
    pub optimizer: *const c_char,
    /// Learning rate of `et_finetune` (default 1e-3); `et_trainer_step` takes its own per step.
    pub lr: f32,
    /// SGD momentum (default 0.9).
    pub momentum: f32,
    /// L2 penalty (SGD, Adam) or decoupled decay (AdamW), as torch.optim (default 0).
    pub weight_decay: f32,
    /// Nesterov momentum for SGD (default false).
    pub nesterov: bool,
    /// The gradient transform before the optimizer: "znorm" (default), "none", "gc" (gradient
    /// centralization) or "clip:MAXNORM" (clipping by global norm).
    pub grad_norm: *const c_char,
    /// ZNorm's epsilon (default 1e-8).
    pub znorm_eps: f32,
    /// ZNorm only weights with more than one dim, biases and BatchNorm scales unchanged
    /// (default false).
    pub znorm_matrices_only: bool,
    /// Which initializers train: "all" (default), "head" or a regex on initializer names.
    pub train: *const c_char,
    /// BatchNorm while training: "auto" (default: batch statistics where the layer's scale or
    /// bias trains), "train" or "frozen".
    pub bn: *const c_char,
    /// Replace the classifier by a fresh one of this many classes, seeded by `seed` (default
    /// 0: keep the model's).
    pub num_classes: usize,
    /// Seed of a new classifier (and of `et_finetune`'s shuffling and augmentation); default 0.
    pub seed: u64,
    /// Worker threads (default 0: one per core).
    pub threads: usize,
}

/// The defaults of `edgetune finetune`: Adam, lr 1e-3, momentum 0.9, no weight decay, ZNorm
/// (eps 1e-8, every tensor), train "all", BatchNorm "auto", the model's own classifier, seed 0,
/// one thread per core. The strings are static (never freed).
#[no_mangle]
pub extern "C" fn et_train_config_default() -> et_train_config {
    // The library's defaults (`Finetune::new`, those of the command). The names are written out
    // as C strings, which must be static; a test checks that they name the library's defaults.
    let d = Finetune::new("", "", "");
    let (znorm_eps, scope) = d.grad_norm.znorm_options();
    et_train_config {
        optimizer: c"adam".as_ptr(),
        lr: d.lr,
        momentum: d.momentum,
        weight_decay: d.weight_decay,
        nesterov: d.nesterov,
        grad_norm: c"znorm".as_ptr(),
        znorm_eps,
        znorm_matrices_only: scope == ZnormScope::Matrices,
        train: c"all".as_ptr(),
        bn: c"auto".as_ptr(),
        num_classes: 0,
        seed: d.seed,
        threads: d.threads,
    }
}

/// A configuration read from C: every string parsed, the numbers checked.
pub(crate) struct Config {
    pub optimizer: OptimizerName,
    pub grad_norm: GradNorm,
    pub train: String,
    pub bn: BnMode,
    pub c: et_train_config,
}

fn parse<T: std::str::FromStr<Err = String>>(p: *const c_char, field: &str) -> Outcome<T> {
    let text = unsafe { c_str(p, &format!("config.{field}")) }?;
    text.parse().map_err(|e| bad_input(format!("config.{field}: {e}")))
}

/// `v` checked by the command line's parser of the same flag (`edgetune::values`: `--lr` > 0,
/// `--momentum` in [0, 1), ...), so that C has the same ranges and messages.
pub(crate) fn in_range(v: f32, field: &str, parse: fn(&str) -> Result<f32, String>) -> Outcome {
    parse(&v.to_string()).map(drop).map_err(|e| bad_input(format!("{field}: {e}")))
}

impl Config {
    /// The configuration at `cfg`, or the defaults where `cfg` is NULL.
    pub fn read(cfg: *const et_train_config) -> Outcome<Config> {
        // SAFETY: a non-NULL `cfg` points to a valid config (header contract).
        let c = unsafe { cfg.as_ref() }.copied().unwrap_or_else(|| et_train_config_default());
        let scope = if c.znorm_matrices_only { ZnormScope::Matrices } else { ZnormScope::All };
        let grad_norm = parse::<GradNorm>(c.grad_norm, "grad_norm")?.with_znorm(Some(c.znorm_eps), Some(scope));
        in_range(c.lr, "config.lr", values::positive)?;
        in_range(c.momentum, "config.momentum", values::fraction)?;
        in_range(c.weight_decay, "config.weight_decay", values::non_negative)?;
        in_range(c.znorm_eps, "config.znorm_eps", values::positive)?;
        if c.num_classes == 1 {
            return Err(bad_input(
                "config.num_classes: 1 (a new classifier needs at least 2 classes; 0 keeps the model's)",
            ));
        }
        Ok(Config {
            optimizer: parse(c.optimizer, "optimizer")?,
            grad_norm,
            train: unsafe { c_str(c.train, "config.train") }?.to_string(),
            bn: parse(c.bn, "bn")?,
            c,
        })
    }

    pub fn num_classes(&self) -> Option<usize> {
        (self.c.num_classes > 0).then_some(self.c.num_classes)
    }
}

/// A trainer: the model (kept to export from), the trainer with its weights and optimizer
/// state, its threads. Not for use from two threads at once.
pub struct et_trainer {
    model: Model,
    trainer: Trainer,
    pool: rayon::ThreadPool,
    /// Set while a step runs: still set after a panic in it (the weights may be half updated),
    /// and then the trainer refuses further use.
    broken: bool,
}

impl et_trainer {
    fn usable(&self) -> Outcome {
        if self.broken {
            return Err(crate::Failure {
                status: et_status::ET_RUNTIME,
                message: "the trainer failed inside a step (internal error) and cannot be used further; free it".into(),
            });
        }
        Ok(())
    }
}

fn new_trainer(mut model: Model, cfg: *const et_train_config) -> Outcome<et_trainer> {
    let cfg = Config::read(cfg)?;
    if let Some(k) = cfg.num_classes() {
        edgetune::train::head::replace_head(&mut model, k, cfg.c.seed)?;
    }
    let c = &cfg.c;
    let config = TrainConfig {
        train: cfg.train.clone(),
        bn: cfg.bn,
        norm: cfg.grad_norm,
        rule: Rule::new(cfg.optimizer, c.lr, c.momentum, c.weight_decay, c.nesterov),
    };
    let trainer = Trainer::new(model.graph.clone(), config)?;
    let pool = edgetune::exec::thread_pool(c.threads)?;
    Ok(et_trainer { model, trainer, pool, broken: false })
}

/// Loads the model at `model_path` and makes a trainer for it as `config` says (a new
/// classifier first when `config->num_classes` > 0).
///
/// Ownership: `config` stays the caller's (read during the call); on success `*out` is a new
/// trainer the caller frees with `et_trainer_free`; on failure `*out` is NULL.
/// Errors: `ET_BAD_INPUT` for the model (as `et_model_load`) or a configuration that cannot
/// work (an unknown optimizer, a `train` selection naming nothing, ...); `ET_INVALID_ARGUMENT`
/// for a NULL pointer or a non-UTF-8 string.
///
/// # Safety
/// `model_path` is NULL or a NUL-terminated string; `config` is NULL (the defaults of
/// `et_train_config_default`) or a valid config whose strings are NULL or NUL-terminated; `out`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn et_trainer_new(
    model_path: *const c_char,
    config: *const et_train_config,
    out: *mut *mut et_trainer,
) -> et_status {
    guard(|| {
        let out = unsafe { out_slot(out, "out") }?;
        *out = Box::into_raw(Box::new(new_trainer(load(model_path)?, config)?));
        Ok(())
    })
}

/// A trainer on a copy of `model` (the model stays the caller's and unchanged), as
/// `et_trainer_new`.
///
/// # Safety
/// `model` is NULL or a live model; otherwise as `et_trainer_new`.
#[no_mangle]
pub unsafe extern "C" fn et_trainer_from_model(
    model: *const et_model,
    config: *const et_train_config,
    out: *mut *mut et_trainer,
) -> et_status {
    guard(|| {
        let out = unsafe { out_slot(out, "out") }?;
        let m = unsafe { arg_ref(model, "model") }?;
        let copy = Model { path: m.model.path.clone(), graph: m.model.graph.clone(), proto: m.model.proto.clone() };
        *out = Box::into_raw(Box::new(new_trainer(copy, config)?));
        Ok(())
    })
}

/// One optimizer step on a batch at learning rate `lr`: `rank` dims at `shape` (N, C, H, W),
/// their product of floats at `x`, and `n` class labels (n = N, each in 0..classes). The loss is
/// the mean softmax cross-entropy; `*loss` gets it and `*accuracy` the fraction of the batch
/// predicted right, both measured before the step (either pointer may be NULL).
///
/// Ownership: all buffers stay the caller's (read during the call).
/// Errors: `ET_BAD_INPUT` when the batch or labels do not fit the model or `lr` is not a finite
/// number > 0 (then nothing changed); `ET_RUNTIME` when the loss or a gradient is NaN or
/// infinite (the step is not taken: weights and optimizer state stay as they were) or after an
/// internal error (the trainer is then unusable); `ET_INVALID_ARGUMENT` for a NULL pointer.
///
/// # Safety
/// `trainer` is NULL or a live trainer not in use on another thread; `shape` has `rank`
/// values, `x` their product, `labels` `n`; `loss` and `accuracy` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn et_trainer_step(
    trainer: *mut et_trainer,
    x: *const f32,
    shape: *const usize,
    rank: usize,
    labels: *const i64,
    n: usize,
    lr: f32,
    loss: *mut f32,
    accuracy: *mut f32,
) -> et_status {
    guard(|| {
        let t = unsafe { arg_mut(trainer, "trainer") }?;
        t.usable()?;
        let x = unsafe { tensor_arg(x, shape, rank, "x") }?;
        if labels.is_null() {
            return Err(crate::invalid("labels: NULL pointer"));
        }
        let labels = unsafe { arg_slice(labels, n, "labels") }?;
        in_range(lr, "lr", values::positive)?;
        t.broken = true;
        let stats = t.pool.install(|| t.trainer.step(x, labels, lr));
        t.broken = false;
        let stats = stats?;
        if let Some(loss) = unsafe { loss.as_mut() } {
            *loss = stats.loss;
        }
        if let Some(accuracy) = unsafe { accuracy.as_mut() } {
            *accuracy = stats.correct as f32 / stats.total.max(1) as f32;
        }
        Ok(())
    })
}

/// The model's first output with the trainer's current weights (BatchNorm on its running
/// statistics, as in inference), for a batch as `et_trainer_step` takes it.
///
/// Ownership: on success `*out` is a new tensor the caller frees with `et_tensor_free`; on
/// failure `*out` is NULL.
/// Errors: as `et_session_run`.
///
/// # Safety
/// As `et_trainer_step` for `trainer`, `x` and `shape`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn et_trainer_logits(
    trainer: *mut et_trainer,
    x: *const f32,
    shape: *const usize,
    rank: usize,
    out: *mut *mut et_tensor,
) -> et_status {
    guard(|| {
        let out = unsafe { out_slot(out, "out") }?;
        let t = unsafe { arg_mut(trainer, "trainer") }?;
        t.usable()?;
        let x = unsafe { tensor_arg(x, shape, rank, "x") }?;
        let logits = t.pool.install(|| t.trainer.logits(x))?;
        *out = et_tensor::into_raw(logits);
        Ok(())
    })
}

/// Writes the model with the trainer's weights and BatchNorm statistics to `path` (atomically:
/// a failure leaves no partial file; external data goes beside it as `<path>.data`). The rest of
/// the file (graph, metadata, opset) stays as the loaded model had it, the new classifier's
/// output shape included; onnxruntime and tract load the result.
///
/// Errors: `ET_BAD_INPUT` when the file cannot be written (the message names it);
/// `ET_INVALID_ARGUMENT` for a NULL pointer or a non-UTF-8 path.
///
/// # Safety
/// `trainer` is NULL or a live trainer; `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn et_trainer_export(trainer: *const et_trainer, path: *const c_char) -> et_status {
    guard(|| {
        let t = unsafe { arg_ref(trainer, "trainer") }?;
        t.usable()?;
        let path = unsafe { c_str(path, "output path") }?;
        Ok(t.trainer.export(&t.model, Path::new(path))?)
    })
}

/// Frees a trainer. NULL does nothing.
///
/// # Safety
/// `trainer` is NULL or a trainer from this library not yet freed.
#[no_mangle]
pub unsafe extern "C" fn et_trainer_free(trainer: *mut et_trainer) {
    unsafe { free_box(trainer) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_the_library_default_run() {
        let (c, d) = (Config::read(std::ptr::null()).unwrap(), Finetune::new("", "", ""));
        assert_eq!(
            (c.optimizer, c.grad_norm, c.bn, c.train.as_str()),
            (d.optimizer, d.grad_norm, d.bn, d.train.as_str())
        );
        assert_eq!(
            (c.c.lr, c.c.momentum, c.c.weight_decay, c.c.nesterov),
            (d.lr, d.momentum, d.weight_decay, d.nesterov)
        );
        assert_eq!((c.num_classes(), c.c.seed, c.c.threads), (d.num_classes, d.seed, d.threads));
    }
}
