//! GlobalAveragePool: the mean of each channel plane, `[N,C,H,W] -> [N,C,1,1]`.

use super::{BuildCtx, Built, Op, Record};
use crate::kernels::pool::plane_means;
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct GlobalAveragePool;

pub fn build(_ctx: &BuildCtx) -> Result<Built, String> {
    Built::new(GlobalAveragePool, [0])
}

impl Op for GlobalAveragePool {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let x = inputs[0];
        if x.len() < 3 {
            return Err(format!("input must be [N, C, spatial...], got {x:?}"));
        }
        Ok([&x[..2], &vec![1; x.len() - 2][..]].concat())
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let x = inputs[0];
        let plane: usize = x.shape()[2..].iter().product();
        let mut out = vec![0.0; out_shape.iter().product()];
        plane_means(x.data(), plane, &mut out);
        Tensor::from_vec(out_shape, out)
    }

    /// dx = dy / (H·W), broadcast over each plane.
    fn backward(&self, rec: &Record, dy: &Tensor, _need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        let shape = &rec.shapes[0];
        let plane: usize = shape[2..].iter().product();
        let dx = dy.data().iter().flat_map(|&g| std::iter::repeat_n(g / plane as f32, plane)).collect();
        Ok(vec![Some(Tensor::from_vec(shape.clone(), dx))])
    }
}
