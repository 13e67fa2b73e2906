/* edgetune C API: load, run, finetune and export ONNX models.
 *
 * Generated from capi/src by cbindgen (capi/cbindgen.toml); do not edit by hand.
 *
 * Conventions: every function returns an et_status (ET_OK = 0) and on failure keeps a one-line
 * message for et_last_error() on the calling thread. Handles (et_model, et_session,
 * et_trainer, et_tensor) are opaque, made by the library and freed by the caller with the
 * matching et_*_free (NULL is accepted and does nothing). Buffers passed in stay the caller's
 * and are copied during the call. No panic crosses this boundary. */

#ifndef EDGETUNE_H
#define EDGETUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// What a call did. `ET_RUNTIME`, `ET_BAD_INPUT` and `ET_STOPPED` are the `edgetune` command's
// exit codes for the same failures; `ET_INVALID_ARGUMENT` is the C API's own (misuse of it).
typedef enum et_status {
  // Success.
  ET_OK = 0,
  // A failure while running that is not the caller's input: a non-finite loss or gradient,
  // an internal error (a panic inside the library, caught at the boundary).
  ET_RUNTIME = 1,
  // Bad input: a missing or invalid model file, an unsupported op, data or a shape that does
  // not fit the model, an option that names nothing, an I/O failure on a named path.
  ET_BAD_INPUT = 2,
  // A misuse of the API itself: a NULL pointer where a value is required, a string that is
  // not UTF-8, a shape whose element count overflows.
  ET_INVALID_ARGUMENT = 3,
  // A run stopped on request (a step callback returned non-zero).
  ET_STOPPED = 130,
} et_status;

// An ONNX model loaded from a file (its graph and the file's contents, to export from).
typedef struct et_model et_model;

// A model ready to run, with its own pool of worker threads and a plan per input shape.
// One session may run on several threads at once.
typedef struct et_session et_session;

// A float32 tensor the library returns (row-major, C order). Read it with
// `et_tensor_shape` and `et_tensor_data`; free it with `et_tensor_free`.
typedef struct et_tensor et_tensor;

// A trainer: the model (kept to export from), the trainer with its weights and optimizer
// state, its threads. Not for use from two threads at once.
typedef struct et_trainer et_trainer;

// How a trainer (or `et_finetune`) trains. Start from `et_train_config_default()` and change
// fields; the strings are read during the call that takes the struct and not kept.
typedef struct et_train_config {
  // "sgd", "adam" or "adamw" (default "adam"; Adam's betas 0.9, 0.999 and eps 1e-8 as torch).
  const char *optimizer;
  // Learning rate of `et_finetune` (default 1e-3); `et_trainer_step` takes its own per step.
  float lr;
  // SGD momentum (default 0.9).
  float momentum;
  // L2 penalty (SGD, Adam) or decoupled decay (AdamW), as torch.optim (default 0).
  float weight_decay;
  // Nesterov momentum for SGD (default false).
  bool nesterov;
  // The gradient transform before the optimizer: "znorm" (default), "none", "gc" (gradient
  // centralization) or "clip:MAXNORM" (clipping by global norm).
  const char *grad_norm;
  // ZNorm's epsilon (default 1e-8).
  float znorm_eps;
  // ZNorm only weights with more than one dim, biases and BatchNorm scales unchanged
  // (default false).
  bool znorm_matrices_only;
  // Which initializers train: "all" (default), "head" or a regex on initializer names.
  const char *train;
  // BatchNorm while training: "auto" (default: batch statistics where the layer's scale or
  // bias trains), "train" or "frozen".
  const char *bn;
  // Replace the classifier by a fresh one of this many classes, seeded by `seed` (default
  // 0: keep the model's).
  size_t num_classes;
  // Seed of a new classifier (and of `et_finetune`'s shuffling and augmentation); default 0.
  uint64_t seed;
  // Worker threads (default 0: one per core).
  size_t threads;
} et_train_config;

// Called after each step of `et_finetune` with `user` as given, the step (1-based) of
// `total`, its loss and the fraction of its batch predicted right (both NaN for a step
// skipped for non-finite values). Return 0 to go on, non-zero to stop: the run then ends with
// `ET_STOPPED` after that step, nothing written. The callback runs on the calling thread and
// must not unwind (no C++ exception or longjmp out of it).
typedef int (*et_step_callback)(void *user, size_t step, size_t total, float loss, float accuracy);

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// The message of the last call on this thread that failed, as one line naming the file, node
// or value at fault; "" when the last call that returns an `et_status` succeeded (the
// `et_*_free` functions leave it as it was).
//
// Ownership: the string belongs to the library and stays valid until the next `et_*` call on
// the same thread (copy it to keep it). Never NULL. Each thread has its own message.
const char *et_last_error(void);

// The library's version ("0.1.0"), a static string (never freed).
const char *et_version(void);

