//! The training step on the GPU: weights, running statistics and optimizer state live on the
//! device; a step records the forward pass, takes the loss, walks back, checks the gradients
//! are finite, computes the gradient transform's affine maps on the device (ZNorm's reduction
//! included) and runs the fused optimizer kernels. `train::Trainer` owns the loop and calls this
//! when `--device cuda` is chosen; the host copies are refreshed only when asked for.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaViewMut, PushKernelArg};

use super::exec::{backward, cross_entropy, gpu_ops, record, GTape};
use super::ops::GOp;
use super::{Bound, DTensor, Gpu, OrFail};
use crate::autodiff::GradPlan;
use crate::device::ZnormTimes;
use crate::error::{Error, Result};
use crate::graph::{Graph, ValueId};
use crate::kernels::optim::adam_step;
use crate::tensor::Tensor;
use crate::train::optim::Rule;
use crate::train::trainer::Named;
use crate::train::transform::GradNorm;

/// Device state of a `Trainer`: tensors in the trainer's order.
pub struct GpuTrainer {
    gpu: Gpu,
    /// Value ids of the parameters and of the running statistics; the parameters' names.
    param_ids: Vec<ValueId>,
    running_ids: Vec<ValueId>,
    names: Vec<String>,
    params: Vec<DTensor>,
    running: Vec<DTensor>,
    /// Momentum buffer / first moment, second moment (one-element placeholders where unused).
    first: Vec<CudaSlice<f32>>,
    second: Vec<CudaSlice<f32>>,
    /// Per plan (input shape, training): the ops and the constants bound besides the weights.
    plans: HashMap<(Vec<usize>, bool), (Vec<GOp>, Bound)>,
}

/// What a step reports: the loss and the logits (on the host, for the accuracy).
pub struct GpuStep {
    pub loss: f32,
    pub logits: Tensor,
}

impl GpuTrainer {
    /// Uploads a trainer's weights, running statistics and optimizer state (`first`/`second` may
    /// be empty vectors where the rule keeps none).
    pub fn new(params: &[Named], running: &[Named], first: &[Vec<f32>], second: &[Vec<f32>]) -> Result<GpuTrainer> {
        let ids = |v: &[Named]| v.iter().map(|(id, _, _)| *id).collect();
        let mut t = GpuTrainer {
            gpu: Gpu::open()?,
            param_ids: ids(params),
            running_ids: ids(running),
            names: params.iter().map(|(_, n, _)| n.clone()).collect(),
            params: Vec::new(),
            running: Vec::new(),
            first: Vec::new(),
            second: Vec::new(),
            plans: HashMap::new(),
        };
        t.load(params, running, first, second)?;
        Ok(t)
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Current weights and running statistics, downloaded.
    pub fn values(&self) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        let down = |ts: &[DTensor]| ts.iter().map(|t| self.gpu.download(t)).collect::<Result<Vec<_>>>();
        Ok((down(&self.params)?, down(&self.running)?))
    }

