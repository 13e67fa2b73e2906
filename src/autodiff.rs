//! Reverse mode over a plan. `GradPlan` is the graph planned for training (no inference fusion;
//! BatchNorm in train or frozen mode), with `requires_grad` propagated from the trainable
//! parameters. The forward pass records, for each step whose output needs a gradient, exactly
//! what its op's backward rule `saves` (everything else is freed at its last forward use); the
//! reverse walk runs those rules from the loss back to the lowest trainable tensor.
//! `GradStore::accumulate` is the one place gradients add up (skip connections, shared weights).

use crate::error::{Error, Result};
use crate::exec::plan::{self, Plan};
use crate::exec::StepTimer;
use crate::graph::{Graph, Source, ValueId};
use crate::kernels::simd::{self, Arith};
use crate::ops::{BatchNorm, Record, Softmax};
use crate::tensor::Tensor;

crate::choices::choices! {
    /// BatchNorm behaviour while training (design.md, "Numerics").
    pub enum BnMode {
        /// Batch statistics; running statistics updated like PyTorch's `model.train()`.
        Train = "train",
        /// Running statistics, as in inference, and kept; scale and bias still train.
        Frozen = "frozen",
        /// Per layer: train where the layer's scale or bias trains, frozen where neither does
        /// (a frozen backbone keeps its statistics, as Keras' `trainable=False`).
        Auto = "auto",
    }
}

impl BnMode {
    /// Whether a BatchNorm layer uses batch statistics, given whether its scale or bias trains.
    pub fn trains_layer(self, affine_trains: bool) -> bool {
        match self {
            BnMode::Train => true,
            BnMode::Frozen => false,
            BnMode::Auto => affine_trains,
        }
    }
}

/// Gradients by value id.
pub struct GradStore {
    grads: Vec<Option<Tensor>>,
}

impl GradStore {
    fn new(n: usize) -> GradStore {
        GradStore { grads: vec![None; n] }
    }

    /// Adds `g` to the gradient of `v`: the only place where gradients are summed.
    pub fn accumulate(&mut self, v: ValueId, g: Tensor) {
        match &mut self.grads[v] {
            slot @ None => *slot = Some(g),
            Some(acc) => {
                debug_assert_eq!(acc.shape(), g.shape());
                simd::arith_inplace(Arith::Add, acc.data_mut(), g.data());
            }
        }
    }

    pub fn take(&mut self, v: ValueId) -> Option<Tensor> {
        self.grads[v].take()
    }
}

/// What one recorded forward pass leaves behind.
pub struct Tape {
    records: Vec<Option<Record>>,
    /// The tensor the loss reads (first output, or the input of a trailing Softmax).
    pub logits: Tensor,
    /// New values for parameters computed by the forward pass (BatchNorm running statistics),
    /// by value id.
    pub updates: Vec<(ValueId, Tensor)>,
}

pub struct GradPlan {
    plan: Plan,
    requires_grad: Vec<bool>,
    logits: ValueId,
    /// Value ids of the trainable initializers, in initializer order, and their shapes.
    pub params: Vec<ValueId>,
    pub param_shapes: Vec<Vec<usize>>,
    /// (node name, op type) of each step, for errors.
    names: Vec<(String, String)>,
}

impl GradPlan {
    /// Plans `graph` for training on inputs of `shapes`, differentiating the initializers with
    /// `trainable[i]` set. The loss reads the first output, or the input of a trailing Softmax.
    pub fn new(graph: &Graph, shapes: &[Vec<usize>], trainable: &[bool], bn: BnMode) -> Result<GradPlan> {
        GradPlan::build(graph, shapes, trainable, bn, true)
    }

