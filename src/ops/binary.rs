//! Add, Sub, Mul, Div with numpy broadcasting. Fast paths: equal shapes, a scalar, and a
//! per-channel operand (`[C,1,1]`-like) broadcast over NCHW planes; anything else goes through
//! the generic broadcast kernel.

use rayon::prelude::*;

use super::{BuildCtx, Built, Op, Record, Saves};
use crate::graph::IntTensor;
use crate::kernels::layout;
use crate::kernels::simd::{self, Arith};
use crate::tensor::{broadcast_shapes, Tensor};

#[derive(Clone, Debug)]
pub struct Binary {
    pub op: Arith,
    /// ReLU applied to the result (set by the inference planner's fusion of Add + Relu).
    pub relu: bool,
}

fn build(op: Arith) -> Result<Built, String> {
    Built::new(Binary { op, relu: false }, [0, 1])
}

pub fn build_add(_: &BuildCtx) -> Result<Built, String> {
    build(Arith::Add)
}
pub fn build_sub(_: &BuildCtx) -> Result<Built, String> {
    build(Arith::Sub)
}
pub fn build_mul(_: &BuildCtx) -> Result<Built, String> {
    build(Arith::Mul)
}
pub fn build_div(_: &BuildCtx) -> Result<Built, String> {
    build(Arith::Div)
}

/// When `b` broadcast to `out` is constant over trailing planes (`b` = `[C,1,1]` against
/// `[N,C,H,W]`, or a scalar), the plane size: chunk i of `out` then uses `b[i % b.len()]`.
fn per_plane(b: &[usize], out: &[usize]) -> Option<usize> {
    let lead = out.len().checked_sub(b.len())?;
    let full: Vec<usize> = std::iter::repeat_n(1, lead).chain(b.iter().copied()).collect();
    let Some(last) = full.iter().rposition(|&d| d != 1) else {
        return Some(out.iter().product());
    };
    let first = full.iter().position(|&d| d != 1).unwrap_or(last);
    (first..=last).all(|d| full[d] == out[d]).then(|| out[last + 1..].iter().product())
}

impl Binary {
    /// The element-wise result before the optional ReLU.
    fn compute(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let (a, b) = (inputs[0], inputs[1]);
        if a.shape() == out_shape {
            let mut out = a.data().to_vec();
            if let Some(plane) = per_plane(b.shape(), out_shape) {
                let bv = b.data();
                for (i, chunk) in out.chunks_mut(plane.max(1)).enumerate() {
                    simd::arith_scalar_inplace(self.op, chunk, bv[i % bv.len()]);
                }
                return Tensor::from_vec(out_shape, out);
            }
        }
        let op = self.op;
        let out = layout::zip_broadcast(a.data(), a.shape(), b.data(), b.shape(), out_shape, |x, y| op.apply(x, y));
        Tensor::from_vec(out_shape, out)
    }
}

