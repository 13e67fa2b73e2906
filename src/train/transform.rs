//! Gradient transforms, applied after backward and before the optimizer (design.md, "Numerics").
//! Each is computed as per-segment affine maps `ĝ = g·scale + shift` that the optimizer kernels
//! apply on the fly, so the transform costs one statistics pass and no extra write:
//! - ZNorm (Yun 2024): per tensor with more than one element, μ = mean(g), σ = population std,
//!   ĝ = (g − μ)/(σ + ε); one-element tensors unchanged;
//! - Gradient Centralization (Yong et al. 2020): for ndim > 1, each output channel's row minus
//!   its mean;
//! - clipping by global norm (torch.nn.utils.clip_grad_norm_): all gradients times
//!   min(1, max_norm / (‖g‖ + 1e-6)).

use std::str::FromStr;

use rayon::prelude::*;

use crate::kernels::moments::{moments, moments_par, moments_scalar, sum_squares};
use crate::kernels::optim::Affine;
use crate::kernels::simd;
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GradNorm {
    None,
    /// `matrices_only`: leave tensors with ndim ≤ 1 (biases, BatchNorm scales) unchanged.
    ZNorm {
        eps: f32,
        matrices_only: bool,
    },
    Gc,
    Clip {
        max_norm: f32,
    },
}

/// ZNorm's ε unless set otherwise (`--znorm-eps`).
pub const ZNORM_EPS: f32 = 1e-8;

crate::choices::choices! {
    /// Which gradients ZNorm standardizes (`--znorm-scope`).
    pub enum ZnormScope (default All) {
        /// Every tensor with more than one element.
        All = "all",
        /// Only weights with ndim > 1 (biases and BatchNorm scales unchanged).
        Matrices = "matrices",
    }
}

impl GradNorm {
    /// This transform with ZNorm's ε and scope set where given (the command line takes them as
    /// options of their own: `--grad-norm znorm --znorm-eps E --znorm-scope S`); other
    /// transforms are returned unchanged.
    pub fn with_znorm(self, eps: Option<f32>, scope: Option<ZnormScope>) -> GradNorm {
        match self {
            GradNorm::ZNorm { eps: e, matrices_only } => GradNorm::ZNorm {
                eps: eps.unwrap_or(e),
                matrices_only: scope.map_or(matrices_only, |s| s == ZnormScope::Matrices),
            },
            other => other,
        }
    }

    /// ZNorm's ε and scope (the defaults for another transform).
    pub fn znorm_options(&self) -> (f32, ZnormScope) {
        match *self {
            GradNorm::ZNorm { eps, matrices_only: true } => (eps, ZnormScope::Matrices),
            GradNorm::ZNorm { eps, matrices_only: false } => (eps, ZnormScope::All),
            _ => (ZNORM_EPS, ZnormScope::All),
        }
    }
}

/// The form `--grad-norm` takes (ZNorm's ε and scope are options of their own).
impl std::fmt::Display for GradNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GradNorm::None => write!(f, "none"),
            GradNorm::ZNorm { .. } => write!(f, "znorm"),
            GradNorm::Gc => write!(f, "gc"),
            GradNorm::Clip { max_norm } => write!(f, "clip:{max_norm}"),
        }
    }
}

impl FromStr for GradNorm {
    type Err = String;
    /// `none`, `znorm`, `gc` or `clip:MAXNORM`, in any case (as the other named choices).
    fn from_str(s: &str) -> Result<GradNorm, String> {
        let lower = s.to_ascii_lowercase();
        match lower.as_str() {
            "none" => Ok(GradNorm::None),
            "znorm" => Ok(GradNorm::ZNorm { eps: ZNORM_EPS, matrices_only: false }),
            "gc" => Ok(GradNorm::Gc),
            _ => match lower.strip_prefix("clip:").map(str::parse::<f32>) {
                Some(Ok(m)) if m > 0.0 && m.is_finite() => Ok(GradNorm::Clip { max_norm: m }),
                _ => Err(format!("'{s}' is not none, znorm, gc or clip:MAXNORM (MAXNORM > 0)")),
            },
        }
    }
}

/// How one gradient tensor is transformed.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorAffine {
    Whole(Affine),
    /// One shift per row of `cols` elements (GC), common scale.
    Rows {
        cols: usize,
        scale: f32,
        shifts: Vec<f32>,
    },
}

