//! BatchNormalization over axis 1 (`[N, C, ...]`).
//! Inference and frozen training: `y = (x - mean) / sqrt(var + eps) · γ + β` with the running
//! statistics, one multiply and add per element. Training mode (PyTorch semantics): batch
//! mean and biased variance normalise; the running statistics move to
//! `momentum · old + (1 − momentum) · batch` with the unbiased batch variance (ONNX momentum 0.9 is
//! PyTorch's 0.1).

use rayon::prelude::*;

use super::{BuildCtx, Built, Op, Record, Saves, TrainForward};
use crate::kernels::{self, simd};
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct BatchNorm {
    pub epsilon: f32,
    /// ONNX momentum: the weight of the old running value.
    pub momentum: f32,
    /// Batch statistics in `forward_train` (set by the training planner for `--bn train`).
    pub training: bool,
}

pub fn build(ctx: &BuildCtx) -> Result<Built, String> {
    // ONNX training_mode=1 (opset 14+) normalises with the batch statistics even at inference.
    if ctx.attrs().int("training_mode", 0)? != 0 {
        return Err("training_mode=1 (batch statistics at inference) is not supported; \
                    `finetune --bn train` trains with batch statistics from a model saved in inference mode"
            .into());
    }
    let epsilon = ctx.attrs().float("epsilon", 1e-5)?;
    let momentum = ctx.attrs().float("momentum", 0.9)?;
    Built::new(BatchNorm { epsilon, momentum, training: false }, [0, 1, 2, 3, 4])
}

impl BatchNorm {
    /// Per-channel (scale, shift) that the inference form applies.
    pub fn folded(&self, gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> = gamma.iter().zip(var).map(|(g, v)| g / (v + self.epsilon).sqrt()).collect();
        let shift = beta.iter().zip(mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        (scale, shift)
    }
}

/// Per-channel sums of `f(plane, channel)` over every `[n, c]` plane, accumulated in f64.
fn channel_sums<const K: usize>(planes: usize, c: usize, f: impl Fn(usize) -> [f64; K] + Sync + Send) -> Vec<[f64; K]> {
    let per_plane: Vec<[f64; K]> = (0..planes).into_par_iter().map(f).collect();
    let mut out = vec![[0.0; K]; c];
    for (i, v) in per_plane.iter().enumerate() {
        for k in 0..K {
            out[i % c][k] += v[k];
        }
    }
    out
}

kernels::fma_fn! {
    /// One plane of training BatchNorm: `out = (x·σ⁻¹ + shift)·γ + β`, two fused multiply-adds.
    fn normalize(out: &mut [f32], x: &[f32], coef: [f32; 4]) {
        let [s, h, g, b] = coef;
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v.mul_add(s, h).mul_add(g, b);
        }
    }
}

kernels::fma_fn! {
    /// Σ dy·x̂ over one plane, x̂ recomputed as `normalize` rounded it.
    fn dy_dot_xhat(dy: &[f32], x: &[f32], s: f32, h: f32) -> f64 {
        dy.iter().zip(x).map(|(&a, &b)| a as f64 * b.mul_add(s, h) as f64).sum()
    }
}

kernels::fma_fn! {
    /// One plane of training BatchNorm's dx: `k·(dy − mean dy − x̂·mean(dy·x̂))`.
    fn train_dx(out: &mut [f32], dy: &[f32], x: &[f32], coef: [f32; 5]) {
        let [k, mb, mg, s, h] = coef;
        for ((o, &gv), &xv) in out.iter_mut().zip(dy).zip(x) {
            *o = k * (gv - mb - xv.mul_add(s, h) * mg);
        }
    }
}

/// Per-channel batch mean and biased variance of `[n, c, plane]` data: each plane's mean and
/// variance in f64 (`plane_moments`), merged per channel with Chan et al.'s pairwise formula
/// (M2 = Σ M2ᵢ + Σ nᵢ(μᵢ − μ)²: no cancellation between a large mean and a small spread).
/// f64 throughout: dγ = Σ dy·x̂ cancels heavily, and f32 statistics moved ResNet-18's dγ by ~2e-3.
fn batch_moments(x: &[f32], plane: usize, c: usize) -> (Vec<f64>, Vec<f64>) {
    let planes = x.len() / plane.max(1);
    let per_plane: Vec<(f64, f64)> = x.par_chunks(plane.max(1)).map(plane_moments).collect();
    let per_channel = (planes / c.max(1)) as f64;
    let mut mean = vec![0.0f64; c];
    for (i, (m, _)) in per_plane.iter().enumerate() {
        mean[i % c] += m / per_channel;
    }
    let mut var = vec![0.0f64; c];
    for (i, (m, v)) in per_plane.iter().enumerate() {
        var[i % c] += (v + (m - mean[i % c]).powi(2)) / per_channel;
    }
    (mean, var)
}