// Finetunes the model at `model_path` on the data `data` as `edgetune finetune` does, and
// writes the updated model to `output` (checked by reloading it; the model records its image
// size and preprocessing). `data` is `npz:FILE`, `idx:DIR`, `cifar:DIR` or `folder:DIR`.
// `steps` optimizer steps (0: one pass over the data) of `batch` images each, with the
// optimizer, learning rate (constant), gradient transform, classifier and seed of `config`;
// the data shuffled per epoch, no augmentation, no validation. `on_step` may be NULL.
//
// Ownership: every argument stays the caller's.
// Errors: `ET_BAD_INPUT` for the model, the data or the options (the message names the file
// or the value; `output` may not replace the input model); `ET_RUNTIME` for a non-finite loss
// or gradient; `ET_STOPPED` when `on_step` asked to stop; `ET_INVALID_ARGUMENT` for a NULL
// pointer (other than `on_step`, `user`) or a non-UTF-8 string.
//
// # Safety
// The strings are NULL or NUL-terminated; `config` is NULL (the defaults of
// `et_train_config_default`) or a valid config; `on_step` is
// NULL or a function of that type, to which `user` is passed through untouched.
enum et_status et_finetune(const char *model_path,
                           const char *data,
                           const char *output,
                           const struct et_train_config *config,
                           size_t steps,
                           size_t batch,
                           et_step_callback on_step,
                           void *user);

// Loads the ONNX model at `path` (external data beside it is mapped, not copied).
//
// Ownership: on success `*out` is a new model the caller frees with `et_model_free`; on
// failure `*out` is NULL.
// Errors: `ET_BAD_INPUT` for a missing or unreadable file, an invalid model or unsupported ops
// (the message names the file); `ET_INVALID_ARGUMENT` for a NULL pointer or non-UTF-8 path.
//
// # Safety
// `path` is NULL or a NUL-terminated string; `out` is NULL or writable.
enum et_status et_model_load(const char *path, struct et_model **out);

// Frees a model. NULL does nothing.
//
// # Safety
// `model` is NULL or a model from `et_model_load` not yet freed.
void et_model_free(struct et_model *model);

// The first input's declared shape: `*rank` dims written to `dims` (room for `capacity`),
// -1 where the model leaves a dim free (batch, often the image size).
//
// Errors: `ET_BAD_INPUT` when the model declares no shape; `ET_INVALID_ARGUMENT` for a NULL
// pointer or a `capacity` too small (then `*rank` still says how many dims are needed).
//
// # Safety
// `model` is NULL or a live model; `dims` is NULL or has room for `capacity` values; `rank`
// is NULL or writable.
enum et_status et_model_input_shape(const struct et_model *model,
                                    int64_t *dims,
                                    size_t capacity,
                                    size_t *rank);

// The first output's declared shape (for a classifier `[-1, classes]`), as
// `et_model_input_shape`.
//
// # Safety
// As `et_model_input_shape`.
enum et_status et_model_output_shape(const struct et_model *model,
                                     int64_t *dims,
                                     size_t capacity,
                                     size_t *rank);

// Loads the model at `path` and makes a session on `threads` worker threads (0: one per
// core).
//
// Ownership: on success `*out` is a new session the caller frees with `et_session_free`; on
// failure `*out` is NULL.
// Errors: as `et_model_load`; `ET_RUNTIME` when the threads cannot start.
//
// # Safety
// `path` is NULL or a NUL-terminated string; `out` is NULL or writable.
enum et_status et_session_new(const char *path, size_t threads, struct et_session **out);

// A session on a copy of `model`'s graph (the model stays the caller's).
//
// Ownership and errors: as `et_session_new`.
//
// # Safety
// `model` is NULL or a live model; `out` is NULL or writable.
enum et_status et_session_from_model(const struct et_model *model,
                                     size_t threads,
                                     struct et_session **out);

// Runs the model on one input batch: `rank` dims at `shape` (e.g. N, C, H, W), their product
// of floats at `x` (row-major). `*out` is the model's first output (for a classifier the
// logits or probabilities, `[N, classes]`). Batch and image size may change between calls
// (a plan per shape is made once and kept).
//
// Ownership: `x` and `shape` stay the caller's (copied); on success `*out` is a new tensor
// the caller frees with `et_tensor_free`; on failure `*out` is NULL.
// Errors: `ET_BAD_INPUT` when the shape does not fit the model or would not fit in memory;
// `ET_INVALID_ARGUMENT` for a NULL pointer or an element count that overflows.
//
// # Safety
// `session` is NULL or a live session; `shape` has `rank` values and `x` their product;
// `out` is NULL or writable.
enum et_status et_session_run(const struct et_session *session,
                              const float *x,
                              const size_t *shape,
                              size_t rank,
                              struct et_tensor **out);

// Frees a session (and stops its threads). NULL does nothing.
//
// # Safety
// `session` is NULL or a session from this library not yet freed, no longer running.
void et_session_free(struct et_session *session);

// The tensor's shape: `*rank` dims at `*dims`.
//
// Ownership: `*dims` points into the tensor and stays valid until `et_tensor_free(tensor)`.
// Errors: `ET_INVALID_ARGUMENT` when a pointer is NULL.
//
// # Safety
// `tensor` is NULL or a live tensor; `dims` and `rank` are NULL or writable.
enum et_status et_tensor_shape(const struct et_tensor *tensor, const size_t **dims, size_t *rank);