impl TensorAffine {
    /// The affine map of element `i`.
    pub fn at(&self, i: usize) -> Affine {
        match self {
            TensorAffine::Whole(a) => *a,
            TensorAffine::Rows { cols, scale, shifts } => Affine { scale: *scale, shift: shifts[i / cols] },
        }
    }

    /// The transformed gradient, materialised (reports and tests; the optimizer never needs it).
    pub fn apply(&self, g: &Tensor) -> Tensor {
        let data = g.data().iter().enumerate().map(|(i, &v)| {
            let a = self.at(i);
            v * a.scale + a.shift
        });
        Tensor::from_vec(g.shape(), data.collect())
    }
}

/// ZNorm's map for one tensor: identity for a single element.
pub fn znorm_affine(g: &[f32], eps: f32) -> Affine {
    if g.len() <= 1 {
        return Affine::IDENTITY;
    }
    // Large tensors sum their blocks on all threads; the result is the same blocks' sums.
    let stats = if g.len() >= 1 << 22 { moments_par(g) } else { moments(g) };
    znorm_map(g.len(), stats, eps)
}

/// ZNorm applied in place to every tensor (tensors in parallel, large ones in parallel chunks):
/// the statistics pass, then one read-and-write sweep. `use_simd` false runs the scalar twins
/// (for the SIMD-gain figure of `edgetune bench znorm`). (Sweeping each worker's part back to
/// front, to start on what the statistics pass left in L2, measured slower: 5.2 against 4.1 ms
/// over ResNet-50's gradients, from the extra fork-join per large tensor.)
pub fn znorm_inplace(grads: &mut [Vec<f32>], eps: f32, use_simd: bool) {
    grads.par_iter_mut().for_each(|g| {
        let a = if use_simd { znorm_affine(g, eps) } else { znorm_map(g.len(), moments_scalar(g), eps) };
        g.par_chunks_mut(1 << 16).for_each(|c| {
            if use_simd {
                simd::affine_inplace(c, a.scale, a.shift, false)
            } else {
                simd::affine_inplace_scalar(c, a.scale, a.shift, false)
            }
        });
    });
}

/// `(g − μ)/(σ + ε)` as `g·scale + shift`, with μ and σ rounded to f32 as torch computes them;
/// the identity for one-element tensors.
pub fn znorm_map(len: usize, (mean, var): (f64, f64), eps: f32) -> Affine {
    if len <= 1 {
        return Affine::IDENTITY;
    }
    let (mu, sigma) = (mean as f32, var.sqrt() as f32);
    let scale = 1.0 / (sigma + eps);
    Affine { scale, shift: -mu * scale }
}

/// GC's map for one tensor: each row (first axis) minus its mean; identity for ndim ≤ 1.
pub fn gc_affine(g: &Tensor) -> TensorAffine {
    if g.rank() <= 1 || g.is_empty() {
        return TensorAffine::Whole(Affine::IDENTITY);
    }
    let cols = g.len() / g.shape()[0];
    let shifts = g.data().chunks(cols).map(|row| -(moments(row).0 as f32)).collect();
    TensorAffine::Rows { cols, scale: 1.0, shifts }
}

