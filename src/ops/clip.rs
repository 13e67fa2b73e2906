//! Clip: `min(max(x, lo), hi)`; bounds are attributes before opset 11 and optional constant
//! inputs from 11 on (ReLU6 exports as Clip(0, 6)).

use super::{BuildCtx, Built, Op, Record, Saves};
use crate::kernels::{keep_if, par_chunks_map, par_zip_map, simd};
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct Clip {
    pub lo: f32,
    pub hi: f32,
}

pub fn build(ctx: &BuildCtx) -> Result<Built, String> {
    let (lo, hi) = if ctx.opset < 11 {
        (ctx.attrs().float("min", f32::NEG_INFINITY)?, ctx.attrs().float("max", f32::INFINITY)?)
    } else {
        let bound = |i: usize, default: f32| -> Result<f32, String> {
            match ctx.const_input(i)? {
                None => Ok(default),
                Some(c) => c.to_floats().first().copied().ok_or_else(|| format!("input {i} is empty")),
            }
        };
        (bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?)
    };
    Built::new(Clip { lo, hi }, [0])
}

impl Op for Clip {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(inputs[0].to_vec())
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let (lo, hi) = (self.lo, self.hi);
        let out = par_chunks_map(inputs[0].data(), |x, y| {
            y.copy_from_slice(x);
            simd::clamp_inplace(y, lo, hi)
        });
        Tensor::from_vec(out_shape, out)
    }

    fn saves(&self) -> Saves {
        Saves::inputs(&[0])
    }

    /// dx = dy where lo <= x <= hi (torch.clamp's backward).
    fn backward(&self, rec: &Record, dy: &Tensor, _need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        let x = rec.input(0);
        let (lo, hi) = (self.lo, self.hi);
        let dx = par_zip_map(dy.data(), x.data(), |g, v| keep_if(g, (v >= lo) & (v <= hi)));
        Ok(vec![Some(Tensor::from_vec(x.shape(), dx))])
    }
}
