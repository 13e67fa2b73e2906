//! The training step: forward in record mode with the current weights, loss, backward, the
//! gradient transform, the optimizer; BatchNorm running statistics carried from step to step.
//! Owns the trainable tensors, the running statistics and the optimizer state.

use std::collections::HashMap;

use rayon::prelude::*;

use super::optim::{Optimizer, Rule};
use super::transform::{self, GradNorm};
use super::{loss, select};
use crate::autodiff::{running_stat_values, BnMode, GradPlan};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::{Const, Graph, ValueId};
use crate::tensor::Tensor;

/// What a [`Trainer`] trains and how.
pub struct TrainConfig {
    /// Which initializers train: `all`, `head` (the classifier) or a regex on initializer names
    /// (the CLI's `--train`).
    pub train: String,
    /// BatchNorm while training: `Auto` (batch statistics where the layer's scale or bias
    /// trains), `Train` (always) or `Frozen` (running statistics, never updated).
    pub bn: BnMode,
    /// The gradient transform before each optimizer step: ZNorm, Gradient Centralization,
    /// clipping by global norm, or none.
    pub norm: GradNorm,
    /// The optimizer and its hyperparameters.
    pub rule: Rule,
}

/// A trainer's tensors as it keeps them: value id, ONNX name, value.
pub type Named = (ValueId, String, Tensor);

/// One trainable tensor's optimizer state: ONNX name, first and second buffer.
pub type TensorState = (String, Vec<f32>, Vec<f32>);

/// Loss and correct predictions of one batch.
#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    pub loss: f32,
    pub correct: usize,
    pub total: usize,
}

pub struct Trainer {
    graph: Graph,
    cfg_bn: BnMode,
    norm: GradNorm,
    trainable: Vec<bool>,
    /// Trainable initializers: value id, ONNX name, current value.
    params: Vec<Named>,
    /// BatchNorm running statistics: value id, ONNX name, current value.
    running: Vec<Named>,
    pub optimizer: Optimizer,
    plans: HashMap<(Vec<usize>, bool), GradPlan>,
    /// `--device cuda`: the device copies of params, running statistics and optimizer state,
    /// which then are the current ones (the host copies above are refreshed when read).
    #[cfg(feature = "cuda")]
    gpu: Option<crate::gpu::GpuTrainer>,
}

fn float_init(graph: &Graph, v: ValueId) -> Option<(String, Tensor)> {
    graph.initializers.iter().find(|i| i.value == v).and_then(|i| match &i.data {
        Const::F32(t) => Some((i.name.clone(), t.clone())),
        Const::I64(_) => None,
    })
}

impl Trainer {
    /// A trainer of `graph`'s initializers as `cfg` selects, starting from their values in the
    /// graph (for a new classifier, call `train::head::replace_head` on the model first).
    /// Errors when the selection names no trainable float initializer.
    pub fn new(graph: Graph, cfg: TrainConfig) -> Result<Trainer> {
        let trainable = select::trainable(&graph, &cfg.train)?;
        let params: Vec<Named> = graph
            .initializers
            .iter()
            .zip(&trainable)
            .filter(|(_, t)| **t)
            .filter_map(|(i, _)| float_init(&graph, i.value).map(|(n, t)| (i.value, n, t)))
            .collect();
        let running = running_stat_values(&graph)
            .into_iter()
            .filter_map(|v| float_init(&graph, v).map(|(n, t)| (v, n, t)))
            .collect();
        let sizes: Vec<usize> = params.iter().map(|(_, _, t)| t.len()).collect();
        Ok(Trainer {
            optimizer: Optimizer::new(cfg.rule, &sizes),
            graph,
            cfg_bn: cfg.bn,
            norm: cfg.norm,
            trainable,
            params,
            running,
            plans: HashMap::new(),
            #[cfg(feature = "cuda")]
            gpu: None,
        })
    }

    /// Trains on `device` from here on: for CUDA, weights, running statistics and optimizer
    /// state move to the GPU (a one-line error where CUDA cannot run).
    pub fn set_device(&mut self, device: Device) -> Result<()> {
        crate::device::check(device)?;
        #[cfg(feature = "cuda")]
        if device == Device::Cpu && self.gpu.is_some() {
            // Back to the host: the device copies are the current ones.
            let values: HashMap<String, Tensor> = self.values()?.into_iter().collect();
            let state = self.state()?.into_iter().map(|(n, a, b)| (n, (a, b))).collect();
            self.gpu = None;
            self.restore(&values, &state, self.optimizer.steps).map_err(Error::Runtime)?;
        }
        #[cfg(feature = "cuda")]
        if device == Device::Cuda && self.gpu.is_none() {
            let o = &self.optimizer;
            let gpu = crate::gpu::GpuTrainer::new(&self.params, &self.running, &o.first, &o.second)?;
            self.gpu = Some(gpu);
        }
        Ok(())
    }

