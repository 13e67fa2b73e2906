//! Optimizers with torch.optim semantics and their state; a step runs the fused kernels of
//! `kernels::optim` over every parameter, with the gradient transform folded in. Work is split
//! into segments (whole rows for GC, 64 Ki-element chunks otherwise) run in parallel.

use rayon::prelude::*;

use super::transform::TensorAffine;
use crate::kernels::optim::{self, Adam, Sgd};
use crate::kernels::SyncPtr;
use crate::tensor::Tensor;

crate::choices::choices! {
    /// The optimizers, as torch.optim.
    pub enum OptimizerName {
        /// SGD with momentum (and Nesterov, weight decay).
        Sgd = "sgd",
        /// Adam, L2 weight decay.
        Adam = "adam",
        /// AdamW, decoupled weight decay.
        Adamw = "adamw",
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Rule {
    Sgd(Sgd),
    Adam(Adam),
}

impl Rule {
    /// The rule for a name and hyperparameters, as torch.optim takes them: `momentum` and
    /// `nesterov` for SGD only; `weight_decay` an L2 penalty (SGD, Adam) or decoupled (AdamW);
    /// Adam's betas (0.9, 0.999) and eps 1e-8. `lr` is the initial rate only: each
    /// `Trainer::step` passes the rate of its step (the caller owns the schedule).
    ///
    /// ```
    /// use edgetune::train::optim::{OptimizerName, Rule};
    /// let sgd = Rule::new(OptimizerName::Sgd, 0.01, 0.9, 5e-4, true);
    /// # let _ = sgd;
    /// ```
    pub fn new(name: OptimizerName, lr: f32, momentum: f32, weight_decay: f32, nesterov: bool) -> Rule {
        let adam = |decoupled| Rule::Adam(Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, decoupled });
        match name {
            OptimizerName::Sgd => Rule::Sgd(Sgd { lr, momentum, weight_decay, nesterov }),
            OptimizerName::Adam => adam(false),
            OptimizerName::Adamw => adam(true),
        }
    }

    pub fn with_lr(self, lr: f32) -> Rule {
        match self {
            Rule::Sgd(s) => Rule::Sgd(Sgd { lr, ..s }),
            Rule::Adam(a) => Rule::Adam(Adam { lr, ..a }),
        }
    }
}

/// An optimizer and its per-parameter state: SGD's momentum buffer, or Adam's two moments.
pub struct Optimizer {
    pub rule: Rule,
    /// Steps taken so far.
    pub steps: u64,
    /// Per parameter: momentum buffer / first moment.
    pub first: Vec<Vec<f32>>,
    /// Per parameter: second moment (Adam only; empty for SGD).
    pub second: Vec<Vec<f32>>,
}

const CHUNK: usize = 1 << 16;

impl Optimizer {
    pub fn new(rule: Rule, sizes: &[usize]) -> Optimizer {
        let zeros = |on: bool| sizes.iter().map(|&n| vec![0.0; if on { n } else { 0 }]).collect();
        let (first, second) = match rule {
            Rule::Sgd(s) => (zeros(s.momentum != 0.0), zeros(false)),
            Rule::Adam(_) => (zeros(true), zeros(true)),
        };
        Optimizer { rule, steps: 0, first, second }
    }

    /// One step at learning rate `lr` over every parameter, `affs[i]` transforming `grads[i]`.
    pub fn step(&mut self, params: &mut [Tensor], grads: &[Tensor], affs: &[TensorAffine], lr: f32) {
        self.steps += 1;
        let (rule, t) = (self.rule.with_lr(lr), self.steps);
        let adam = match rule {
            Rule::Adam(h) => Some(optim::adam_step(&h, t)),
            Rule::Sgd(_) => None,
        };
        // Segments (param, start, len) that share one affine map; disjoint, so they run in parallel.
        let mut segments = Vec::new();
        for (i, g) in grads.iter().enumerate() {
            match &affs[i] {
                TensorAffine::Rows { cols, .. } => segments.extend((0..g.len()).step_by(*cols).map(|s| (i, s, *cols))),
                TensorAffine::Whole(_) => {
                    segments.extend((0..g.len()).step_by(CHUNK).map(|s| (i, s, CHUNK.min(g.len() - s))))
                }
            }
        }
        let ptrs: Vec<[SyncPtr; 3]> = params
            .iter_mut()
            .zip(self.first.iter_mut().zip(self.second.iter_mut()))
            .map(|(p, (a, b))| [SyncPtr(p.data_mut().as_mut_ptr()), SyncPtr(a.as_mut_ptr()), SyncPtr(b.as_mut_ptr())])
            .collect();
        segments.into_par_iter().for_each(|(i, s, n)| {
            let aff = affs[i].at(s);
            let g = &grads[i].data()[s..s + n];
            let [p, a, b] = ptrs[i];
            // SAFETY: segments cover disjoint ranges [s, s+n) of parameter i and of its state
            // vectors (same lengths as the parameter, or empty and then not touched).
            let slice = |ptr: SyncPtr, on: bool| unsafe {
                if on {
                    std::slice::from_raw_parts_mut(ptr.get().add(s), n)
                } else {
                    &mut [][..]
                }
            };
            match rule {
                Rule::Sgd(h) => optim::sgd(&h, aff, t == 1, slice(p, true), g, slice(a, h.momentum != 0.0)),
                Rule::Adam(h) => {
                    let c = adam.as_ref().expect("computed for Adam");
                    optim::adam(&h, c, aff, slice(p, true), g, slice(a, true), slice(b, true))
                }
            }
        });
    }
}
