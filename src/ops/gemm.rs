//! Gemm: `Y = alpha · op(A) · op(B) + beta · C`, op = optional transpose, C broadcast to Y.
//! The classifier of most exported ResNets (transB = 1).

use super::{expect_rank, BuildCtx, Built, Op, Record, Saves};
use crate::kernels::gemm::{gemm, MatRef};
use crate::kernels::{layout, simd};
use crate::tensor::{broadcast_shapes, Tensor};

#[derive(Clone, Debug)]
pub struct Gemm {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

pub fn build(ctx: &BuildCtx) -> Result<Built, String> {
    let a = ctx.attrs();
    let op = Gemm {
        alpha: a.float("alpha", 1.0)?,
        beta: a.float("beta", 1.0)?,
        trans_a: a.int("transA", 0)? != 0,
        trans_b: a.int("transB", 0)? != 0,
    };
    Built::new(op, if ctx.has_input(2) { vec![0, 1, 2] } else { vec![0, 1] })
}

impl Gemm {
    /// (m, k, n) of the product.
    pub fn dims(&self, a: &[usize], b: &[usize]) -> Result<(usize, usize, usize), String> {
        expect_rank(a, 2, "Gemm A")?;
        expect_rank(b, 2, "Gemm B")?;
        let (m, k) = if self.trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
        let (k2, n) = if self.trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
        if k != k2 {
            return Err(format!("A {a:?} and B {b:?} do not multiply (inner sizes {k} and {k2})"));
        }
        Ok((m, k, n))
    }
}

impl Op for Gemm {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (m, _, n) = self.dims(inputs[0], inputs[1])?;
        if let Some(c) = inputs.get(2) {
            if broadcast_shapes(c, &[m, n]).as_deref() != Some(&[m, n][..]) {
                return Err(format!("C {c:?} does not broadcast to [{m}, {n}]"));
            }
        }
        Ok(vec![m, n])
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let (a, b) = (inputs[0], inputs[1]);
        let (m, k, n) = self.dims(a.shape(), b.shape()).expect("checked at plan time");
        let am = if self.trans_a { MatRef::transposed(a.data(), m) } else { MatRef::rows(a.data(), k) };
        let bm = if self.trans_b { MatRef::transposed(b.data(), k) } else { MatRef::rows(b.data(), n) };
        let mut out = vec![0.0; m * n];
        gemm(m, k, n, am, bm, &mut out, n, false);
        if self.alpha != 1.0 {
            simd::affine_inplace(&mut out, self.alpha, 0.0, false);
        }
        if let Some(c) = inputs.get(2) {
            let cb = layout::broadcast(c.data(), c.shape(), out_shape);
            for (o, cv) in out.iter_mut().zip(cb) {
                *o += self.beta * cv;
            }
        }
        Tensor::from_vec(out_shape, out)
    }

    fn saves(&self) -> Saves {
        Saves::inputs(&[0, 1])
    }

    /// With Y = α·op(A)·op(B) + β·C:  d op(A) = α·dY·op(B)ᵀ,  d op(B) = α·op(A)ᵀ·dY,  dC = β·Σ dY
    /// (over C's broadcast axes); a transposed operand gets the transpose of its gradient.
    fn backward(&self, rec: &Record, dy: &Tensor, need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        let (a, b) = (rec.input(0), rec.input(1));
        let (m, k, n) = self.dims(a.shape(), b.shape())?;
        let g = MatRef::rows(dy.data(), n);
        let scale = |mut v: Vec<f32>| {
            if self.alpha != 1.0 {
                simd::affine_inplace(&mut v, self.alpha, 0.0, false);
            }
            v
        };
        let da = need[0].then(|| {
            let mut out = vec![0.0; m * k];
            if self.trans_a {
                // A is k×m: dA = op(B)·dYᵀ
                let ob = if self.trans_b { MatRef::transposed(b.data(), k) } else { MatRef::rows(b.data(), n) };
                gemm(k, n, m, ob, MatRef::transposed(dy.data(), n), &mut out, m, false);
            } else {
                let obt = if self.trans_b { MatRef::rows(b.data(), k) } else { MatRef::transposed(b.data(), n) };
                gemm(m, n, k, g, obt, &mut out, k, false);
            }
            Tensor::from_vec(a.shape(), scale(out))
        });
        let db = need[1].then(|| {
            let mut out = vec![0.0; k * n];
            if self.trans_b {
                // B is n×k: dB = dYᵀ·op(A)
                let oa = if self.trans_a { MatRef::transposed(a.data(), m) } else { MatRef::rows(a.data(), k) };
                gemm(n, m, k, MatRef::transposed(dy.data(), n), oa, &mut out, k, false);
            } else {
                let oat = if self.trans_a { MatRef::rows(a.data(), m) } else { MatRef::transposed(a.data(), k) };
                gemm(k, m, n, oat, g, &mut out, n, false);
            }
            Tensor::from_vec(b.shape(), scale(out))
        });
        let dc = rec.shapes.get(2).filter(|_| need.get(2) == Some(&true)).map(|cs| {
            let v = layout::reduce_to_shape(dy.data(), dy.shape(), cs);
            Tensor::from_vec(cs.clone(), v.into_iter().map(|x| x * self.beta).collect())
        });
        let mut out = vec![da, db];
        if rec.shapes.len() > 2 {
            out.push(dc);
        }
        Ok(out)
    }
}
