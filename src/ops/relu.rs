//! Relu: `max(x, 0)`.

use super::{BuildCtx, Built, Op, Record, Saves};
use crate::kernels::{keep_if, par_chunks_map, par_zip_map, simd};
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
        let out = par_chunks_map(inputs[0].data(), |x, y| {
            y.copy_from_slice(x);
            simd::clamp_inplace(y, 0.0, f32::INFINITY)
        });
        Tensor::from_vec(out_shape, out)
    }

    fn saves(&self) -> Saves {
        Saves::output()
    }

    /// dx = dy where y > 0 (PyTorch's threshold_backward).
    fn backward(&self, rec: &Record, dy: &Tensor, _need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        let y = rec.output();
        let dx = par_zip_map(dy.data(), y.data(), |g, v| keep_if(g, v > 0.0));
        Ok(vec![Some(Tensor::from_vec(y.shape(), dx))])
    }
}
