//! Gather along one axis with constant indices (shape sub-graphs pick dims this way).

use super::{BuildCtx, Built, Op};
use crate::graph::IntTensor;
use crate::kernels::layout;
use crate::tensor::{norm_axis, Tensor};

#[derive(Clone, Debug)]
pub struct Gather {
    axis: i64,
    indices: IntTensor,
}

pub fn build(ctx: &BuildCtx) -> Result<Built, String> {
    let c = ctx.const_input(1)?.ok_or("missing indices")?;
    let indices = IntTensor { shape: c.shape().to_vec(), data: c.to_ints() };
    Built::new(Gather { axis: ctx.attrs().int("axis", 0)?, indices }, [0])
}

impl Gather {
    fn resolve(&self, shape: &[usize]) -> Result<(usize, Vec<usize>), String> {
        let a = norm_axis(self.axis, shape.len()).ok_or(format!("axis {} out of range for {shape:?}", self.axis))?;
        let dim = shape[a] as i64;
        let idx = self
            .indices
            .data
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + dim } else { i };
                (0..dim).contains(&j).then_some(j as usize).ok_or(format!("index {i} out of range for axis size {dim}"))
            })
            .collect::<Result<_, _>>()?;
        Ok((a, idx))
    }
}

impl Op for Gather {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let x = inputs[0];
        let (a, _) = self.resolve(x)?;
        Ok([&x[..a], &self.indices.shape[..], &x[a + 1..]].concat())
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let (a, idx) = self.resolve(inputs[0].shape()).expect("checked at plan time");
        Tensor::from_vec(out_shape, layout::gather(inputs[0].data(), inputs[0].shape(), a, &idx))
    }

    fn forward_ints(&self, inputs: &[&IntTensor], out_shape: &[usize]) -> Option<IntTensor> {
        let (a, idx) = self.resolve(&inputs[0].shape).ok()?;
        Some(IntTensor { shape: out_shape.to_vec(), data: layout::gather(&inputs[0].data, &inputs[0].shape, a, &idx) })
    }
}