/// The transform of every gradient (tensors in parallel).
pub fn plan(norm: GradNorm, grads: &[Tensor]) -> Vec<TensorAffine> {
    match norm {
        GradNorm::None => vec![TensorAffine::Whole(Affine::IDENTITY); grads.len()],
        GradNorm::ZNorm { eps, matrices_only } => grads
            .par_iter()
            .map(|g| {
                let skip = matrices_only && g.rank() <= 1;
                TensorAffine::Whole(if skip { Affine::IDENTITY } else { znorm_affine(g.data(), eps) })
            })
            .collect(),
        GradNorm::Gc => grads.par_iter().map(gc_affine).collect(),
        GradNorm::Clip { max_norm } => {
            // Collected, then added in order: the same result however the work was scheduled.
            let squares: Vec<f64> = grads.par_iter().map(|g| sum_squares(g.data())).collect();
            let total = squares.iter().sum::<f64>().sqrt();
            let coef = (max_norm as f64 / (total + 1e-6)).min(1.0) as f32;
            vec![TensorAffine::Whole(Affine { scale: coef, shift: 0.0 }); grads.len()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_derived_values() {
        // A constant gradient has σ = 0: ZNorm maps it to (g − μ)/ε = 0.
        let c = Tensor::from_vec([4], vec![2.5; 4]);
        let z = TensorAffine::Whole(znorm_affine(c.data(), 1e-8)).apply(&c);
        assert!(z.data().iter().all(|&v| v == 0.0));
        // One element: unchanged.
        let one = Tensor::from_vec([1], vec![3.0]);
        assert_eq!(TensorAffine::Whole(znorm_affine(one.data(), 1e-8)).apply(&one).data(), &[3.0]);
        // [1, 2, 3, 4]: μ = 2.5, σ = √1.25; ĝ = (g − 2.5)/√1.25 = ±0.4472, ±1.3416.
        let g = Tensor::from_vec([4], vec![1.0, 2.0, 3.0, 4.0]);
        let z = TensorAffine::Whole(znorm_affine(g.data(), 0.0)).apply(&g);
        let s = 1.25f32.sqrt();
        for (a, b) in z.data().iter().zip([-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s]) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // GC on [[1, 3], [10, 20]]: rows minus their means 2 and 15.
        let m = Tensor::from_vec([2, 2], vec![1.0, 3.0, 10.0, 20.0]);
        assert_eq!(gc_affine(&m).apply(&m).data(), &[-1.0, 1.0, -5.0, 5.0]);
        // GC leaves vectors alone.
        assert_eq!(gc_affine(&g), TensorAffine::Whole(Affine::IDENTITY));
        // Clip: ‖(3, 4)‖ = 5 > 1 scales by 1/(5 + 1e-6); below the limit nothing changes.
        let v = Tensor::from_vec([2], vec![3.0, 4.0]);
        let clipped = plan(GradNorm::Clip { max_norm: 1.0 }, std::slice::from_ref(&v))[0].apply(&v);
        assert!((clipped.data()[0] - 0.6).abs() < 1e-6 && (clipped.data()[1] - 0.8).abs() < 1e-6);
        let kept = plan(GradNorm::Clip { max_norm: 10.0 }, std::slice::from_ref(&v))[0].apply(&v);
        assert_eq!(kept.data(), v.data());
    }

    #[test]
    fn znorm_inplace_matches_the_definition_on_small_and_large_tensors() {
        // Sizes: one element, small, and two over the 4M elements from which the statistics are
        // summed in parallel parts; a large mean plus a ramp, so that the parts' sums differ.
        let sizes = [1usize, 1000, (1 << 22) + 1, (1 << 22) + 4099];
        let grads: Vec<Vec<f32>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let noise = crate::tensor::lcg_values(n, i as u32 + 5).into_iter();
                noise.enumerate().map(|(j, v)| 100.0 + v + 10.0 * j as f32 / n as f32).collect()
            })
            .collect();
        for simd in [true, false] {
            for threads in [1, 2, 3] {
                let mut got = grads.clone();
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| znorm_inplace(&mut got, 1e-8, simd));
                for (g, z) in grads.iter().zip(&got) {
                    let (m, v) = moments_scalar(g);
                    let want = |x: f32| if g.len() == 1 { x as f64 } else { (x as f64 - m) / (v.sqrt() + 1e-8) };
                    let err = g.iter().zip(z).map(|(&x, &y)| (y as f64 - want(x)).abs()).fold(0.0, f64::max);
                    // |ĝ| ≲ 2 here; f32 rounding of μ, σ and the product: a few 1e-5 with |g| ≈ 100.
                    assert!(err < 1e-4, "n {} simd {simd} threads {threads}: error {err}", g.len());
                }
            }
        }
    }

    #[test]
    fn parsing() {
        assert_eq!("clip:0.5".parse::<GradNorm>(), Ok(GradNorm::Clip { max_norm: 0.5 }));
        assert!("clip:-1".parse::<GradNorm>().is_err());
        assert!("zorm".parse::<GradNorm>().is_err());
        // ε and scope set on ZNorm only, and read back as a checkpoint records them.
        let z = "znorm".parse::<GradNorm>().unwrap().with_znorm(Some(1e-6), Some(ZnormScope::Matrices));
        assert_eq!(z, GradNorm::ZNorm { eps: 1e-6, matrices_only: true });
        assert_eq!(z.znorm_options(), (1e-6, ZnormScope::Matrices));
        assert_eq!(GradNorm::Gc.with_znorm(Some(1e-6), None), GradNorm::Gc);
        assert_eq!(GradNorm::Gc.znorm_options(), (ZNORM_EPS, ZnormScope::All));
        // Any case, as the named choices (`--bn TRAIN`).
        assert_eq!("ZNorm".parse::<GradNorm>(), "znorm".parse::<GradNorm>());
        assert_eq!("Clip:2".parse::<GradNorm>(), Ok(GradNorm::Clip { max_norm: 2.0 }));
    }
}