    /// Writes `model` (the model this trainer's graph came from, head replaced or not) with the
    /// trained weights and running statistics to `path`, atomically; the rest of the file stays
    /// as the model had it (see `onnx::save`).
    pub fn export(&self, model: &crate::onnx::Model, path: &std::path::Path) -> Result<()> {
        let values = self.values()?;
        crate::onnx::save(model, &crate::onnx::Export { values: &values, ..Default::default() }, path, |_| Ok(()))
    }

    /// The GPU's name when training runs on one.
    pub fn device_name(&self) -> Option<String> {
        #[cfg(feature = "cuda")]
        if let Some(g) = &self.gpu {
            return Some(g.gpu().name());
        }
        None
    }

    /// Whether weights and state live on the GPU.
    fn on_gpu(&self) -> bool {
        #[cfg(feature = "cuda")]
        return self.gpu.is_some();
        #[cfg(not(feature = "cuda"))]
        false
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The current weights and statistics to run the graph with.
    fn overrides(&self) -> Vec<(ValueId, Tensor)> {
        self.params.iter().chain(&self.running).map(|(v, _, t)| (*v, t.clone())).collect()
    }

    fn plan(&mut self, shape: &[usize], train: bool) -> Result<&GradPlan> {
        let key = (shape.to_vec(), train);
        if !self.plans.contains_key(&key) {
            let (flags, bn) = if train {
                (self.trainable.clone(), self.cfg_bn)
            } else {
                (vec![false; self.trainable.len()], BnMode::Frozen)
            };
            let plan = GradPlan::new(&self.graph, &[shape.to_vec()], &flags, bn)?;
            // Inference plans need less than the training plan that came first.
            if train && !self.on_gpu() {
                plan.check_memory()?;
            }
            self.plans.insert(key.clone(), plan);
        }
        Ok(&self.plans[&key])
    }

    /// The logits' shape for inputs of `shape` (the class count is its last dim).
    pub fn logits_shape(&mut self, shape: &[usize]) -> Result<Vec<usize>> {
        Ok(self.plan(shape, true)?.logits_shape().to_vec())
    }

    /// One optimizer step on a batch at learning rate `lr`.
    pub fn step(&mut self, x: Tensor, labels: &[i64], lr: f32) -> Result<StepStats> {
        #[cfg(feature = "cuda")]
        if self.gpu.is_some() {
            return self.step_gpu(&x, labels, lr);
        }
        let overrides = self.overrides();
        let plan = self.plan(x.shape(), true)?;
        let tape = plan.forward(vec![x], &overrides);
        let (loss, dlogits) = loss::softmax_cross_entropy(&tape.logits, labels)?;
        let stats = StepStats { loss, correct: count_correct(&tape.logits, labels), total: labels.len() };
        let updates = tape.updates.clone();
        let grads = plan.backward(tape, dlogits)?;
        drop(overrides);
        // A non-finite gradient ends the step before anything changes (weights, moments, running
        // statistics), so that a run told to skip such steps goes on from the same state.
        if let Some(i) = grads.par_iter().position_first(|g| !g.data().iter().all(|v| v.is_finite())) {
            return Err(Error::NonFinite(format!("the gradient of '{}' holds NaN or infinity", self.params[i].1)));
        }
        for (v, t) in updates {
            if let Some(slot) = self.running.iter_mut().find(|(id, _, _)| *id == v) {
                slot.2 = t;
            }
        }
        let affs = transform::plan(self.norm, &grads);
        let mut tensors: Vec<Tensor> =
            self.params.iter_mut().map(|(_, _, t)| std::mem::replace(t, Tensor::scalar(0.0))).collect();
        self.optimizer.step(&mut tensors, &grads, &affs, lr);
        for ((_, _, slot), t) in self.params.iter_mut().zip(tensors) {
            *slot = t;
        }
        Ok(stats)
    }

    /// The logits with the current weights, BatchNorm on its running statistics (inference).
    pub fn logits(&mut self, x: Tensor) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if self.gpu.is_some() {
            self.plan(x.shape(), false)?;
            let (plan, gpu) = (&self.plans[&(x.shape().to_vec(), false)], self.gpu.as_mut().expect("checked"));
            return gpu.logits(&self.graph, plan, &x);
        }
        let overrides = self.overrides();
        let plan = self.plan(x.shape(), false)?;
        Ok(plan.forward(vec![x], &overrides).logits)
    }

