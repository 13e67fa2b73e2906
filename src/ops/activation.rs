//! The smooth and piecewise-linear activations of the MobileNet / EfficientNet / RegNet families:
//! Sigmoid, Tanh, HardSigmoid, HardSwish. One forward (an element-wise map) and one backward
//! (dy times the derivative, read from the saved input or output) shared by all four; SiLU
//! exports as `x * Sigmoid(x)` and runs as those two nodes.
//!
//! Derivatives, as PyTorch's backward kernels compute them (boundaries included):
//! - Sigmoid: `y (1 − y)` from the output (sigmoid_backward);
//! - Tanh: `1 − y²` from the output (tanh_backward);
//! - HardSigmoid(α, β) = `max(0, min(1, αx + β))`: α where `0 < αx + β < 1`, else 0
//!   (hardsigmoid_backward: `-3 < x < 3` for α = 1/6, β = 1/2);
//! - HardSwish = `x · max(0, min(1, x/6 + 1/2))`: 0 for `x < −3`, `x/3 + 1/2` for `−3 ≤ x ≤ 3`,
//!   1 above (hardswish_backward).

use super::{BuildCtx, Built, Op, Record, Saves};
use crate::kernels::{par_chunks_map, par_zip_map};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Sigmoid,
    Tanh,
    HardSigmoid { alpha: f32, beta: f32 },
    HardSwish,
}

pub fn build_sigmoid(_: &BuildCtx) -> Result<Built, String> {
    Built::new(Activation::Sigmoid, [0])
}

pub fn build_tanh(_: &BuildCtx) -> Result<Built, String> {
    Built::new(Activation::Tanh, [0])
}

/// Defaults α = 0.2, β = 0.5 (the ONNX spec); PyTorch exports α = 1/6.
pub fn build_hard_sigmoid(ctx: &BuildCtx) -> Result<Built, String> {
    let (alpha, beta) = (ctx.attrs().float("alpha", 0.2)?, ctx.attrs().float("beta", 0.5)?);
    Built::new(Activation::HardSigmoid { alpha, beta }, [0])
}

pub fn build_hard_swish(_: &BuildCtx) -> Result<Built, String> {
    Built::new(Activation::HardSwish, [0])
}

impl Activation {
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
            Activation::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Activation::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        }
    }

    /// Whether the derivative is read from the output (else from the input).
    fn reads_output(self) -> bool {
        matches!(self, Activation::Sigmoid | Activation::Tanh)
    }

    /// The derivative at input `x` whose output is `y` (only the one `reads_output` says is read).
    fn derivative(self, x_or_y: f32) -> f32 {
        match self {
            Activation::Sigmoid => x_or_y * (1.0 - x_or_y),
            Activation::Tanh => 1.0 - x_or_y * x_or_y,
            Activation::HardSigmoid { alpha, beta } => {
                let v = alpha * x_or_y + beta;
                if v > 0.0 && v < 1.0 {
                    alpha
                } else {
                    0.0
                }
            }
            Activation::HardSwish => match x_or_y {
                x if x < -3.0 => 0.0,
                x if x <= 3.0 => x / 3.0 + 0.5,
                _ => 1.0,
            },
        }
    }
}

impl Op for Activation {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(inputs[0].to_vec())
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let f = *self;
        let out = par_chunks_map(inputs[0].data(), |x, y| y.iter_mut().zip(x).for_each(|(y, &x)| *y = f.apply(x)));
        Tensor::from_vec(out_shape, out)
    }

    fn saves(&self) -> Saves {
        if self.reads_output() {
            Saves::output()
        } else {
            Saves::inputs(&[0])
        }
    }

    fn backward(&self, rec: &Record, dy: &Tensor, _need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        let saved = if self.reads_output() { rec.output() } else { rec.input(0) };
        let f = *self;
        let dx = par_zip_map(dy.data(), saved.data(), |g, v| g * f.derivative(v));
        Ok(vec![Some(Tensor::from_vec(saved.shape(), dx))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values at and around the kinks, from the definitions in the module docs.
    #[test]
    fn piecewise_forms_and_their_boundaries() {
        let hs = Activation::HardSwish;
        assert_eq!(hs.apply(-3.0), 0.0);
        assert_eq!(hs.apply(3.0), 3.0);
        assert_eq!(hs.apply(1.5), 1.5 * 0.75);
        assert_eq!(
            [hs.derivative(-3.1), hs.derivative(-3.0), hs.derivative(3.0), hs.derivative(3.1)],
            [0.0, -0.5, 1.5, 1.0]
        );
        let hsig = Activation::HardSigmoid { alpha: 1.0 / 6.0, beta: 0.5 };
        assert_eq!([hsig.apply(-4.0), hsig.apply(0.0), hsig.apply(4.0)], [0.0, 0.5, 1.0]);
        assert_eq!([hsig.derivative(-3.0), hsig.derivative(0.0), hsig.derivative(3.0)], [0.0, 1.0 / 6.0, 0.0]);
        // Sigmoid saturates to exactly 0 and 1 without NaN (exp overflows to inf for -x = 100).
        let s = Activation::Sigmoid;
        assert_eq!([s.apply(-100.0), s.apply(100.0), s.apply(0.0)], [0.0, 1.0, 0.5]);
    }
}
