//! MatMul with numpy semantics: batched over leading axes (broadcast), 1-D operands promoted.
//! The classifier of some exporters (MatMul + Add).

use super::{BuildCtx, Built, Op, Record, Saves};
use crate::kernels::gemm::{gemm, MatRef};
use crate::tensor::{broadcast_shapes, strides, Tensor};

#[derive(Clone, Debug)]
pub struct MatMul;

pub fn build(_ctx: &BuildCtx) -> Result<Built, String> {
    Built::new(MatMul, [0, 1])
}

/// Both operands as at least 2-D: (a, b, drop the m axis, drop the n axis).
fn promoted(a: &[usize], b: &[usize]) -> (Vec<usize>, Vec<usize>, bool, bool) {
    let (a2, drop_m) = if a.len() == 1 { (vec![1, a[0]], true) } else { (a.to_vec(), false) };
    let (b2, drop_n) = if b.len() == 1 { (vec![b[0], 1], true) } else { (b.to_vec(), false) };
    (a2, b2, drop_m, drop_n)
}

struct Dims {
    batch: Vec<usize>,
    m: usize,
    k: usize,
    n: usize,
}

fn dims(a: &[usize], b: &[usize]) -> Result<(Dims, Vec<usize>), String> {
    if a.is_empty() || b.is_empty() {
        return Err("MatMul operands must have rank >= 1".into());
    }
    let (a2, b2, drop_m, drop_n) = promoted(a, b);
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(format!("{a:?} and {b:?} do not multiply (inner sizes {k} and {k2})"));
    }
    let batch = broadcast_shapes(&a2[..a2.len() - 2], &b2[..b2.len() - 2])
        .ok_or_else(|| format!("batch axes of {a:?} and {b:?} do not broadcast"))?;
    let mut out = batch.clone();
    if !drop_m {
        out.push(m);
    }
    if !drop_n {
        out.push(n);
    }
    Ok((Dims { batch, m, k, n }, out))
}

/// Element offset of broadcast batch entry `i` in an operand whose batch shape is `s`
/// (each entry a `mat`-element matrix).
fn batch_offset(batch: &[usize], s: &[usize], mat: usize, i: usize) -> usize {
    let lead = batch.len() - s.len();
    let (st, bst) = (strides(s), strides(batch));
    (0..s.len()).map(|j| if s[j] == 1 { 0 } else { (i / bst[j + lead]) % batch[j + lead] * st[j] }).sum::<usize>() * mat
}

impl Op for MatMul {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(dims(inputs[0], inputs[1])?.1)
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let (a, b) = (inputs[0], inputs[1]);
        let (d, _) = dims(a.shape(), b.shape()).expect("checked at plan time");
        let (a2, b2, _, _) = promoted(a.shape(), b.shape());
        let batches: usize = d.batch.iter().product();
        let mut out = vec![0.0; batches * d.m * d.n];
        for i in 0..batches {
            let ao = batch_offset(&d.batch, &a2[..a2.len() - 2], d.m * d.k, i);
            let bo = batch_offset(&d.batch, &b2[..b2.len() - 2], d.k * d.n, i);
            let c = &mut out[i * d.m * d.n..(i + 1) * d.m * d.n];
            gemm(d.m, d.k, d.n, MatRef::rows(&a.data()[ao..], d.k), MatRef::rows(&b.data()[bo..], d.n), c, d.n, false);
        }
        Tensor::from_vec(out_shape, out)
    }

    fn saves(&self) -> Saves {
        Saves::inputs(&[0, 1])
    }

    /// Per batch entry dA = dY·Bᵀ and dB = Aᵀ·dY, summed where an operand was broadcast.
    fn backward(&self, rec: &Record, dy: &Tensor, need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        let (a, b) = (rec.input(0), rec.input(1));
        let (d, _) = dims(a.shape(), b.shape())?;
        let (a2, b2, _, _) = promoted(a.shape(), b.shape());
        let (ab, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
        let batches: usize = d.batch.iter().product();
        let mut da = vec![0.0; if need[0] { a.len() } else { 0 }];
        let mut db = vec![0.0; if need[1] { b.len() } else { 0 }];
        for i in 0..batches {
            let ao = batch_offset(&d.batch, ab, d.m * d.k, i);
            let bo = batch_offset(&d.batch, bb, d.k * d.n, i);
            let g = MatRef::rows(&dy.data()[i * d.m * d.n..], d.n);
            if need[0] {
                gemm(
                    d.m,
                    d.n,
                    d.k,
                    g,
                    MatRef::transposed(&b.data()[bo..], d.n),
                    &mut da[ao..ao + d.m * d.k],
                    d.k,
                    true,
                );
            }
            if need[1] {
                gemm(
                    d.k,
                    d.m,
                    d.n,
                    MatRef::transposed(&a.data()[ao..], d.k),
                    g,
                    &mut db[bo..bo + d.k * d.n],
                    d.n,
                    true,
                );
            }
        }
        Ok(vec![need[0].then(|| Tensor::from_vec(a.shape(), da)), need[1].then(|| Tensor::from_vec(b.shape(), db))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_and_promoted_shapes() {
        assert_eq!(dims(&[8, 512], &[512, 10]).unwrap().1, vec![8, 10]);
        assert_eq!(dims(&[2, 1, 3, 4], &[5, 4, 6]).unwrap().1, vec![2, 5, 3, 6]);
        assert_eq!(dims(&[4], &[4, 6]).unwrap().1, vec![6]);
        assert!(dims(&[3, 4], &[5, 6]).is_err());
        // [[1,2],[3,4]] x [[1],[1]] = [[3],[7]], batched twice via broadcast of b.
        let a = Tensor::from_vec([2, 2, 2], vec![1.0, 2.0, 3.0, 4.0, 0.0, 1.0, 1.0, 0.0]);
        let b = Tensor::from_vec([2, 1], vec![1.0, 1.0]);
        let y = MatMul.forward(&[&a, &b], &[2, 2, 1]);
        assert_eq!(y.data(), &[3.0, 7.0, 1.0, 1.0]);
    }
}
