//! ReduceMean over any set of axes (`keepdims` honoured). Axes are an attribute before opset 18
//! and a constant input from 18 on. Global pooling exported as ReduceMean over H, W takes the
//! plane-mean fast path; other axes are first moved to the end.

use super::{BuildCtx, Built, Op, Record};
use crate::kernels::{layout, pool::plane_means};
use crate::tensor::{norm_axis, Tensor};

#[derive(Clone, Debug)]
pub struct ReduceMean {
    /// `None`: all axes.
    axes: Option<Vec<i64>>,
    keepdims: bool,
}

pub fn build(ctx: &BuildCtx) -> Result<Built, String> {
    let axes = if ctx.opset < 18 { ctx.attrs().ints("axes")? } else { ctx.const_ints(1)? };
    let noop_empty = ctx.attrs().int("noop_with_empty_axes", 0)? != 0;
    if noop_empty && axes.as_ref().is_none_or(|a| a.is_empty()) {
        return Err("noop_with_empty_axes with no axes is not supported".into());
    }
    let axes = axes.filter(|a| !a.is_empty());
    Built::new(ReduceMean { axes, keepdims: ctx.attrs().int("keepdims", 1)? != 0 }, [0])
}

impl ReduceMean {
    fn reduced(&self, rank: usize) -> Result<Vec<bool>, String> {
        let mut mask = vec![self.axes.is_none(); rank];
        for &a in self.axes.iter().flatten() {
            let d = norm_axis(a, rank).ok_or_else(|| format!("axis {a} out of range for rank {rank}"))?;
            mask[d] = true;
        }
        Ok(mask)
    }
}

impl Op for ReduceMean {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let x = inputs[0];
        let mask = self.reduced(x.len())?;
        Ok(x.iter()
            .zip(&mask)
            .filter_map(|(&d, &r)| match (r, self.keepdims) {
                (true, true) => Some(1),
                (true, false) => None,
                (false, _) => Some(d),
            })
            .collect())
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let x = inputs[0];
        let mask = self.reduced(x.rank()).expect("checked at plan time");
        let kept: Vec<usize> = (0..x.rank()).filter(|&d| !mask[d]).collect();
        let gone: Vec<usize> = (0..x.rank()).filter(|&d| mask[d]).collect();
        let plane: usize = gone.iter().map(|&d| x.shape()[d]).product();
        let trailing = gone.iter().enumerate().all(|(i, &d)| d == kept.len() + i);
        let moved;
        let data = if trailing {
            x.data()
        } else {
            moved = layout::transpose(x.data(), x.shape(), &[kept, gone].concat());
            &moved[..]
        };
        let mut out = vec![0.0; out_shape.iter().product()];
        plane_means(data, plane.max(1), &mut out);
        Tensor::from_vec(out_shape, out)
    }

    /// dx = dy / count, broadcast back over the reduced axes.
    fn backward(&self, rec: &Record, dy: &Tensor, _need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        let shape = &rec.shapes[0];
        let mask = self.reduced(shape.len())?;
        let kept: Vec<usize> = shape.iter().zip(&mask).map(|(&d, &r)| if r { 1 } else { d }).collect();
        let count: usize = shape.iter().zip(&mask).filter(|(_, &r)| r).map(|(&d, _)| d).product();
        let scaled: Vec<f32> = dy.data().iter().map(|g| g / count as f32).collect();
        Ok(vec![Some(Tensor::from_vec(shape.clone(), layout::broadcast(&scaled, &kept, shape)))])
    }
}
