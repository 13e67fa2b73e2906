//! Relu: `max(x, 0)`.

use super::{BuildCtx, Built, Op};
use crate::kernels::simd;
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct Relu;

pub fn build(_ctx: &BuildCtx) -> Result<Built, String> {
    Built::new(Relu, [0])
}

impl Op for Relu {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(inputs[0].to_vec())
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let mut out = inputs[0].data().to_vec();
        simd::clamp_inplace(&mut out, 0.0, f32::INFINITY);
        Tensor::from_vec(out_shape, out)
    }
}
