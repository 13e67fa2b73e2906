//! # edgetune
//!
//! Finetune an ONNX image classifier on the device, with no Python: edgetune imports the
//! `.onnx` file into its own graph, runs it with its own CPU kernels, differentiates it with its
//! own reverse-mode pass, normalizes each gradient with ZNorm (Yun 2024) before the optimizer
//! step, and writes the updated weights back into the same ONNX model, which onnxruntime and
//! tract then load from its path.
//!
//! With `default-features = false` the library pulls no command-line dependencies (clap,
//! indicatif, plotters) and sets no global allocator; the `cli` feature (on by default) builds
//! the `edgetune` binary, `cuda` the optional GPU path.
//!
//! ## Run a model
//!
//! ```
//! use edgetune::{onnx, Session, Tensor};
//!
//! let model = onnx::load("models/pretrained/resnet20_fashion.onnx".as_ref())?;
//! let session = Session::new(model.graph, 1)?; // threads (0: one per core)
//! let x = Tensor::zeros([2, 3, 32, 32]); // batch and spatial size are free
//! let logits = &session.run(vec![x])?[0];
//! assert_eq!(logits.shape(), [2, 10]);
//! # Ok::<(), edgetune::Error>(())
//! ```
//!
//! ## Gradients of a batch
//!
//! [`train::gradients::gradients`]: the loss and every trainable initializer's gradient, by name.
//!
//! ## Finetune with ZNorm, resumable, and export
//!
//! [`train::finetune::run`] is the whole `edgetune finetune`: data, validation, checkpoints,
//! the written model (checked by reloading it). Events go to an observer (a closure here); it
//! can stop the run, which then leaves a checkpoint that `resume` continues.
//!
//! ```
//! use edgetune::train::finetune::{self, Control, Event, Finetune};
//! use edgetune::train::transform::GradNorm;
//!
//! let dir = tempfile::tempdir()?;
//! let out = dir.path().join("digits.onnx");
//! let mut run = Finetune::new("models/pretrained/resnet20_fashion.onnx", "idx:models/data/mnist-slice", &out);
//! run.grad_norm = GradNorm::ZNorm { eps: 1e-8, matrices_only: false };
//! run.batch = 16;
//! run.steps = Some(4);
//! run.checkpoint = Some(dir.path().join("ck"));
//! // Stop after the second step: a checkpoint of 2 steps is left.
//! let stopped = finetune::run(&run, &mut |e: Event| match e {
//!     Event::Step(s) if s.step == 2 => Control::Stop,
//!     _ => Control::Continue,
//! });
//! assert!(matches!(stopped, Err(edgetune::Error::Stopped(_))));
//! // The same run, resumed, goes on from step 2 and writes the model.
//! run.resume = true;
//! let done = finetune::run(&run, &mut |_: Event| Control::Continue)?;
//! assert_eq!((done.start, done.total), (2, 4));
//! let tuned = edgetune::onnx::load(&out)?;
//! assert_eq!(tuned.metadata("input_size"), Some("32x32"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## A training loop of your own
//!
//! [`train::trainer::Trainer`] takes one optimizer step per call; [`Trainer::export`] writes
//! the model with the trained weights.
//!
//! ```
//! use edgetune::train::optim::{OptimizerName, Rule};
//! use edgetune::train::trainer::{TrainConfig, Trainer};
//! use edgetune::train::transform::GradNorm;
//! use edgetune::{autodiff::BnMode, onnx, Tensor};
//!
//! let model = onnx::load("models/pretrained/resnet20_fashion.onnx".as_ref())?;
//! let config = TrainConfig {
//!     train: "all".into(),
//!     bn: BnMode::Auto,
//!     norm: GradNorm::ZNorm { eps: 1e-8, matrices_only: false },
//!     rule: Rule::new(OptimizerName::Adam, 1e-3, 0.9, 0.0, false),
//! };
//! let mut trainer = Trainer::new(model.graph.clone(), config)?;
//! let x = Tensor::from_vec([4, 3, 32, 32], edgetune::tensor::lcg_values(4 * 3 * 32 * 32, 7));
//! for _ in 0..2 {
//!     let stats = trainer.step(x.clone(), &[0, 1, 2, 3], 1e-3)?;
//!     assert!(stats.loss.is_finite());
//! }
//! let out = tempfile::tempdir()?.keep().join("tuned.onnx");
//! trainer.export(&model, &out)?;
//! assert!(onnx::load(&out).is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Trainer::export`]: train::trainer::Trainer::export

pub(crate) mod atomic;
pub(crate) mod attrs;
pub mod autodiff;
mod choices;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
pub mod data;
pub mod device;
pub mod error;
pub mod exec;
pub(crate) mod fold;
#[cfg(feature = "cuda")]
#[doc(hidden)]
pub mod gpu;
pub mod gradflow;
pub mod graph;
pub mod inspect;
#[doc(hidden)]
pub mod kernels;
pub mod memory;
pub mod onnx;
#[doc(hidden)]
pub mod ops;
#[cfg(feature = "cli")]
pub(crate) mod plot;
pub mod tensor;
// Timing for the benchmarks of the CLI (`edgetune bench`) and the GPU's.
#[cfg(any(feature = "cli", feature = "cuda"))]
pub(crate) mod timing;
pub mod train;
pub mod values;

pub use error::{Error, Result};
pub use exec::Session;
pub use graph::Graph;
pub use tensor::Tensor;
