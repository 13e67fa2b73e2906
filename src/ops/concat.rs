//! Concat along one axis; also folds integer shape vectors at load time.

use super::{BuildCtx, Built, Op, Record};
use crate::graph::IntTensor;
use crate::kernels::layout;
use crate::tensor::{norm_axis, Tensor};

#[derive(Clone, Debug)]
pub struct Concat {
    axis: i64,
}

pub fn build(ctx: &BuildCtx) -> Result<Built, String> {
    if ctx.inputs.iter().any(Option::is_none) || ctx.inputs.is_empty() {
        return Err("Concat needs inputs and no omitted ones".into());
    }
    Built::new(Concat { axis: ctx.attrs().int("axis", 0)? }, (0..ctx.inputs.len()).collect::<Vec<_>>())
}

impl Concat {
    fn axis(&self, rank: usize) -> Result<usize, String> {
        norm_axis(self.axis, rank).ok_or(format!("axis {} out of range for rank {rank}", self.axis))
    }
}

impl Op for Concat {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let first = inputs[0];
        let a = self.axis(first.len())?;
        let mut out = first.to_vec();
        for s in &inputs[1..] {
            if s.len() != first.len() || (0..s.len()).any(|d| d != a && s[d] != first[d]) {
                return Err(format!("shapes {first:?} and {s:?} differ outside axis {a}"));
            }
            out[a] += s[a];
        }
        Ok(out)
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let a = self.axis(out_shape.len()).expect("checked at plan time");
        let parts: Vec<(&[f32], &[usize])> = inputs.iter().map(|t| (t.data(), t.shape())).collect();
        Tensor::from_vec(out_shape, layout::concat(&parts, a))
    }

    fn forward_ints(&self, inputs: &[&IntTensor], out_shape: &[usize]) -> Option<IntTensor> {
        let a = self.axis(out_shape.len()).ok()?;
        let parts: Vec<(&[i64], &[usize])> = inputs.iter().map(|t| (&t.data[..], &t.shape[..])).collect();
        Some(IntTensor { shape: out_shape.to_vec(), data: layout::concat(&parts, a) })
    }

    /// Each input gets its slab of dy along the axis.
    fn backward(&self, rec: &Record, dy: &Tensor, need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        let a = self.axis(dy.rank())?;
        let mut start = 0;
        let mut out = Vec::with_capacity(rec.shapes.len());
        for (s, &n) in rec.shapes.iter().zip(need) {
            let mut starts = vec![0; s.len()];
            starts[a] = start;
            start += s[a];
            out.push(n.then(|| {
                Tensor::from_vec(s.clone(), layout::slice(dy.data(), dy.shape(), &starts, &vec![1; s.len()], s))
            }));
        }
        Ok(out)
    }
}
