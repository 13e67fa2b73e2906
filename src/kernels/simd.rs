//! Element-wise SIMD kernels on `wide` vectors, each with a scalar twin (`*_scalar`) that defines
//! its meaning. Vector width is fixed at compile time (`LANES`); tails run the scalar twin.
//!
//! These sweeps are memory-bound, so they are built for the build's baseline (SSE2 on x86-64:
//! `wide` runs a 16-lane vector as four 128-bit ones) rather than dispatched at run time; a
//! `target-cpu=native` build gives them the machine's widest vectors (benches/README.md measures
//! both). No fused multiply-add: without FMA in the baseline it would be a library call per
//! element, and unfused the SIMD kernel and its twin round alike on every build.

use wide::f32x16;

pub type V = f32x16;
pub const LANES: usize = 16;

#[inline(always)]
fn load(s: &[f32]) -> V {
    V::new(s.try_into().expect("a full lane chunk"))
}

/// x <- max(x * scale + shift, 0 if relu)
pub fn affine_inplace(x: &mut [f32], scale: f32, shift: f32, relu: bool) {
    let (sv, hv, zero) = (V::splat(scale), V::splat(shift), V::splat(0.0));
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        let mut v = load(c) * sv + hv;
        if relu {
            // max(0, v) in this order returns v when v is NaN (x86 max semantics): NaN propagates.
            v = zero.fast_max(v);
        }
        c.copy_from_slice(&v.to_array());
    }
    affine_inplace_scalar(chunks.into_remainder(), scale, shift, relu);
}

pub fn affine_inplace_scalar(x: &mut [f32], scale: f32, shift: f32, relu: bool) {
    for v in x {
        let y = *v * scale + shift;
        *v = if relu && y < 0.0 { 0.0 } else { y };
    }
}

/// x <- min(max(x, lo), hi); NaN stays NaN (as in PyTorch's clamp and relu).
pub fn clamp_inplace(x: &mut [f32], lo: f32, hi: f32) {
    let (l, h) = (V::splat(lo), V::splat(hi));
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        // Bound first, value second: x86 max/min return the second operand when one is NaN.
        c.copy_from_slice(&h.fast_min(l.fast_max(load(c))).to_array());
    }
    clamp_inplace_scalar(chunks.into_remainder(), lo, hi);
}

pub fn clamp_inplace_scalar(x: &mut [f32], lo: f32, hi: f32) {
    for v in x {
        let w = if *v < lo { lo } else { *v };
        *v = if w > hi { hi } else { w };
    }
}

/// The four arithmetic ops of ONNX's binary element-wise nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

impl Arith {
    #[inline(always)]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Arith::Add => a + b,
            Arith::Sub => a - b,
            Arith::Mul => a * b,
            Arith::Div => a / b,
        }
    }

    #[inline(always)]
    fn apply_v(self, a: V, b: V) -> V {
        match self {
            Arith::Add => a + b,
            Arith::Sub => a - b,
            Arith::Mul => a * b,
            Arith::Div => a / b,
        }
    }
}

/// a <- a (op) b, element by element (equal lengths).
pub fn arith_inplace(op: Arith, a: &mut [f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    let split = a.len() - a.len() % LANES;
    for (ca, cb) in a[..split].chunks_exact_mut(LANES).zip(b[..split].chunks_exact(LANES)) {
        ca.copy_from_slice(&op.apply_v(load(ca), load(cb)).to_array());
    }
    arith_inplace_scalar(op, &mut a[split..], &b[split..]);
}

/// out <- a (op) b, then ReLU if asked: one pass, no copy of `a` first.
pub fn arith_into(op: Arith, a: &[f32], b: &[f32], relu: bool, out: &mut [f32]) {
    assert!(a.len() == b.len() && a.len() == out.len());
    let split = a.len() - a.len() % LANES;
    let zero = V::splat(0.0);
    let chunks = a[..split].chunks_exact(LANES).zip(b[..split].chunks_exact(LANES));
    for ((ca, cb), co) in chunks.zip(out[..split].chunks_exact_mut(LANES)) {
        let v = op.apply_v(load(ca), load(cb));
        // max(0, v) in this order keeps NaN (see affine_inplace).
        co.copy_from_slice(&if relu { zero.fast_max(v) } else { v }.to_array());
    }
    arith_into_scalar(op, &a[split..], &b[split..], relu, &mut out[split..]);
}

pub fn arith_into_scalar(op: Arith, a: &[f32], b: &[f32], relu: bool, out: &mut [f32]) {
    for ((&x, &y), o) in a.iter().zip(b).zip(out) {
        let v = op.apply(x, y);
        *o = if relu && v < 0.0 { 0.0 } else { v };
    }
}

pub fn arith_inplace_scalar(op: Arith, a: &mut [f32], b: &[f32]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x = op.apply(*x, y);
    }
}

