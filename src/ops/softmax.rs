//! Softmax. Opset 13+: along `axis` (default -1). Before 13: the input is viewed as 2-D at
//! `axis` (default 1) and normalised over everything after it. Max-subtracted for stability.

use rayon::prelude::*;

use super::{BuildCtx, Built, Op, Record, Saves};
use crate::tensor::{norm_axis, Tensor};

#[derive(Clone, Debug)]
pub struct Softmax {
    axis: i64,
    /// Pre-13 semantics: normalise over all axes from `axis` on.
    coerce_2d: bool,
}

pub fn build(ctx: &BuildCtx) -> Result<Built, String> {
    let coerce_2d = ctx.opset < 13;
    let axis = ctx.attrs().int("axis", if coerce_2d { 1 } else { -1 })?;
    Built::new(Softmax { axis, coerce_2d }, [0])
}

impl Softmax {
    /// (outer, len, inner): the input seen as `[outer, len, inner]`, normalised over `len`.
    pub fn split(&self, shape: &[usize]) -> Result<(usize, usize, usize), String> {
        let a =
            norm_axis(self.axis, shape.len().max(1)).ok_or(format!("axis {} out of range for {shape:?}", self.axis))?;
        let outer = shape[..a].iter().product();
        if self.coerce_2d {
            return Ok((outer, shape[a..].iter().product(), 1));
        }
        Ok((outer, shape.get(a).copied().unwrap_or(1), shape[(a + 1).min(shape.len())..].iter().product()))
    }
}

/// Softmax of `x` viewed as `[outer, len, inner]` over the middle axis.
pub fn softmax(x: &[f32], (_outer, len, inner): (usize, usize, usize)) -> Vec<f32> {
    let mut out = x.to_vec();
    out.par_chunks_mut((len * inner).max(1)).for_each(|block| {
        for j in 0..inner {
            let max = (0..len).map(|i| block[i * inner + j]).fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f64;
            for i in 0..len {
                let e = (block[i * inner + j] - max).exp();
                block[i * inner + j] = e;
                sum += e as f64;
            }
            let inv = (1.0 / sum) as f32;
            for i in 0..len {
                block[i * inner + j] *= inv;
            }
        }
    });
    out
}

impl Op for Softmax {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        self.split(inputs[0])?;
        Ok(inputs[0].to_vec())
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let split = self.split(inputs[0].shape()).expect("checked at plan time");
        Tensor::from_vec(out_shape, softmax(inputs[0].data(), split))
    }

    fn saves(&self) -> Saves {
        Saves::output()
    }

    /// dx = y · (dy − Σ dy·y) along the normalised axis.
    fn backward(&self, rec: &Record, dy: &Tensor, _need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        let y = rec.output();
        let (_, len, inner) = self.split(y.shape())?;
        let mut dx = dy.data().to_vec();
        for (block, yb) in dx.chunks_mut((len * inner).max(1)).zip(y.data().chunks((len * inner).max(1))) {
            for j in 0..inner {
                let dot: f64 = (0..len).map(|i| (block[i * inner + j] * yb[i * inner + j]) as f64).sum();
                for i in 0..len {
                    block[i * inner + j] = yb[i * inner + j] * (block[i * inner + j] - dot as f32);
                }
            }
        }
        Ok(vec![Some(Tensor::from_vec(y.shape(), dx))])
    }
}

/// Softmax of each row of a 2-D tensor (for reporting class probabilities); rows that already
/// are a distribution (a model ending in Softmax) are returned as they are.
pub fn softmax_rows(y: &Tensor) -> Vec<f32> {
    let classes = y.shape()[1].max(1);
    let is_dist =
        y.data().chunks(classes).all(|r| r.iter().all(|&v| v >= 0.0) && (r.iter().sum::<f32>() - 1.0).abs() < 1e-3);
    if is_dist {
        return y.data().to_vec();
    }
    softmax_2d(y)
}

/// Softmax of each row of a 2-D tensor of logits.
pub fn softmax_2d(y: &Tensor) -> Vec<f32> {
    softmax(y.data(), (y.shape()[0], y.shape()[1].max(1), 1))
}