    /// Like `new`; with `skip_softmax` false the first output itself is differentiated even when
    /// a Softmax computes it (used to check Softmax's own backward rule).
    pub fn build(
        graph: &Graph,
        shapes: &[Vec<usize>],
        trainable: &[bool],
        bn: BnMode,
        skip_softmax: bool,
    ) -> Result<GradPlan> {
        crate::exec::check_inputs(graph, shapes)?;
        let mut plan = plan::plan(graph, shapes)?;
        let chosen = graph.initializers.iter().enumerate().filter(|(i, _)| trainable[*i]).map(|(_, init)| init);
        let (params, param_shapes): (Vec<ValueId>, Vec<Vec<usize>>) =
            chosen.map(|init| (init.value, init.data.shape().to_vec())).unzip();
        for step in &mut plan.steps {
            let op: &dyn std::any::Any = step.op.as_ref();
            if let Some(b) = op.downcast_ref::<BatchNorm>() {
                // Inputs: x, scale, bias, mean, var.
                let affine_trains = step.inputs[1..3].iter().any(|v| params.contains(v));
                step.op = Box::new(BatchNorm { training: bn.trains_layer(affine_trains), ..b.clone() });
            }
        }
        let (out, out_decl) = graph.outputs.first().ok_or_else(|| Error::Config("the model has no output".into()))?;
        if out_decl.elem != crate::graph::ElemType::F32 {
            return Err(Error::data(
                format!("output '{}'", out_decl.name),
                "is not a float tensor: nothing to train on",
            ));
        }
        let producer = plan.steps.iter().position(|s| s.output == *out).ok_or_else(|| {
            Error::data(format!("output '{}'", out_decl.name), "is not computed from the input: nothing to train on")
        })?;
        let step = &plan.steps[producer];
        let op: &dyn std::any::Any = step.op.as_ref();
        let (logits, end) = match op.downcast_ref::<Softmax>().filter(|_| skip_softmax) {
            Some(_) => {
                let input = step.inputs[0];
                let p = plan.steps.iter().position(|s| s.output == input).ok_or_else(|| {
                    Error::data(
                        format!("output '{}'", out_decl.name),
                        "the Softmax input is not computed from the input",
                    )
                })?;
                (input, p + 1)
            }
            None => (*out, producer + 1),
        };
        let mut requires_grad = vec![false; plan.n_values];
        for &p in &params {
            requires_grad[p] = true;
        }
        for s in &plan.steps[..end] {
            requires_grad[s.output] = s.inputs.iter().any(|&v| requires_grad[v]);
        }
        for s in plan.steps[..end].iter().filter(|s| requires_grad[s.output]) {
            let node = &graph.nodes[s.node];
            if !crate::ops::has_backward(&node.op_type) {
                return Err(Error::node(
                    &node.name,
                    &node.op_type,
                    "this op has no backward rule, and a trainable tensor lies below it",
                ));
            }
        }
        // Steps after the logits (a trailing Softmax) do not run in training.
        plan.steps.truncate(end);
        plan.outputs = vec![logits];
        plan.compute_lifetimes();
        let names = plan
            .steps
            .iter()
            .map(|s| (graph.nodes[s.node].name.clone(), graph.nodes[s.node].op_type.clone()))
            .collect();
        Ok(GradPlan { plan, requires_grad, logits, params, param_shapes, names })
    }

    /// About how many bytes of host memory one training step on this plan takes: what the
    /// forward pass records stays alive until the backward pass, which itself holds about two
    /// activations' gradients at a time and a gradient per trainable tensor; the optimizer
    /// writes each weight into a fresh copy.
    pub fn memory_estimate(&self) -> usize {
        let plan = &self.plan;
        let recorded = |i: usize| {
            let s = &plan.steps[i];
            if !self.requires_grad[s.output] {
                return Vec::new();
            }
            let saves = s.op.saves();
            let mut v: Vec<ValueId> =
                s.inputs.iter().enumerate().filter(|(k, _)| saves.inputs & (1 << k) != 0).map(|(_, &x)| x).collect();
            if saves.output {
                v.push(s.output);
            }
            v
        };
        let largest = plan.steps.iter().map(|s| crate::tensor::numel(&s.out_shape) * 4).max().unwrap_or(0);
        let weights: usize = self.param_shapes.iter().map(|s| crate::tensor::numel(s) * 4).sum();
        plan.peak_bytes(recorded).saturating_add(largest.saturating_mul(2)).saturating_add(weights * 2)
    }

    /// Refuses (one line) a training step on the CPU that would not fit in memory.
    pub fn check_memory(&self) -> Result<()> {
        let shapes: Vec<&[usize]> =
            self.plan.inputs.iter().map(|&v| self.plan.shapes[v].as_deref().unwrap_or(&[])).collect();
        crate::memory::check_fits(self.memory_estimate(), || format!("training on inputs of shape {shapes:?}"))
    }

    /// The plan itself (the GPU path walks the same steps).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The value the loss reads.
    pub fn logits_value(&self) -> ValueId {
        self.logits
    }

    /// The planned steps, in forward order.
    pub fn steps(&self) -> &[plan::Step] {
        &self.plan.steps
    }

    /// (node name, op type) of step `i`.
    pub fn step_name(&self, i: usize) -> (&str, &str) {
        (&self.names[i].0, &self.names[i].1)
    }

    /// Whether a gradient flows to value `v`.
    pub fn requires_grad(&self, v: ValueId) -> bool {
        self.requires_grad[v]
    }