// The tensor's values: `*len` floats at `*data`, row-major.
//
// Ownership: `*data` points into the tensor and stays valid until `et_tensor_free(tensor)`.
// Errors: `ET_INVALID_ARGUMENT` when a pointer is NULL.
//
// # Safety
// `tensor` is NULL or a live tensor; `data` and `len` are NULL or writable.
enum et_status et_tensor_data(const struct et_tensor *tensor, const float **data, size_t *len);

// Frees a tensor. NULL does nothing.
//
// # Safety
// `tensor` is NULL or a tensor from this library not yet freed.
void et_tensor_free(struct et_tensor *tensor);

// The defaults of `edgetune finetune`: Adam, lr 1e-3, momentum 0.9, no weight decay, ZNorm
// (eps 1e-8, every tensor), train "all", BatchNorm "auto", the model's own classifier, seed 0,
// one thread per core. The strings are static (never freed).
struct et_train_config et_train_config_default(void);

// Loads the model at `model_path` and makes a trainer for it as `config` says (a new
// classifier first when `config->num_classes` > 0).
//
// Ownership: `config` stays the caller's (read during the call); on success `*out` is a new
// trainer the caller frees with `et_trainer_free`; on failure `*out` is NULL.
// Errors: `ET_BAD_INPUT` for the model (as `et_model_load`) or a configuration that cannot
// work (an unknown optimizer, a `train` selection naming nothing, ...); `ET_INVALID_ARGUMENT`
// for a NULL pointer or a non-UTF-8 string.
//
// # Safety
// `model_path` is NULL or a NUL-terminated string; `config` is NULL (the defaults of
// `et_train_config_default`) or a valid config whose strings are NULL or NUL-terminated; `out`
// is NULL or writable.
enum et_status et_trainer_new(const char *model_path,
                              const struct et_train_config *config,
                              struct et_trainer **out);

// A trainer on a copy of `model` (the model stays the caller's and unchanged), as
// `et_trainer_new`.
//
// # Safety
// `model` is NULL or a live model; otherwise as `et_trainer_new`.
enum et_status et_trainer_from_model(const struct et_model *model,
                                     const struct et_train_config *config,
                                     struct et_trainer **out);

// One optimizer step on a batch at learning rate `lr`: `rank` dims at `shape` (N, C, H, W),
// their product of floats at `x`, and `n` class labels (n = N, each in 0..classes). The loss is
// the mean softmax cross-entropy; `*loss` gets it and `*accuracy` the fraction of the batch
// predicted right, both measured before the step (either pointer may be NULL).
//
// Ownership: all buffers stay the caller's (read during the call).
// Errors: `ET_BAD_INPUT` when the batch or labels do not fit the model or `lr` is not a finite
// number > 0 (then nothing changed); `ET_RUNTIME` when the loss or a gradient is NaN or
// infinite (the step is not taken: weights and optimizer state stay as they were) or after an
// internal error (the trainer is then unusable); `ET_INVALID_ARGUMENT` for a NULL pointer.
//
// # Safety
// `trainer` is NULL or a live trainer not in use on another thread; `shape` has `rank`
// values, `x` their product, `labels` `n`; `loss` and `accuracy` are NULL or writable.
enum et_status et_trainer_step(struct et_trainer *trainer,
                               const float *x,
                               const size_t *shape,
                               size_t rank,
                               const int64_t *labels,
                               size_t n,
                               float lr,
                               float *loss,
                               float *accuracy);

// The model's first output with the trainer's current weights (BatchNorm on its running
// statistics, as in inference), for a batch as `et_trainer_step` takes it.
//
// Ownership: on success `*out` is a new tensor the caller frees with `et_tensor_free`; on
// failure `*out` is NULL.
// Errors: as `et_session_run`.
//
// # Safety
// As `et_trainer_step` for `trainer`, `x` and `shape`; `out` is NULL or writable.
enum et_status et_trainer_logits(struct et_trainer *trainer,
                                 const float *x,
                                 const size_t *shape,
                                 size_t rank,
                                 struct et_tensor **out);

// Writes the model with the trainer's weights and BatchNorm statistics to `path` (atomically:
// a failure leaves no partial file; external data goes beside it as `<path>.data`). The rest of
// the file (graph, metadata, opset) stays as the loaded model had it, the new classifier's
// output shape included; onnxruntime and tract load the result.
//
// Errors: `ET_BAD_INPUT` when the file cannot be written (the message names it);
// `ET_INVALID_ARGUMENT` for a NULL pointer or a non-UTF-8 path.
//
// # Safety
// `trainer` is NULL or a live trainer; `path` is NULL or a NUL-terminated string.
enum et_status et_trainer_export(const struct et_trainer *trainer, const char *path);

// Frees a trainer. NULL does nothing.
//
// # Safety
// `trainer` is NULL or a trainer from this library not yet freed.
void et_trainer_free(struct et_trainer *trainer);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* EDGETUNE_H */
