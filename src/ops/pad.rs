//! Pad, constant mode: pads as an attribute before opset 11, a constant input from 11 on
//! (with an optional constant value, and optional axes from 18 on). Keras' ZeroPadding2D.

use super::{BuildCtx, Built, Op, Record};
use crate::kernels::layout;
use crate::tensor::{norm_axis, Tensor};

#[derive(Clone, Debug)]
pub struct Pad {
    /// ONNX layout: all begins, then all ends; `axes` says which axes they apply to.
    pads: Vec<i64>,
    axes: Option<Vec<i64>>,
    value: f32,
}

pub fn build(ctx: &BuildCtx) -> Result<Built, String> {
    let mode = ctx.attrs().string("mode", "constant")?;
    if mode != "constant" {
        return Err(format!("pad mode '{mode}' is not supported (only 'constant')"));
    }
    let (pads, value, axes) = if ctx.opset < 11 {
        let pads = ctx.attrs().ints("pads")?.ok_or("missing 'pads'")?;
        (pads, ctx.attrs().float("value", 0.0)?, None)
    } else {
        let pads = ctx.const_ints(1)?.ok_or("missing the pads input")?;
        let value = ctx.const_input(2)?.map(|c| c.to_floats().first().copied().unwrap_or(0.0)).unwrap_or(0.0);
        (pads, value, ctx.const_ints(3)?)
    };
    Built::new(Pad { pads, axes, value }, [0])
}

impl Pad {
    /// The value the padding holds.
    pub fn value(&self) -> f32 {
        self.value
    }

    /// (before, after) per axis of a rank-`rank` input.
    pub fn amounts(&self, rank: usize) -> Result<(Vec<usize>, Vec<usize>), String> {
        let axes: Vec<usize> = match &self.axes {
            None => (0..rank).collect(),
            Some(a) => a
                .iter()
                .map(|&x| norm_axis(x, rank).ok_or(format!("axis {x} out of range")))
                .collect::<Result<_, _>>()?,
        };
        if self.pads.len() != 2 * axes.len() {
            return Err(format!("{} pads do not fit {} axes", self.pads.len(), axes.len()));
        }
        if self.pads.iter().any(|&p| p < 0) {
            return Err(format!("negative pads {:?} are not supported", self.pads));
        }
        let (mut before, mut after) = (vec![0; rank], vec![0; rank]);
        for (i, &ax) in axes.iter().enumerate() {
            before[ax] = self.pads[i] as usize;
            after[ax] = self.pads[i + axes.len()] as usize;
        }
        Ok((before, after))
    }
}

impl Op for Pad {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let x = inputs[0];
        let (b, a) = self.amounts(x.len())?;
        Ok((0..x.len()).map(|d| b[d] + x[d] + a[d]).collect())
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let x = inputs[0];
        let (b, a) = self.amounts(x.rank()).expect("checked at plan time");
        Tensor::from_vec(out_shape, layout::pad(x.data(), x.shape(), &b, &a, self.value))
    }

    /// dx = the unpadded window of dy.
    fn backward(&self, rec: &Record, dy: &Tensor, _need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        let shape = &rec.shapes[0];
        let (before, _) = self.amounts(shape.len())?;
        let steps = vec![1; shape.len()];
        Ok(vec![Some(Tensor::from_vec(shape.clone(), layout::slice(dy.data(), dy.shape(), &before, &steps, shape)))])
    }
}
