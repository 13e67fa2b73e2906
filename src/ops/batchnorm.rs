//! BatchNormalization in inference form: `y = (x - mean) / sqrt(var + eps) * scale + bias`,
//! per channel (axis 1), as one fused multiply-add per element.

use super::{BuildCtx, Built, Op};
use crate::kernels::simd;
use crate::tensor::Tensor;
use rayon::prelude::*;

#[derive(Clone, Debug)]
pub struct BatchNorm {
    pub epsilon: f32,
    /// ONNX momentum (weight of the old running value); PyTorch's 0.1 exports as 0.9.
    pub momentum: f32,
}

pub fn build(ctx: &BuildCtx) -> Result<Built, String> {
    let epsilon = ctx.attrs().float("epsilon", 1e-5)?;
    let momentum = ctx.attrs().float("momentum", 0.9)?;
    Built::new(BatchNorm { epsilon, momentum }, [0, 1, 2, 3, 4])
}

impl BatchNorm {
    /// Per-channel (scale, shift) that the inference form applies.
    pub fn folded(
        &self,
        gamma: &[f32],
        beta: &[f32],
        mean: &[f32],
        var: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> = gamma
            .iter()
            .zip(var)
            .map(|(g, v)| g / (v + self.epsilon).sqrt())
            .collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        (scale, shift)
    }
}

impl Op for BatchNorm {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let x = inputs[0];
        if x.len() < 2 {
            return Err(format!("input must have a channel axis, got shape {x:?}"));
        }
        for (i, name) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "var")] {
            if inputs[i] != [x[1]] {
                return Err(format!(
                    "{name} shape {:?} does not match {} channels",
                    inputs[i], x[1]
                ));
            }
        }
        Ok(x.to_vec())
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let (scale, shift) = self.folded(
            inputs[1].data(),
            inputs[2].data(),
            inputs[3].data(),
            inputs[4].data(),
        );
        let c = out_shape[1];
        let plane: usize = out_shape[2..].iter().product();
        let mut out = inputs[0].data().to_vec();
        out.par_chunks_mut(plane.max(1))
            .enumerate()
            .for_each(|(i, p)| {
                simd::affine_inplace(p, scale[i % c], shift[i % c], false);
            });
        Tensor::from_vec(out_shape, out)
    }
}