/// a <- a (op) s for a scalar s (the broadcast of a per-channel constant over one plane).
pub fn arith_scalar_inplace(op: Arith, a: &mut [f32], s: f32) {
    let sv = V::splat(s);
    let mut chunks = a.chunks_exact_mut(LANES);
    for c in &mut chunks {
        c.copy_from_slice(&op.apply_v(load(c), sv).to_array());
    }
    arith_scalar_inplace_scalar(op, chunks.into_remainder(), s);
}

pub fn arith_scalar_inplace_scalar(op: Arith, a: &mut [f32], s: f32) {
    for x in a {
        *x = op.apply(*x, s);
    }
}

/// Sum of all elements, accumulated in lanes (then f64 across lanes) for accuracy on long planes.
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = V::splat(0.0);
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        acc += load(c);
    }
    let lanes: f64 = acc.to_array().iter().map(|&v| v as f64).sum();
    (lanes + sum_scalar(chunks.remainder()) as f64) as f32
}

pub fn sum_scalar(x: &[f32]) -> f32 {
    x.iter().map(|&v| v as f64).sum::<f64>() as f32
}

/// acc <- max(acc, x), element by element.
pub fn max_inplace(acc: &mut [f32], x: &[f32]) {
    assert_eq!(acc.len(), x.len());
    let split = acc.len() - acc.len() % LANES;
    for (ca, cx) in acc[..split].chunks_exact_mut(LANES).zip(x[..split].chunks_exact(LANES)) {
        ca.copy_from_slice(&load(ca).max(load(cx)).to_array());
    }
    max_inplace_scalar(&mut acc[split..], &x[split..]);
}

pub fn max_inplace_scalar(acc: &mut [f32], x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a = a.max(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic test data that is not lane-aligned (exercises the tails) and has both signs.
    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 100.0 - 10.0).collect()
    }

    #[test]
    fn relu_and_clamp_propagate_nan() {
        let mut x = vec![f32::NAN; 20];
        clamp_inplace(&mut x, 0.0, f32::INFINITY);
        assert!(x.iter().all(|v| v.is_nan()));
        let mut y = vec![f32::NAN; 20];
        affine_inplace(&mut y, 1.0, 0.0, true);
        assert!(y.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn simd_kernels_match_their_scalar_twins() {
        for n in [0, 1, 15, 16, 17, 100, 1031] {
            let (x, y) = (data(n, 1), data(n, 7).iter().map(|v| v + 20.5).collect::<Vec<_>>());
            for relu in [false, true] {
                let (mut a, mut b) = (x.clone(), x.clone());
                affine_inplace(&mut a, 1.5, -0.25, relu);
                affine_inplace_scalar(&mut b, 1.5, -0.25, relu);
                assert_eq!(a, b);
            }
            let (mut a, mut b) = (x.clone(), x.clone());
            clamp_inplace(&mut a, -1.0, 6.0);
            clamp_inplace_scalar(&mut b, -1.0, 6.0);
            assert_eq!(a, b);
            for op in [Arith::Add, Arith::Sub, Arith::Mul, Arith::Div] {
                let (mut a, mut b) = (x.clone(), x.clone());
                arith_inplace(op, &mut a, &y);
                arith_inplace_scalar(op, &mut b, &y);
                assert_eq!(a, b, "{op:?}");
                let (mut a, mut b) = (x.clone(), x.clone());
                arith_scalar_inplace(op, &mut a, 3.0);
                arith_scalar_inplace_scalar(op, &mut b, 3.0);
                assert_eq!(a, b, "{op:?} scalar");
            }
            for relu in [false, true] {
                for op in [Arith::Add, Arith::Mul] {
                    let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
                    arith_into(op, &x, &y, relu, &mut a);
                    arith_into_scalar(op, &x, &y, relu, &mut b);
                    assert_eq!(a, b);
                }
            }
            let (mut a, mut b) = (x.clone(), x.clone());
            max_inplace(&mut a, &y);
            max_inplace_scalar(&mut b, &y);
            assert_eq!(a, b);
            // Sums differ only by association order: relative 1e-6 of the absolute sum.
            let scale: f32 = x.iter().map(|v| v.abs()).sum::<f32>().max(1.0);
            assert!((sum(&x) - sum_scalar(&x)).abs() <= 1e-6 * scale);
        }
    }
}
