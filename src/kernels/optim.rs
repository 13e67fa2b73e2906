//! Optimizer updates as single sweeps over parameter, gradient and state, with the gradient
//! transform folded in (`ĝ = g·scale + shift`: identity, ZNorm, a GC row, or a clipping factor), so
//! a step touches each value once. Op order follows torch.optim's single-tensor code path, in
//! f32, and the SIMD kernels use exactly the scalar twins' operations (no fused multiply-add), so
//! each twin pair agrees bit for bit.

use wide::f32x16;

/// The gradient transform of one segment: ĝ = g·scale + shift.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    pub scale: f32,
    pub shift: f32,
}

impl Affine {
    pub const IDENTITY: Affine = Affine { scale: 1.0, shift: 0.0 };
}

/// torch.optim.SGD with dampening 0.
#[derive(Clone, Copy, Debug)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

/// torch.optim.Adam (`decoupled` false, weight decay as L2) or AdamW (`decoupled` true). The betas
/// are kept in f64, as torch's Python floats, so that the per-step coefficients round alike.
#[derive(Clone, Copy, Debug)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f32,
    pub weight_decay: f32,
    pub decoupled: bool,
}

/// The float32 coefficients of one Adam step, computed as torch.optim's single-tensor code does:
/// in double from its Python-float hyperparameters, each rounded once to float32. (1 − β₂ taken
/// in float32 from β₂ = 0.999f is 0.00099998713, 1.3e-5 below torch's 0.001f, and the second
/// moments were off from PyTorch's by that much.)
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// 1 − β₁ (the weight of `exp_avg.lerp_`).
    pub w1: f32,
    pub b2: f32,
    /// 1 − β₂ (`addcmul_`'s value).
    pub w2: f32,
    /// lr / (1 − β₁ᵗ).
    pub step_size: f32,
    /// √(1 − β₂ᵗ).
    pub bc2_sqrt: f32,
    /// AdamW's 1 − lr·λ.
    pub decay: f32,
}

/// The coefficients at step `t` (1-based).
pub fn adam_step(h: &Adam, t: u64) -> AdamStep {
    let bc1 = 1.0 - h.beta1.powi(t as i32);
    let bc2 = 1.0 - h.beta2.powi(t as i32);
    AdamStep {
        w1: (1.0 - h.beta1) as f32,
        b2: h.beta2 as f32,
        w2: (1.0 - h.beta2) as f32,
        step_size: (h.lr as f64 / bc1) as f32,
        bc2_sqrt: bc2.sqrt() as f32,
        decay: (1.0 - h.lr as f64 * h.weight_decay as f64) as f32,
    }
}

type V = f32x16;

fn ld(s: &[f32]) -> V {
    V::new(s.try_into().expect("16 lanes"))
}

/// One SGD step over a segment; `first` marks the step that creates the momentum buffer.
pub fn sgd(h: &Sgd, aff: Affine, first: bool, p: &mut [f32], g: &[f32], buf: &mut [f32]) {
    let split = p.len() - p.len() % 16;
    let (sc, sh, wd, mom, lr) =
        (V::splat(aff.scale), V::splat(aff.shift), V::splat(h.weight_decay), V::splat(h.momentum), V::splat(-h.lr));
    let (pv, pr) = p.split_at_mut(split);
    let (bv, br) = buf.split_at_mut(split.min(buf.len()));
    for (i, pc) in pv.chunks_exact_mut(16).enumerate() {
        let x = ld(pc);
        let mut d = ld(&g[i * 16..i * 16 + 16]) * sc + sh;
        if h.weight_decay != 0.0 {
            d += x * wd;
        }
        if h.momentum != 0.0 {
            let bc = &mut bv[i * 16..i * 16 + 16];
            let b = if first { d } else { ld(bc) * mom + d };
            bc.copy_from_slice(&b.to_array());
            d = if h.nesterov { d + b * mom } else { b };
        }
        pc.copy_from_slice(&(x + d * lr).to_array());
    }
    sgd_scalar(h, aff, first, pr, &g[split..], if h.momentum != 0.0 { br } else { &mut [] });
}

pub fn sgd_scalar(h: &Sgd, aff: Affine, first: bool, p: &mut [f32], g: &[f32], buf: &mut [f32]) {
    for i in 0..p.len() {
        let mut d = g[i] * aff.scale + aff.shift;
        if h.weight_decay != 0.0 {
            d += p[i] * h.weight_decay;
        }
        if h.momentum != 0.0 {
            let b = if first { d } else { buf[i] * h.momentum + d };
            buf[i] = b;
            d = if h.nesterov { d + b * h.momentum } else { b };
        }
        p[i] += d * -h.lr;
    }
}