/// (mean, population variance) of one plane in f64: a sum, then the squared deviations from the
/// mean (the plane is still in cache). Eight independent f64 lanes, so the compiler vectorises
/// the sums without reassociating any one of them.
fn plane_moments(p: &[f32]) -> (f64, f64) {
    fn lanes(p: &[f32], f: impl Fn(f32) -> f64) -> f64 {
        let mut acc = [0.0f64; 8];
        let mut chunks = p.chunks_exact(8);
        for ch in &mut chunks {
            for k in 0..8 {
                acc[k] += f(ch[k]);
            }
        }
        acc.iter().sum::<f64>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f64>()
    }
    if p.is_empty() {
        return (0.0, 0.0);
    }
    let n = p.len() as f64;
    let mean = lanes(p, |v| v as f64) / n;
    (mean, lanes(p, |v| (v as f64 - mean).powi(2)) / n)
}

fn apply_per_channel(x: &[f32], plane: usize, c: usize, scale: &[f32], shift: &[f32]) -> Vec<f32> {
    let mut out = x.to_vec();
    out.par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(i, p)| simd::affine_inplace(p, scale[i % c], shift[i % c], false));
    out
}

impl Op for BatchNorm {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let x = inputs[0];
        if x.len() < 2 {
            return Err(format!("input must have a channel axis, got shape {x:?}"));
        }
        for (i, name) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "var")] {
            if inputs[i] != [x[1]] {
                return Err(format!("{name} shape {:?} does not match {} channels", inputs[i], x[1]));
            }
        }
        Ok(x.to_vec())
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let (scale, shift) = self.folded(inputs[1].data(), inputs[2].data(), inputs[3].data(), inputs[4].data());
        let plane: usize = out_shape[2..].iter().product();
        Tensor::from_vec(out_shape, apply_per_channel(inputs[0].data(), plane, out_shape[1], &scale, &shift))
    }

    fn saves(&self) -> Saves {
        if self.training {
            Saves::inputs(&[0, 1])
        } else {
            Saves::inputs(&[0, 1, 3, 4])
        }
    }

    fn forward_train(&self, inputs: &[&Tensor], out_shape: &[usize]) -> TrainForward {
        if !self.training {
            return TrainForward { y: self.forward(inputs, out_shape), extra: Vec::new(), updates: Vec::new() };
        }
        let x = inputs[0].data();
        let c = out_shape[1];
        let plane: usize = out_shape[2..].iter().product();
        let (mean, var) = batch_moments(x, plane, c);
        let inv_std: Vec<f32> = var.iter().map(|v| (1.0 / (v + self.epsilon as f64).sqrt()) as f32).collect();
        let shift: Vec<f32> = mean.iter().zip(&inv_std).map(|(mu, s)| -(*mu as f32) * s).collect();
        let (gamma, beta) = (inputs[1].data(), inputs[2].data());
        // y = γ·x̂ + β with x̂ = x·σ⁻¹ − μ·σ⁻¹, both rounded as two fused multiply-adds (PyTorch's
        // rounding, which the optimizer references need), in one sweep; backward recomputes x̂
        // from the saved x the same way (nothing else is stored).
        let mut y = vec![0.0f32; x.len()];
        y.par_chunks_mut(plane.max(1)).zip(x.par_chunks(plane.max(1))).enumerate().for_each(|(i, (out, p))| {
            let ch = i % c;
            let (s, h, g, b) = (inv_std[ch], shift[ch], gamma[ch], beta[ch]);
            normalize(out, p, [s, h, g, b])
        });
        let m = (x.len() / c) as f64;
        let mom = self.momentum as f64;
        let new_mean =
            inputs[3].data().iter().zip(&mean).map(|(&old, &b)| (mom * old as f64 + (1.0 - mom) * b) as f32).collect();
        let unbiased = m / (m - 1.0).max(1.0);
        let new_var = inputs[4]
            .data()
            .iter()
            .zip(&var)
            .map(|(&old, &b)| (mom * old as f64 + (1.0 - mom) * b * unbiased) as f32)
            .collect();
        TrainForward {
            y: Tensor::from_vec(out_shape, y),
            extra: vec![Tensor::from_vec([c], inv_std), Tensor::from_vec([c], shift)],
            updates: vec![(3, Tensor::from_vec([c], new_mean)), (4, Tensor::from_vec([c], new_var))],
        }
    }

    /// Training: dβ = Σdy, dγ = Σdy·x̂, dx = γ·σ⁻¹/M · (M·dy − dβ − x̂·dγ).
    /// Frozen: with s = γ/√(var+ε): dx = dy·s, dγ = Σdy·(x−mean)/√(var+ε), dβ = Σdy.
    fn backward(&self, rec: &Record, dy: &Tensor, need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        let shape = dy.shape();
        let c = shape[1];
        let plane: usize = shape[2..].iter().product();
        let planes = dy.len() / plane.max(1);
        let g = dy.data();
        let gamma = rec.input(1).data();
        // x̂ = x·σ⁻¹ + shift, recomputed per element exactly as the forward pass rounded it.
        let (inv_std, shift): (Vec<f32>, Vec<f32>) = if self.training {
            (rec.extra[0].data().to_vec(), rec.extra[1].data().to_vec())
        } else {
            let (mean, var) = (rec.input(3).data(), rec.input(4).data());
            let inv: Vec<f32> = var.iter().map(|v| 1.0 / (v + self.epsilon).sqrt()).collect();
            let shift = mean.iter().zip(&inv).map(|(m, s)| -m * s).collect();
            (inv, shift)
        };
        let x = rec.input(0).data();
        let sums = channel_sums(planes, c, |i| {
            let (gp, xp) = (&g[i * plane..(i + 1) * plane], &x[i * plane..(i + 1) * plane]);
            let (s, h) = (inv_std[i % c], shift[i % c]);
            [gp.iter().map(|&v| v as f64).sum(), dy_dot_xhat(gp, xp, s, h)]
        });
        let dbeta: Vec<f32> = sums.iter().map(|s| s[0] as f32).collect();
        let dgamma: Vec<f32> = sums.iter().map(|s| s[1] as f32).collect();
        let dx = need[0].then(|| {
            let mut dx = vec![0.0f32; g.len()];
            let m = (g.len() / c) as f32;
            dx.par_chunks_mut(plane.max(1)).enumerate().for_each(|(i, out)| {
                let ch = i % c;
                let (gp, xp) = (&g[i * plane..(i + 1) * plane], &x[i * plane..(i + 1) * plane]);
                let k = gamma[ch] * inv_std[ch];
                if self.training {
                    let (mb, mg, s, h) = (dbeta[ch] / m, dgamma[ch] / m, inv_std[ch], shift[ch]);
                    train_dx(out, gp, xp, [k, mb, mg, s, h]);
                } else {
                    for (o, &gv) in out.iter_mut().zip(gp) {
                        *o = k * gv;
                    }
                }
            });
            Tensor::from_vec(shape, dx)
        });
        Ok(vec![
            dx,
            need[1].then(|| Tensor::from_vec([c], dgamma)),
            need[2].then(|| Tensor::from_vec([c], dbeta)),
            None,
            None,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::Attr;
    use crate::ops::testing::{ctx, node};

    #[test]
    fn training_mode_is_refused_not_run_with_the_running_statistics() {
        // ONNX BatchNormalization-14/15 with training_mode=1 normalises with the batch statistics;
        // the inference form here uses the running ones, so it must refuse rather than differ.
        let inputs: Vec<(Vec<usize>, Option<crate::graph::Const>)> =
            [vec![2, 3, 4, 4], vec![3], vec![3], vec![3], vec![3]].into_iter().map(|s| (s, None)).collect();
        let train = node("BatchNormalization", vec![("training_mode", Attr::Int(1))]);
        let err = build(&ctx(&train, 15, &inputs)).err().expect("training_mode=1 must be refused");
        assert!(err.contains("training_mode"), "{err}");
        let infer = node("BatchNormalization", vec![("training_mode", Attr::Int(0))]);
        assert!(build(&ctx(&infer, 15, &inputs)).is_ok());
    }
}