impl Op for Binary {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        broadcast_shapes(inputs[0], inputs[1])
            .ok_or_else(|| format!("shapes {:?} and {:?} do not broadcast", inputs[0], inputs[1]))
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let (a, b) = (inputs[0], inputs[1]);
        if a.shape() == out_shape && b.shape() == out_shape {
            // Chunks of 64 Ki elements across threads (residual adds are a few MiB each).
            const CHUNK: usize = 1 << 16;
            let mut out = vec![0.0; a.len()];
            out.par_chunks_mut(CHUNK)
                .zip(a.data().par_chunks(CHUNK).zip(b.data().par_chunks(CHUNK)))
                .for_each(|(o, (x, y))| simd::arith_into(self.op, x, y, self.relu, o));
            return Tensor::from_vec(out_shape, out);
        }
        let mut y = self.compute(inputs, out_shape);
        if self.relu {
            simd::clamp_inplace(y.data_mut(), 0.0, f32::INFINITY);
        }
        y
    }

    fn forward_ints(&self, inputs: &[&IntTensor], out_shape: &[usize]) -> Option<IntTensor> {
        let (a, b) = (inputs[0], inputs[1]);
        let op = self.op;
        let f = |x: i64, y: i64| match op {
            Arith::Add => x.wrapping_add(y),
            Arith::Sub => x.wrapping_sub(y),
            Arith::Mul => x.wrapping_mul(y),
            Arith::Div => x.checked_div(y).unwrap_or(0),
        };
        let data = layout::zip_broadcast(&a.data, &a.shape, &b.data, &b.shape, out_shape, f);
        Some(IntTensor { shape: out_shape.to_vec(), data })
    }

    fn saves(&self) -> Saves {
        match self.op {
            Arith::Add | Arith::Sub => Saves::NOTHING,
            Arith::Mul | Arith::Div => Saves::inputs(&[0, 1]),
        }
    }

    /// Each input's gradient, summed over the axes it was broadcast along:
    /// add (dy, dy), sub (dy, -dy), mul (dy·b, dy·a), div (dy/b, -dy·a/b²).
    fn backward(&self, rec: &Record, dy: &Tensor, need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        let out = dy.shape();
        let grad = |i: usize| -> Option<Tensor> {
            if !need[i] {
                return None;
            }
            let shape = &rec.shapes[i];
            let local: Vec<f32> = match (self.op, i) {
                (Arith::Add, _) | (Arith::Sub, 0) => dy.data().to_vec(),
                (Arith::Sub, _) => dy.data().iter().map(|g| -g).collect(),
                (Arith::Mul, _) => {
                    let other = rec.input(1 - i);
                    layout::zip_broadcast(dy.data(), out, other.data(), other.shape(), out, |g, v| g * v)
                }
                (Arith::Div, 0) => {
                    let b = rec.input(1);
                    layout::zip_broadcast(dy.data(), out, b.data(), b.shape(), out, |g, v| g / v)
                }
                (Arith::Div, _) => {
                    let (a, b) = (rec.input(0), rec.input(1));
                    let ga = layout::zip_broadcast(dy.data(), out, a.data(), a.shape(), out, |g, v| g * v);
                    layout::zip_broadcast(&ga, out, b.data(), b.shape(), out, |g, v| -g / (v * v))
                }
            };
            Some(Tensor::from_vec(shape.clone(), layout::reduce_to_shape(&local, out, shape)))
        };
        Ok(vec![grad(0), grad(1)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_operands_are_recognised() {
        assert_eq!(per_plane(&[1, 3, 1, 1], &[2, 3, 4, 5]), Some(20));
        assert_eq!(per_plane(&[3, 1, 1], &[2, 3, 4, 5]), Some(20));
        assert_eq!(per_plane(&[], &[2, 3]), Some(6));
        assert_eq!(per_plane(&[1], &[2, 3]), Some(6));
        assert_eq!(per_plane(&[2, 3, 1, 1], &[2, 3, 4, 5]), Some(20));
        // A middle axis: chunk (n, c, h) of 5 elements uses b[h].
        assert_eq!(per_plane(&[1, 1, 4, 1], &[2, 3, 4, 5]), Some(5));
        assert_eq!(per_plane(&[5], &[2, 3, 4, 5]), Some(1));
        assert_eq!(per_plane(&[2, 1, 5], &[2, 3, 5]), None);
    }

    #[test]
    fn fast_paths_agree_with_generic_broadcast() {
        let a = Tensor::from_vec([2, 3, 2, 2], (0..24).map(|v| v as f32).collect());
        let b = Tensor::from_vec([1, 3, 1, 1], vec![1.0, 2.0, 4.0]);
        for op in [Arith::Add, Arith::Sub, Arith::Mul, Arith::Div] {
            let got = Binary { op, relu: false }.forward(&[&a, &b], a.shape());
            let want =
                layout::zip_broadcast(a.data(), a.shape(), b.data(), b.shape(), a.shape(), |x, y| op.apply(x, y));
            assert_eq!(got.data(), &want[..]);
        }
    }
}