    /// Optimizer state, downloaded (`used[i]`: whether the rule keeps that buffer, else empty).
    pub fn state(&self, used: (bool, bool)) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let down = |s: &CudaSlice<f32>, on: bool| if on { self.gpu.to_host(s) } else { Ok(Vec::new()) };
        self.first.iter().zip(&self.second).map(|(a, b)| Ok((down(a, used.0)?, down(b, used.1)?))).collect()
    }

    /// Replaces every device tensor (at the start, and after `--resume`), same order as `new`.
    pub fn load(&mut self, params: &[Named], running: &[Named], first: &[Vec<f32>], second: &[Vec<f32>]) -> Result<()> {
        let gpu = &self.gpu;
        let up = |ts: &[Named]| ts.iter().map(|(_, _, t)| gpu.upload(t)).collect::<Result<Vec<_>>>();
        let state = |v: &[Vec<f32>]| {
            v.iter().map(|s| gpu.to_device(if s.is_empty() { &[0.0][..] } else { s })).collect::<Result<Vec<_>>>()
        };
        (self.params, self.running, self.first, self.second) =
            (up(params)?, up(running)?, state(first)?, state(second)?);
        Ok(())
    }

    /// The forward pass (recorded when `train`) of `gp` with the current weights.
    fn tape(&mut self, graph: &Graph, gp: &GradPlan, train: bool, x: &Tensor) -> Result<GTape> {
        let key = (x.shape().to_vec(), train);
        if !self.plans.contains_key(&key) {
            let ops = gpu_ops(graph, gp.plan())?;
            let ours = |v: &ValueId| self.param_ids.contains(v) || self.running_ids.contains(v);
            let consts = self.gpu.upload_bound(gp.plan().bound.iter().filter(|(v, _)| !ours(v)))?;
            self.plans.insert(key.clone(), (ops, consts));
        }
        let (ops, consts) = &self.plans[&key];
        let mut bound = consts.clone();
        bound.extend(self.param_ids.iter().copied().zip(self.params.iter().cloned()));
        bound.extend(self.running_ids.iter().copied().zip(self.running.iter().cloned()));
        record(&self.gpu, gp, ops, &bound, vec![self.gpu.upload(x)?])
    }

    /// The logits with the current weights under an inference-mode plan.
    pub fn logits(&mut self, graph: &Graph, gp: &GradPlan, x: &Tensor) -> Result<Tensor> {
        let tape = self.tape(graph, gp, false, x)?;
        self.gpu.download(&tape.logits)
    }

    /// One training step of `gp` at optimizer step `t` (1-based) with `rule` (its learning rate
    /// set).
    pub fn step(
        &mut self,
        graph: &Graph,
        gp: &GradPlan,
        x: &Tensor,
        labels: &[i64],
        (norm, rule, t): (GradNorm, Rule, u64),
    ) -> Result<GpuStep> {
        let tape = self.tape(graph, gp, true, x)?;
        let (loss, dlogits) = cross_entropy(&self.gpu, &tape.logits, labels)?;
        let logits = self.gpu.download(&tape.logits)?;
        let ops = &self.plans[&(x.shape().to_vec(), true)].0;
        let grads = backward(&self.gpu, gp, ops, tape.records, dlogits)?;
        // Everything below changes state: first make sure the gradients are finite.
        let (affs, bad) = self.transform(norm, &grads)?;
        if let Some(i) = bad {
            return Err(Error::NonFinite(format!("the gradient of '{}' holds NaN or infinity", self.names[i])));
        }
        for (v, t) in tape.updates {
            if let Some(i) = self.running_ids.iter().position(|&id| id == v) {
                self.running[i] = t;
            }
        }
        self.update(&grads, affs, rule, t)?;
        Ok(GpuStep { loss, logits })
    }

    /// Strided partial sums of one tensor (mode as `tensor_partials`), summed in order and
    /// scaled into `out`; sets `bad` when an element is not finite.
    fn tensor_sum(
        &self,
        g: &DTensor,
        mode: i32,
        mean: Option<&CudaSlice<f64>>,
        scale: f64,
        bad: &mut CudaViewMut<i32>,
        out: &mut CudaViewMut<f64>,
    ) -> Result<()> {
        let n = g.len();
        let parts = (n / 1024).clamp(1, 1 << 16);
        let mut part = self.gpu.zeros::<f64>(parts)?;
        let dummy = self.gpu.zeros::<f64>(1)?;
        let (nn, pi) = (n as i64, parts as i32);
        let mut l = self.gpu.launch("tensor_partials");
        l.arg(&*g.buf).arg(&nn).arg(mean.unwrap_or(&dummy)).arg(&mode).arg(&mut part).arg(&pi).arg(bad);
        self.gpu.go(l, parts, "gradient statistics")?;
        let one = 1i32;
        let mut l = self.gpu.launch("sum_parts");
        l.arg(&part).arg(out).arg(&scale).arg(&one).arg(&pi);
        self.gpu.go(l, 1, "gradient statistics")
    }

    /// The transform's affine map of each gradient, `[scale, shift per row…]` and the row
    /// length, computed on the device; and the first gradient holding NaN or infinity. One
    /// download for all the finiteness flags (and one for clipping's squares).
    #[allow(clippy::type_complexity)]
    fn transform(&self, norm: GradNorm, grads: &[DTensor]) -> Result<(Vec<(CudaSlice<f32>, usize)>, Option<usize>)> {
        let gpu = &self.gpu;
        let (mut flags, mut sums) = (gpu.zeros::<i32>(grads.len())?, gpu.zeros::<f64>(grads.len())?);
        let mut affs = Vec::with_capacity(grads.len());
        for (i, g) in grads.iter().enumerate() {
            let n = g.len();
            let (mut bad, mut sum) = (flags.slice_mut(i..i + 1), sums.slice_mut(i..i + 1));
            let whole = n.max(1);
            let aff = match norm {
                GradNorm::ZNorm { eps, matrices_only } => {
                    let (mut mean, mut var) = (gpu.zeros::<f64>(1)?, gpu.zeros::<f64>(1)?);
                    self.tensor_sum(g, 0, None, 1.0 / n.max(1) as f64, &mut bad, &mut mean.slice_mut(..))?;
                    if n <= 1 || (matrices_only && g.shape.len() <= 1) {
                        (gpu.to_device(&[1.0f32, 0.0])?, whole)
                    } else {
                        self.tensor_sum(g, 1, Some(&mean), 1.0 / n as f64, &mut bad, &mut var.slice_mut(..))?;
                        let mut aff = gpu.zeros::<f32>(2)?;
                        let mut l = gpu.launch("znorm_map");
                        l.arg(&mean).arg(&var).arg(&eps).arg(&mut aff);
                        gpu.go(l, 1, "ZNorm")?;
                        (aff, whole)
                    }
                }
                GradNorm::Gc if g.shape.len() > 1 && n > 0 => {
                    self.tensor_sum(g, 0, None, 1.0, &mut bad, &mut sum)?;
                    let (rows, cols) = (g.shape[0], n / g.shape[0]);
                    let mut aff = gpu.zeros::<f32>(1 + rows)?;
                    let (r, c) = (rows as i32, cols as i64);
                    let mut l = gpu.launch("gc_map");
                    l.arg(&*g.buf).arg(&mut aff).arg(&r).arg(&c);
                    gpu.go(l, rows, "Gradient Centralization")?;
                    (aff, cols)
                }
                // Σ g² per tensor, for the global norm below.
                GradNorm::Clip { .. } => {
                    self.tensor_sum(g, 2, None, 1.0, &mut bad, &mut sum)?;
                    (gpu.zeros::<f32>(2)?, whole)
                }
                GradNorm::None | GradNorm::Gc => {
                    self.tensor_sum(g, 0, None, 1.0, &mut bad, &mut sum)?;
                    (gpu.to_device(&[1.0f32, 0.0])?, whole)
                }
            };
            affs.push(aff);
        }
        let first_bad = gpu.to_host(&flags)?.iter().position(|&f| f != 0);
        if let (GradNorm::Clip { max_norm }, None) = (norm, first_bad) {
            // As `transform::plan`: the squares added in tensor order, in double.
            let total: f64 = gpu.to_host(&sums)?.iter().sum();
            let coef = (max_norm as f64 / (total.sqrt() + 1e-6)).min(1.0) as f32;
            for (aff, _) in &mut affs {
                *aff = gpu.to_device(&[coef, 0.0])?;
            }
        }
        Ok((affs, first_bad))
    }

    /// The fused optimizer kernel over every parameter, each with its gradient's affine map.
    fn update(&mut self, grads: &[DTensor], affs: Vec<(CudaSlice<f32>, usize)>, rule: Rule, t: u64) -> Result<()> {
        for (i, (g, (aff, cols))) in grads.iter().zip(affs).enumerate() {
            self.update_one(i, g, &aff, cols, rule, t)?;
        }
        Ok(())
    }

    fn update_one(
        &mut self,
        i: usize,
        g: &DTensor,
        aff: &CudaSlice<f32>,
        cols: usize,
        rule: Rule,
        t: u64,
    ) -> Result<()> {
        let n = g.len();
        let (nn, cl) = (n as i64, cols as i64);
        let p = unique(&self.gpu, &mut self.params[i])?;
        let (a, b) = (&mut self.first[i], &mut self.second[i]);
        match rule {
            Rule::Sgd(h) => {
                let (nesterov, first) = (h.nesterov as i32, (t == 1) as i32);
                let mut l = self.gpu.launch("sgd_step");
                l.arg(p).arg(&*g.buf).arg(a).arg(aff).arg(&cl).arg(&h.lr).arg(&h.momentum).arg(&h.weight_decay);
                l.arg(&nesterov).arg(&first).arg(&nn);
                self.gpu.go(l, n, "SGD step")
            }
            Rule::Adam(h) => {
                let (decoupled, c) = (h.decoupled as i32, adam_step(&h, t));
                let mut l = self.gpu.launch("adam_step");
                l.arg(p).arg(&*g.buf).arg(a).arg(b).arg(aff).arg(&cl).arg(&h.eps).arg(&h.weight_decay).arg(&decoupled);
                l.arg(&c.w1).arg(&c.b2).arg(&c.w2).arg(&c.step_size).arg(&c.bc2_sqrt).arg(&c.decay).arg(&nn);
                self.gpu.go(l, n, "Adam step")
            }
        }
    }
}

