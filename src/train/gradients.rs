//! One forward and backward pass on a labelled batch: the loss and the gradient of every
//! trainable initializer, by ONNX name (what `edgetune grad` writes).
//!
//! ```
//! use edgetune::{onnx, Tensor};
//! use edgetune::autodiff::BnMode;
//! use edgetune::device::Device;
//!
//! let model = onnx::load("models/tiny/tiny_op21_resblock.onnx".as_ref())?;
//! let x = Tensor::from_vec([2, 3, 16, 16], edgetune::tensor::lcg_values(2 * 3 * 16 * 16, 1));
//! let g = edgetune::train::gradients::gradients(&model.graph, x, &[3, 7], "all", BnMode::Auto, Device::Cpu)?;
//! assert!(g.loss > 0.0 && !g.grads.is_empty());
//! let (name, grad) = &g.grads[0];
//! println!("{name}: {:?}", grad.shape());
//! # Ok::<(), edgetune::Error>(())
//! ```

use super::{loss, select};
use crate::autodiff::{BnMode, GradPlan};
use crate::device::Device;
use crate::error::Result;
use crate::graph::Graph;
use crate::tensor::Tensor;

/// The loss (mean softmax cross-entropy) and each trainable initializer's gradient.
pub struct Gradients {
    pub loss: f32,
    /// (ONNX initializer name, gradient of the same shape), in initializer order.
    pub grads: Vec<(String, Tensor)>,
}

/// The gradients of the initializers `train` selects (`all`, `head` or a regex on names) on
/// the batch `x` with `labels`, BatchNorm as `bn` says, on `device` (CPU work runs in the
/// current rayon pool).
pub fn gradients(
    graph: &Graph,
    x: Tensor,
    labels: &[i64],
    train: &str,
    bn: BnMode,
    device: Device,
) -> Result<Gradients> {
    crate::device::check(device)?;
    let trainable = select::trainable(graph, train)?;
    let (loss, grads) = match device {
        Device::Cpu => {
            let plan = GradPlan::new(graph, &[x.shape().to_vec()], &trainable, bn)?;
            plan.check_memory()?;
            let tape = plan.forward(vec![x], &[]);
            let (loss, dlogits) = loss::softmax_cross_entropy(&tape.logits, labels)?;
            (loss, plan.backward(tape, dlogits)?)
        }
        Device::Cuda => crate::device::gradients_cuda(graph, x, labels, &trainable, bn)?,
    };
    let names = graph.initializers.iter().zip(&trainable).filter(|(_, &t)| t).map(|(i, _)| i.name.clone());
    Ok(Gradients { loss, grads: names.zip(grads).collect() })
}
