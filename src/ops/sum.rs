//! Sum: element-wise sum of any number of inputs, with broadcasting.

use super::binary::Binary;
use super::{BuildCtx, Built, Op, Record};
use crate::kernels::layout;
use crate::kernels::simd::Arith;
use crate::tensor::{broadcast_shapes, Tensor};

#[derive(Clone, Debug)]
pub struct Sum;

pub fn build(ctx: &BuildCtx) -> Result<Built, String> {
    if ctx.inputs.is_empty() || ctx.inputs.iter().any(Option::is_none) {
        return Err("Sum needs at least one input and no omitted ones".into());
    }
    Built::new(Sum, (0..ctx.inputs.len()).collect::<Vec<_>>())
}

impl Op for Sum {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        inputs.iter().try_fold(inputs[0].to_vec(), |acc, s| {
            broadcast_shapes(&acc, s).ok_or_else(|| format!("shapes {acc:?} and {s:?} do not broadcast"))
        })
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let add = Binary { op: Arith::Add, relu: false };
        let mut acc = inputs[0].clone();
        for x in &inputs[1..] {
            let shape = broadcast_shapes(acc.shape(), x.shape()).expect("checked at plan time");
            acc = add.forward(&[&acc, x], &shape);
        }
        debug_assert_eq!(acc.shape(), out_shape);
        acc
    }

    /// Every input gets dy, summed over the axes it was broadcast along.
    fn backward(&self, rec: &Record, dy: &Tensor, need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        Ok(rec
            .shapes
            .iter()
            .zip(need)
            .map(|(s, &n)| n.then(|| Tensor::from_vec(s.clone(), layout::reduce_to_shape(dy.data(), dy.shape(), s))))
            .collect())
    }
}