    /// The graph inputs' value ids.
    pub fn inputs(&self) -> &[ValueId] {
        &self.plan.inputs
    }

    /// Shape of the logits for these input shapes.
    pub fn logits_shape(&self) -> &[usize] {
        &self.plan.steps.last().expect("the logits' step").out_shape
    }

    /// Runs the forward pass, recording what the backward pass needs. `params` overrides the
    /// planned values of parameters (the optimizer's current weights), by value id.
    pub fn forward(&self, inputs: Vec<Tensor>, params: &[(ValueId, Tensor)]) -> Tape {
        let plan = &self.plan;
        let mut values: Vec<Option<Tensor>> = vec![None; plan.n_values];
        for (v, t) in plan.bound.iter().chain(params) {
            values[*v] = Some(t.clone());
        }
        for (&v, t) in plan.inputs.iter().zip(inputs) {
            values[v] = Some(t);
        }
        let mut records = Vec::with_capacity(plan.steps.len());
        let mut updates = Vec::new();
        for (i, step) in plan.steps.iter().enumerate() {
            let args: Vec<&Tensor> =
                step.inputs.iter().map(|&v| values[v].as_ref().expect("computed before use")).collect();
            let t = StepTimer::start();
            let fwd = step.op.forward_train(&args, &step.out_shape);
            t.report("forward", i, step);
            for (slot, t) in fwd.updates {
                updates.push((step.inputs[slot], t));
            }
            let record = self.requires_grad[step.output].then(|| {
                let saves = step.op.saves();
                Record {
                    inputs: saves.pick(&args),
                    shapes: args.iter().map(|t| t.shape().to_vec()).collect(),
                    output: saves.output.then(|| fwd.y.clone()),
                    extra: fwd.extra,
                }
            });
            records.push(record);
            values[step.output] = Some(fwd.y);
            for &v in &plan.free_after[i] {
                values[v] = None;
            }
        }
        let logits = values[self.logits].take().expect("logits computed");
        Tape { records, logits, updates }
    }

    /// The reverse walk from `dlogits` (the loss gradient at the logits). Returns the gradient
    /// of every trainable parameter, in `params` order (zeros where no path reaches one).
    pub fn backward(&self, tape: Tape, dlogits: Tensor) -> Result<Vec<Tensor>> {
        self.backward_observed(tape, dlogits, |_, _, _| {})
    }

    /// `backward`, showing `observe(step, slot, dx)` each gradient that step `step` sends to its
    /// input `slot`, before it is summed into that input's gradient (the grad-flow report
    /// splits a block input's gradient by the paths it comes back through).
    pub fn backward_observed(
        &self,
        tape: Tape,
        dlogits: Tensor,
        mut observe: impl FnMut(usize, usize, &Tensor),
    ) -> Result<Vec<Tensor>> {
        let mut grads = GradStore::new(self.plan.n_values);
        grads.accumulate(self.logits, dlogits);
        let mut records = tape.records;
        for (i, step) in self.plan.steps.iter().enumerate().rev() {
            let Some(rec) = records[i].take() else {
                continue;
            };
            let Some(dy) = grads.take(step.output) else {
                continue;
            };
            let need: Vec<bool> = step.inputs.iter().map(|&v| self.requires_grad[v]).collect();
            let t = StepTimer::start();
            let dxs =
                step.op.backward(&rec, &dy, &need).map_err(|e| Error::node(&self.names[i].0, &self.names[i].1, e))?;
            t.report("backward", i, step);
            for (slot, ((&v, dx), &n)) in step.inputs.iter().zip(dxs).zip(&need).enumerate() {
                if let (true, Some(dx)) = (n, dx) {
                    observe(i, slot, &dx);
                    grads.accumulate(v, dx);
                }
            }
        }
        Ok(self
            .params
            .iter()
            .zip(&self.param_shapes)
            .map(|(&p, shape)| grads.take(p).unwrap_or_else(|| Tensor::zeros(shape.clone())))
            .collect())
    }
}

/// Value ids of the graph's initializers that feed BatchNorm as running statistics.
pub fn running_stat_values(graph: &Graph) -> Vec<ValueId> {
    let mut out = Vec::new();
    for n in graph.nodes.iter().filter(|n| n.op_type == "BatchNormalization") {
        for v in n.inputs.iter().skip(3).flatten() {
            if matches!(graph.values[*v].source, Source::Initializer(_)) && !out.contains(v) {
                out.push(*v);
            }
        }
    }
    out
}
