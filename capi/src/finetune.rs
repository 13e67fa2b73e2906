//! The whole `edgetune finetune` as one call (`train::finetune::run`), a C callback per step.

use std::ffi::{c_char, c_int, c_void};

use edgetune::train::finetune::{self, Control, Event, Finetune};
use edgetune::Error;

use crate::trainer::{et_train_config, Config};
use crate::{bad_input, c_str, et_status, guard, Failure};

/// Called after each step of `et_finetune` with `user` as given, the step (1-based) of
/// `total`, its loss and the fraction of its batch predicted right (both NaN for a step
/// skipped for non-finite values). Return 0 to go on, non-zero to stop: the run then ends with
/// `ET_STOPPED` after that step, nothing written. The callback runs on the calling thread and
/// must not unwind (no C++ exception or longjmp out of it).
pub type et_step_callback =
    Option<unsafe extern "C" fn(user: *mut c_void, step: usize, total: usize, loss: f32, accuracy: f32) -> c_int>;

/// Finetunes the model at `model_path` on the data `data` as `edgetune finetune` does, and
/// writes the updated model to `output` (checked by reloading it; the model records its image
/// size and preprocessing). `data` is `npz:FILE`, `idx:DIR`, `cifar:DIR` or `folder:DIR`.
/// `steps` optimizer steps (0: one pass over the data) of `batch` images each, with the
/// optimizer, learning rate (constant), gradient transform, classifier and seed of `config`;
/// the data shuffled per epoch, no augmentation, no validation. `on_step` may be NULL.
///
/// Ownership: every argument stays the caller's.
/// Errors: `ET_BAD_INPUT` for the model, the data or the options (the message names the file
/// or the value; `output` may not replace the input model); `ET_RUNTIME` for a non-finite loss
/// or gradient; `ET_STOPPED` when `on_step` asked to stop; `ET_INVALID_ARGUMENT` for a NULL
/// pointer (other than `on_step`, `user`) or a non-UTF-8 string.
///
/// # Safety
/// The strings are NULL or NUL-terminated; `config` is NULL (the defaults of
/// `et_train_config_default`) or a valid config; `on_step` is
/// NULL or a function of that type, to which `user` is passed through untouched.
#[no_mangle]
pub unsafe extern "C" fn et_finetune(
    model_path: *const c_char,
    data: *const c_char,
    output: *const c_char,
    config: *const et_train_config,
    steps: usize,
    batch: usize,
    on_step: et_step_callback,
    user: *mut c_void,
) -> et_status {
    guard(|| {
        let model = unsafe { c_str(model_path, "model path") }?;
        let data = unsafe { c_str(data, "data") }?;
        let output = unsafe { c_str(output, "output path") }?;
        let cfg = Config::read(config)?;
        if batch == 0 {
            return Err(bad_input("batch: 0 (at least 1 image per step)"));
        }
        let mut run = Finetune::new(model, data, output);
        run.steps = (steps > 0).then_some(steps);
        run.batch = batch;
        run.optimizer = cfg.optimizer;
        run.lr = cfg.c.lr;
        run.momentum = cfg.c.momentum;
        run.weight_decay = cfg.c.weight_decay;
        run.nesterov = cfg.c.nesterov;
        run.grad_norm = cfg.grad_norm;
        run.train = cfg.train.clone();
        run.bn = cfg.bn;
        run.num_classes = cfg.num_classes();
        run.seed = cfg.c.seed;
        run.threads = cfg.c.threads;
        let mut stopped_at = None;
        let result = finetune::run(&run, &mut |e: Event| match (e, on_step) {
            (Event::Step(s), Some(f)) => {
                let (loss, accuracy) = (s.loss.unwrap_or(f32::NAN), s.accuracy.map_or(f32::NAN, |a| a as f32));
                // SAFETY: a function of this signature (header contract) that does not unwind.
                match unsafe { f(user, s.step, s.total, loss, accuracy) } {
                    0 => Control::Continue,
                    _ => {
                        stopped_at = Some((s.step, s.total));
                        Control::Stop
                    }
                }
            }
            _ => Control::Continue,
        });
        match (result, stopped_at) {
            // The library's message speaks of the command's checkpoint flags, which C has not.
            (Err(Error::Stopped(_)), Some((step, total))) => Err(Failure {
                status: et_status::ET_STOPPED,
                message: format!("stopped by the step callback after step {step} of {total}; nothing written"),
            }),
            (result, _) => Ok(result.map(drop)?),
        }
    })
}