    /// Loss and accuracy with the current weights, BatchNorm on its running statistics.
    pub fn evaluate(&mut self, x: Tensor, labels: &[i64]) -> Result<StepStats> {
        let logits = self.logits(x)?;
        let (loss, _) = loss::softmax_cross_entropy(&logits, labels)?;
        Ok(StepStats { loss, correct: count_correct(&logits, labels), total: labels.len() })
    }

    /// ONNX names of the trained weights (the order of `state`).
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|(_, n, _)| n.as_str())
    }

    /// ONNX names of the weights, then of the running statistics (the order of `values`).
    pub fn value_names(&self) -> impl Iterator<Item = &str> {
        self.param_names().chain(self.running.iter().map(|(_, n, _)| n.as_str()))
    }

    /// Every initializer this trainer changes (weights and running statistics), by ONNX name.
    pub fn values(&self) -> Result<Vec<(String, Tensor)>> {
        let names = self.value_names().map(str::to_string);
        #[cfg(feature = "cuda")]
        if let Some(gpu) = &self.gpu {
            let (p, r) = gpu.values()?;
            return Ok(names.zip(p.into_iter().chain(r)).collect());
        }
        Ok(names.zip(self.params.iter().chain(&self.running).map(|(_, _, t)| t.clone())).collect())
    }

    /// Puts back weights, statistics and optimizer state saved from `values` and `state`
    /// (a checkpoint of a run with the same model and options).
    pub fn restore(
        &mut self,
        values: &HashMap<String, Tensor>,
        state: &HashMap<String, (Vec<f32>, Vec<f32>)>,
        steps: u64,
    ) -> Result<(), String> {
        for (_, name, t) in self.params.iter_mut().chain(self.running.iter_mut()) {
            let v = values.get(name).ok_or(format!("no value for '{name}'"))?;
            if v.len() != t.len() {
                return Err(format!("'{name}' has {} values, the model {}", v.len(), t.len()));
            }
            *t = v.clone().into_reshaped(t.shape().to_vec());
        }
        for (i, (_, name, _)) in self.params.iter().enumerate() {
            let (a, b) = state.get(name).ok_or(format!("no optimizer state for '{name}'"))?;
            if a.len() != self.optimizer.first[i].len() || b.len() != self.optimizer.second[i].len() {
                return Err(format!("optimizer state of '{name}' has the wrong size"));
            }
            self.optimizer.first[i].clone_from(a);
            self.optimizer.second[i].clone_from(b);
        }
        self.optimizer.steps = steps;
        #[cfg(feature = "cuda")]
        if let Some(gpu) = &mut self.gpu {
            let o = &self.optimizer;
            gpu.load(&self.params, &self.running, &o.first, &o.second).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The optimizer state of every trainable tensor, by ONNX name: (first, second) moment or
    /// (momentum buffer, empty).
    pub fn state(&self) -> Result<Vec<TensorState>> {
        let names = self.param_names().map(str::to_string);
        let o = &self.optimizer;
        #[cfg(feature = "cuda")]
        if let Some(gpu) = &self.gpu {
            let used = (o.first.iter().any(|v| !v.is_empty()), o.second.iter().any(|v| !v.is_empty()));
            return Ok(names.zip(gpu.state(used)?).map(|(n, (a, b))| (n, a, b)).collect());
        }
        Ok(names.zip(o.first.iter().zip(&o.second)).map(|(n, (a, b))| (n, a.clone(), b.clone())).collect())
    }

    /// `step` on the GPU: the optimizer's step count moves only when the step went through.
    #[cfg(feature = "cuda")]
    fn step_gpu(&mut self, x: &Tensor, labels: &[i64], lr: f32) -> Result<StepStats> {
        self.plan(x.shape(), true)?;
        let plan = &self.plans[&(x.shape().to_vec(), true)];
        let t = self.optimizer.steps + 1;
        let how = (self.norm, self.optimizer.rule.with_lr(lr), t);
        let gpu = self.gpu.as_mut().expect("checked by step");
        let out = gpu.step(&self.graph, plan, x, labels, how)?;
        self.optimizer.steps = t;
        Ok(StepStats { loss: out.loss, correct: count_correct(&out.logits, labels), total: labels.len() })
    }
}

fn count_correct(logits: &Tensor, labels: &[i64]) -> usize {
    let k = logits.shape().last().copied().unwrap_or(1).max(1);
    logits
        .data()
        .chunks(k)
        .zip(labels)
        .filter(|(row, &l)| row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as i64) == Some(l))
        .count()
}
