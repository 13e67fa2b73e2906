//! Slice: strided sub-array. starts/ends/axes are attributes before opset 10 and constant
//! inputs (plus steps) from 10 on; out-of-range bounds clamp as the ONNX spec says.

use super::{BuildCtx, Built, Op, Record};
use crate::graph::IntTensor;
use crate::kernels::layout;
use crate::tensor::{norm_axis, Tensor};

#[derive(Clone, Debug)]
pub struct Slice {
    starts: Vec<i64>,
    ends: Vec<i64>,
    axes: Option<Vec<i64>>,
    steps: Option<Vec<i64>>,
}

pub fn build(ctx: &BuildCtx) -> Result<Built, String> {
    let op = if ctx.opset < 10 {
        let a = ctx.attrs();
        Slice {
            starts: a.ints("starts")?.ok_or("missing 'starts'")?,
            ends: a.ints("ends")?.ok_or("missing 'ends'")?,
            axes: a.ints("axes")?,
            steps: None,
        }
    } else {
        Slice {
            starts: ctx.const_ints(1)?.ok_or("missing starts")?,
            ends: ctx.const_ints(2)?.ok_or("missing ends")?,
            axes: ctx.const_ints(3)?,
            steps: ctx.const_ints(4)?,
        }
    };
    if op.starts.len() != op.ends.len() {
        return Err("starts and ends differ in length".into());
    }
    Built::new(op, [0])
}

/// Per-axis (first index, step, count) of the slice over `shape`.
type Plan = (Vec<usize>, Vec<isize>, Vec<usize>);

impl Slice {
    fn plan(&self, shape: &[usize]) -> Result<Plan, String> {
        let rank = shape.len();
        let (mut first, mut step, mut count) = (vec![0; rank], vec![1isize; rank], shape.to_vec());
        for i in 0..self.starts.len() {
            let ax = match &self.axes {
                Some(a) => *a.get(i).ok_or("axes and starts differ in length")?,
                None => i as i64,
            };
            let d = norm_axis(ax, rank).ok_or(format!("axis {ax} out of range for {shape:?}"))?;
            let s = self.steps.as_ref().map_or(1, |v| v.get(i).copied().unwrap_or(1));
            if s == 0 {
                return Err("slice step 0".into());
            }
            let dim = shape[d] as i64;
            let fix = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
            let (start, end) = if s > 0 {
                (fix(self.starts[i]).clamp(0, dim), fix(self.ends[i]).clamp(0, dim))
            } else {
                (fix(self.starts[i]).clamp(0, dim - 1), fix(self.ends[i]).clamp(-1, dim - 1))
            };
            let n = if s > 0 { (end - start + s - 1) / s } else { (start - end + (-s) - 1) / (-s) };
            first[d] = start.max(0) as usize;
            step[d] = s as isize;
            count[d] = n.max(0) as usize;
        }
        Ok((first, step, count))
    }
}

impl Op for Slice {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(self.plan(inputs[0])?.2)
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let (first, step, _) = self.plan(inputs[0].shape()).expect("checked at plan time");
        Tensor::from_vec(out_shape, layout::slice(inputs[0].data(), inputs[0].shape(), &first, &step, out_shape))
    }

    fn forward_ints(&self, inputs: &[&IntTensor], out_shape: &[usize]) -> Option<IntTensor> {
        let x = inputs[0];
        let (first, step, _) = self.plan(&x.shape).ok()?;
        Some(IntTensor { shape: out_shape.to_vec(), data: layout::slice(&x.data, &x.shape, &first, &step, out_shape) })
    }

    /// dy scattered back into zeros of the input's shape.
    fn backward(&self, rec: &Record, dy: &Tensor, _need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        let shape = &rec.shapes[0];
        let (first, step, _) = self.plan(shape)?;
        Ok(vec![Some(Tensor::from_vec(shape.clone(), layout::unslice(dy.data(), shape, &first, &step, dy.shape())))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_clamp_like_the_spec() {
        let s = |st: i64, en: i64, step: i64| Slice {
            starts: vec![st],
            ends: vec![en],
            axes: None,
            steps: Some(vec![step]),
        };
        // x[1:-1] of 6 -> 4; x[0:i64::MAX] -> 6; x[::-2] of 6 -> 5,3,1 (3 elements); x[4:2] -> empty.
        assert_eq!(s(1, -1, 1).plan(&[6]).unwrap().2, vec![4]);
        assert_eq!(s(0, i64::MAX, 1).plan(&[6]).unwrap().2, vec![6]);
        assert_eq!(s(-1, i64::MIN, -2).plan(&[6]).unwrap(), (vec![5], vec![-2], vec![3]));
        assert_eq!(s(4, 2, 1).plan(&[6]).unwrap().2, vec![0]);
    }
}
