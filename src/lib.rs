//! # edgetune
//!
//! A CPU-first runtime that imports pretrained ResNet ONNX graphs into its own graph and runs
//! them with its own kernels (SIMD through `wide`, GEMM through `matrixmultiply`, threads through
//! `rayon`).
//!
//! ```no_run
//! use edgetune::{onnx, Session, Tensor};
//!
//! let model = onnx::load("resnet18.onnx".as_ref())?;
//! let session = Session::new(model.graph, 0)?; // 0 threads: one per core
//! let x = Tensor::zeros([1, 3, 64, 64]); // batch and spatial size are free
//! let logits = &session.run(vec![x])?[0];
//! println!("{:?}", logits.shape());
//! # Ok::<(), edgetune::Error>(())
//! ```

pub mod atomic;
pub mod attrs;
pub mod autodiff;
mod choices;
#[cfg(feature = "cli")]
pub mod cli;
pub mod data;
pub mod device;
pub mod error;
pub mod exec;
pub mod fold;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod gradflow;
pub mod graph;
pub mod inspect;
pub mod kernels;
pub mod memory;
pub mod onnx;
pub mod ops;
#[cfg(feature = "cli")]
pub mod plot;
pub mod tensor;
pub mod timing;
pub mod train;

pub use error::{Error, Result};
pub use exec::Session;
pub use graph::Graph;
pub use tensor::Tensor;