/// One Adam/AdamW step over a segment with the coefficients `c` of its step. Op order as
/// torch's kernels: `m + w1·(d − m)` (lerp), `v·b2 + w2·d·d` (addcmul), `p + (−step_size·m)/denom`
/// (addcdiv).
#[allow(clippy::too_many_arguments)]
pub fn adam(h: &Adam, c: &AdamStep, aff: Affine, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let split = p.len() - p.len() % 16;
    let sp = |x: f32| V::splat(x);
    let (sc, sh, wd, decay) = (sp(aff.scale), sp(aff.shift), sp(h.weight_decay), sp(c.decay));
    let (w1, b2, w2, eps, ss, bc2) = (sp(c.w1), sp(c.b2), sp(c.w2), sp(h.eps), sp(-c.step_size), sp(c.bc2_sqrt));
    for i in (0..split).step_by(16) {
        let r = i..i + 16;
        let mut x = ld(&p[r.clone()]);
        let mut d = ld(&g[r.clone()]) * sc + sh;
        if h.weight_decay != 0.0 {
            if h.decoupled {
                x *= decay;
            } else {
                d += x * wd;
            }
        }
        let mo = ld(&m[r.clone()]);
        let mn = mo + w1 * (d - mo);
        let vn = ld(&v[r.clone()]) * b2 + w2 * d * d;
        let denom = vn.sqrt() / bc2 + eps;
        x += ss * mn / denom;
        p[r.clone()].copy_from_slice(&x.to_array());
        m[r.clone()].copy_from_slice(&mn.to_array());
        v[r].copy_from_slice(&vn.to_array());
    }
    adam_scalar(h, c, aff, &mut p[split..], &g[split..], &mut m[split..], &mut v[split..]);
}

#[allow(clippy::too_many_arguments)]
pub fn adam_scalar(h: &Adam, c: &AdamStep, aff: Affine, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    for i in 0..p.len() {
        let mut x = p[i];
        let mut d = g[i] * aff.scale + aff.shift;
        if h.weight_decay != 0.0 {
            if h.decoupled {
                x *= c.decay;
            } else {
                d += x * h.weight_decay;
            }
        }
        // torch: exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
        // param.addcdiv_(exp_avg, denom, value=-step_size)
        m[i] += c.w1 * (d - m[i]);
        v[i] = v[i] * c.b2 + c.w2 * d * d;
        let denom = v[i].sqrt() / c.bc2_sqrt + h.eps;
        p[i] = x + -c.step_size * m[i] / denom;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vecs(n: usize) -> impl Strategy<Value = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)> {
        let v = move |lo: f32, hi: f32| prop::collection::vec(lo..hi, n);
        (v(-2.0, 2.0), v(-1.0, 1.0), v(-0.5, 0.5), v(0.0, 0.3))
    }

    proptest! {
        #[test]
        fn sgd_simd_equals_scalar_and_f64((p, g, b, _) in (1usize..80).prop_flat_map(vecs), first: bool, nesterov: bool) {
            let h = Sgd { lr: 0.05, momentum: 0.9, weight_decay: 5e-4, nesterov };
            let aff = Affine { scale: 1.3, shift: -0.2 };
            let (mut p1, mut b1, mut p2, mut b2) = (p.clone(), b.clone(), p.clone(), b.clone());
            sgd(&h, aff, first, &mut p1, &g, &mut b1);
            sgd_scalar(&h, aff, first, &mut p2, &g, &mut b2);
            prop_assert_eq!(&p1, &p2);
            prop_assert_eq!(&b1, &b2);
            for i in 0..p.len() {
                // f64 reference of the same update (torch.optim.SGD's formula).
                let d = g[i] as f64 * 1.3 - 0.2 + p[i] as f64 * 5e-4;
                let bf = if first { d } else { b[i] as f64 * 0.9 + d };
                let step = if nesterov { d + 0.9 * bf } else { bf };
                prop_assert!((p1[i] as f64 - (p[i] as f64 - 0.05 * step)).abs() < 1e-6);
            }
        }

        #[test]
        fn adam_simd_equals_scalar_and_f64((p, g, m, v) in (1usize..80).prop_flat_map(vecs), decoupled: bool, t in 1u64..5) {
            let h = Adam { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-2, decoupled };
            let aff = Affine { scale: 0.7, shift: 0.1 };
            let (mut p1, mut m1, mut v1) = (p.clone(), m.clone(), v.clone());
            let (mut p2, mut m2, mut v2) = (p.clone(), m.clone(), v.clone());
            let c = adam_step(&h, t);
            adam(&h, &c, aff, &mut p1, &g, &mut m1, &mut v1);
            adam_scalar(&h, &c, aff, &mut p2, &g, &mut m2, &mut v2);
            prop_assert_eq!(&p1, &p2);
            prop_assert_eq!(&m1, &m2);
            prop_assert_eq!(&v1, &v2);
            for i in 0..p.len() {
                let mut x = p[i] as f64;
                let mut d = g[i] as f64 * 0.7 + 0.1;
                if decoupled { x *= 1.0 - 1e-5 } else { d += x * 1e-2 }
                let mm = 0.9 * m[i] as f64 + 0.1 * d;
                let vv = 0.999 * v[i] as f64 + 0.001 * d * d;
                let (bc1, bc2) = (1.0 - 0.9f64.powi(t as i32), 1.0 - 0.999f64.powi(t as i32));
                let want = x - 1e-3 / bc1 * mm / (vv.sqrt() / bc2.sqrt() + 1e-8);
                // The update is at most lr/(1-β1)·… ≈ 1e-2: 1e-6 absolute is ~1e-4 of it.
                prop_assert!((p1[i] as f64 - want).abs() < 1e-6, "{} vs {}", p1[i], want);
            }
        }
    }
}