/// The tensor's buffer, copied first if anything else still holds it.
fn unique<'a>(gpu: &Gpu, t: &'a mut DTensor) -> Result<&'a mut CudaSlice<f32>> {
    if Arc::get_mut(&mut t.buf).is_none() {
        let copy = gpu.stream.clone_dtod(&*t.buf).or_fail("copy")?;
        t.buf = Arc::new(copy);
    }
    Ok(Arc::get_mut(&mut t.buf).expect("unique after the copy"))
}

/// Times ZNorm on the GPU over tensors of `sizes` (pseudo-random values).
pub fn znorm_bench(sizes: &[usize], iters: usize) -> Result<ZnormTimes> {
    use crate::timing::{time_ms, time_pair_ms};
    use crate::train::optim::OptimizerName;

    let host = |seed: u32| -> Vec<Tensor> {
        let v = |(i, &n): (usize, &usize)| Tensor::from_vec([n], crate::tensor::lcg_values(n, seed + i as u32));
        sizes.iter().enumerate().map(v).collect()
    };
    let (p, g) = (host(4), host(3));
    let zeros: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
    let named: Vec<Named> = p.into_iter().enumerate().map(|(i, t)| (i, format!("t{i}"), t)).collect();
    let mut t = GpuTrainer::new(&named, &[], &zeros, &zeros)?;
    let grads = g.iter().map(|x| t.gpu.upload(x)).collect::<Result<Vec<_>>>()?;
    let mut out = sizes.iter().map(|&n| t.gpu.zeros::<f32>(n)).collect::<Result<Vec<_>>>()?;
    let identity = t.gpu.to_device(&[1.0f32, 0.0])?;
    // x·aff[0] + aff[1] of every gradient into `out`.
    let sweep = |gpu: &Gpu, affs: &[&CudaSlice<f32>], out: &mut [CudaSlice<f32>]| -> Result<()> {
        for ((g, aff), o) in grads.iter().zip(affs).zip(out.iter_mut()) {
            let (one, n) = (1i32, g.len() as i64);
            let (scale, shift) = (aff.slice(0..1), aff.slice(1..2));
            let mut l = gpu.launch("channel_affine");
            l.arg(&*g.buf).arg(o).arg(&scale).arg(&shift).arg(&one).arg(&n).arg(&n);
            gpu.go(l, g.len(), "sweep")?;
        }
        Ok(())
    };
    let norm = GradNorm::ZNorm { eps: 1e-8, matrices_only: false };
    // The floor and ZNorm timed alternately, as on the CPU (`bench znorm`).
    let identities = vec![&identity; grads.len()];
    let mut out_znorm = sizes.iter().map(|&n| t.gpu.zeros::<f32>(n)).collect::<Result<Vec<_>>>()?;
    let (floor_ms, znorm_ms) = time_pair_ms(
        iters,
        || {
            sweep(&t.gpu, &identities, &mut out)?;
            t.gpu.sync()
        },
        || {
            let (affs, _) = t.transform(norm, &grads)?;
            sweep(&t.gpu, &affs.iter().map(|a| &a.0).collect::<Vec<_>>(), &mut out_znorm)?;
            t.gpu.sync()
        },
    )?;
    let rule = Rule::new(OptimizerName::Adam, 1e-3, 0.0, 0.0, false);
    let znorm_adam_ms = time_ms(iters, || {
        let (affs, _) = t.transform(norm, &grads)?;
        t.update(&grads, affs, rule, 1)?;
        t.gpu.sync()
    })?;
    Ok(ZnormTimes { gpu: t.gpu.name(), floor_ms, znorm_ms, znorm_adam_ms })
}
