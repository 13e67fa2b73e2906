//! Transpose: permutes axes (`perm`, default reversed); an NHWC input becomes NCHW this way.

use super::{BuildCtx, Built, Op, Record};
use crate::graph::IntTensor;
use crate::kernels::layout;
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct Transpose {
    perm: Option<Vec<usize>>,
}

pub fn build(ctx: &BuildCtx) -> Result<Built, String> {
    let perm = ctx.attrs().ints("perm")?;
    let perm = match perm {
        None => None,
        Some(p) => {
            let mut seen = p.clone();
            seen.sort_unstable();
            if seen != (0..p.len() as i64).collect::<Vec<_>>() {
                return Err(format!("perm {p:?} is not a permutation"));
            }
            Some(p.into_iter().map(|v| v as usize).collect())
        }
    };
    Built::new(Transpose { perm }, [0])
}

impl Transpose {
    /// The permutation for a rank-`rank` input (the default reverses the axes).
    pub fn perm(&self, rank: usize) -> Result<Vec<usize>, String> {
        match &self.perm {
            None => Ok((0..rank).rev().collect()),
            Some(p) if p.len() == rank => Ok(p.clone()),
            Some(p) => Err(format!("perm {p:?} does not fit rank {rank}")),
        }
    }

    /// The permutation that undoes `perm(rank)` (the backward rule's).
    pub fn inverse(&self, rank: usize) -> Result<Vec<usize>, String> {
        let perm = self.perm(rank)?;
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        Ok(inverse)
    }
}

impl Op for Transpose {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(self.perm(inputs[0].len())?.iter().map(|&p| inputs[0][p]).collect())
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let perm = self.perm(inputs[0].rank()).expect("checked at plan time");
        Tensor::from_vec(out_shape, layout::transpose(inputs[0].data(), inputs[0].shape(), &perm))
    }

    fn forward_ints(&self, inputs: &[&IntTensor], out_shape: &[usize]) -> Option<IntTensor> {
        let perm = self.perm(inputs[0].shape.len()).ok()?;
        Some(IntTensor { shape: out_shape.to_vec(), data: layout::transpose(&inputs[0].data, &inputs[0].shape, &perm) })
    }

    /// dx = dy transposed by the inverse permutation.
    fn backward(&self, rec: &Record, dy: &Tensor, _need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        let inverse = self.inverse(rec.shapes[0].len())?;
        Ok(vec![Some(Tensor::from_vec(rec.shapes[0].clone(), layout::transpose(dy.data(), dy.shape(), &inverse)))])
    }
}
