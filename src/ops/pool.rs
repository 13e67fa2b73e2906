//! MaxPool and AveragePool (2-D, NCHW): the window geometry of `window`, the kernel of
//! `kernels::pool`. Only the first output of MaxPool (values, not indices) is supported.

use super::window::Window;
use super::{expect_rank, BuildCtx, Built, Op, Record, Saves};
use crate::kernels::pool::{pool2d, pool2d_backward, Pool};
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct Pooling {
    pub window: Window,
    pub kind: Pool,
}

pub fn build_max(ctx: &BuildCtx) -> Result<Built, String> {
    if ctx.attrs().int("storage_order", 0)? != 0 {
        return Err("storage_order=1 is not supported".into());
    }
    Built::new(Pooling { window: Window::from_attrs(ctx.attrs(), None)?, kind: Pool::Max }, [0])
}

pub fn build_average(ctx: &BuildCtx) -> Result<Built, String> {
    let count_pad = ctx.attrs().int("count_include_pad", 0)? != 0;
    Built::new(Pooling { window: Window::from_attrs(ctx.attrs(), None)?, kind: Pool::Avg { count_pad } }, [0])
}

impl Op for Pooling {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let x = inputs[0];
        expect_rank(x, 4, "pooling input (2-D pooling over NCHW)")?;
        let g = self.window.geometry([x[2], x[3]]).map_err(|e| format!("input {x:?}: {e}"))?;
        Ok(vec![x[0], x[1], g.out_hw[0], g.out_hw[1]])
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let x = inputs[0];
        let geo = self.window.geometry([x.shape()[2], x.shape()[3]]).expect("checked at plan time");
        let mut out = vec![0.0; out_shape.iter().product()];
        pool2d(x.data(), x.shape()[0] * x.shape()[1], &geo, self.kind, &mut out, true);
        Tensor::from_vec(out_shape, out)
    }

    fn saves(&self) -> Saves {
        Saves::inputs(&[0])
    }

    fn backward(&self, rec: &Record, dy: &Tensor, _need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        let x = rec.input(0);
        let s = x.shape();
        let geo = self.window.geometry([s[2], s[3]])?;
        let mut dx = vec![0.0; x.len()];
        pool2d_backward(x.data(), s[0] * s[1], &geo, self.kind, dy.data(), &mut dx);
        Ok(vec![Some(Tensor::from_vec(s, dx))])
    }
}
