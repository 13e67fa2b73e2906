//! Walking plans on the GPU: inference over the unfused plan, and the recorded forward pass and
//! reverse walk of a `GradPlan` (the CPU's `autodiff`, step for step, with device tensors).

use std::collections::HashMap;

use cudarc::driver::PushKernelArg;

use super::ops::{GOp, GRecord};
use super::{Bound, DTensor, Gpu};
use crate::autodiff::{BnMode, GradPlan};
use crate::error::{Error, Result};
use crate::exec::plan::{self, Plan};
use crate::graph::{Graph, ValueId};
use crate::tensor::Tensor;
use crate::train::loss;

/// The GPU form of every step of `plan`, or an error naming the first node that has none.
pub fn gpu_ops(graph: &Graph, plan: &Plan) -> Result<Vec<GOp>> {
    plan.steps
        .iter()
        .map(|s| {
            let node = &graph.nodes[s.node];
            GOp::of(s.op.as_ref(), s.inputs.len()).map_err(|e| Error::node(&node.name, &node.op_type, e))
        })
        .collect()
}

/// What a recorded forward pass leaves on the device.
pub struct GTape {
    pub records: Vec<Option<GRecord>>,
    pub logits: DTensor,
    /// New values of parameters (BatchNorm running statistics), by value id.
    pub updates: Bound,
}

/// What one forward pass leaves: every value still alive, the records, the running-statistic updates.
struct Pass {
    values: Vec<Option<DTensor>>,
    records: Vec<Option<GRecord>>,
    updates: Bound,
}

/// Runs `plan` with `bound` values (weights, constants) and the graph `inputs`. With `record`
/// (whether each value needs a gradient), keeps what each such step's backward rule reads.
fn forward(
    gpu: &Gpu,
    plan: &Plan,
    ops: &[GOp],
    (bound, inputs): (&[(ValueId, DTensor)], Vec<DTensor>),
    training: bool,
    record: Option<&dyn Fn(ValueId) -> bool>,
) -> Result<Pass> {
    let mut values: Vec<Option<DTensor>> = vec![None; plan.n_values];
    for (v, t) in bound {
        values[*v] = Some(t.clone());
    }
    for (&v, t) in plan.inputs.iter().zip(inputs) {
        values[v] = Some(t);
    }
    let mut records = Vec::with_capacity(plan.steps.len());
    let mut updates = Vec::new();
    for (i, (step, op)) in plan.steps.iter().zip(ops).enumerate() {
        let args: Vec<&DTensor> =
            step.inputs.iter().map(|&v| values[v].as_ref().expect("computed before use")).collect();
        let fwd = op.forward(gpu, &args, &step.out_shape, training)?;
        for (slot, t) in fwd.updates {
            updates.push((step.inputs[slot], t));
        }
        let keep = record.is_some_and(|r| r(step.output));
        records.push(keep.then(|| GRecord::new(step.op.saves(), &args, &fwd.y, fwd.extra)));
        values[step.output] = Some(fwd.y);
        for &v in &plan.free_after[i] {
            values[v] = None;
        }
    }
    Ok(Pass { values, records, updates })
}

/// Inference on the GPU: plans per input shape, weights uploaded once per plan.
pub struct Inference {
    gpu: Gpu,
    graph: Graph,
    plans: HashMap<Vec<Vec<usize>>, Prepared>,
}

struct Prepared {
    plan: Plan,
    ops: Vec<GOp>,
    bound: Bound,
}

impl Inference {
    /// Opens the GPU for `graph`; fails with a one-line error where CUDA is missing.
    pub fn new(graph: Graph) -> Result<Inference> {
        Ok(Inference { gpu: Gpu::open()?, graph, plans: HashMap::new() })
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Plans, maps and uploads the model for these input shapes, once.
    fn prepare(&mut self, shapes: &[Vec<usize>]) -> Result<()> {
        if !self.plans.contains_key(shapes) {
            crate::exec::check_inputs(&self.graph, shapes)?;
            let plan = plan::plan(&self.graph, shapes)?;
            let ops = gpu_ops(&self.graph, &plan)?;
            let bound = self.gpu.upload_bound(plan.bound.iter())?;
            self.plans.insert(shapes.to_vec(), Prepared { plan, ops, bound });
        }
        Ok(())
    }

    /// Runs the model on host inputs and returns every graph output.
    pub fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        self.prepare(&shapes)?;
        let inputs = inputs.iter().map(|t| self.gpu.upload(t)).collect::<Result<_>>()?;
        let p = &self.plans[&shapes];
        let pass = forward(&self.gpu, &p.plan, &p.ops, (&p.bound, inputs), false, None)?;
        p.plan
            .outputs
            .iter()
            .map(|&v| self.gpu.download(pass.values[v].as_ref().expect("graph output computed")))
            .collect()
    }
}

/// The recorded forward pass of a training plan with `bound` values (weights, statistics)
/// and the graph inputs, on the device.
pub fn record(
    gpu: &Gpu,
    gp: &GradPlan,
    ops: &[GOp],
    bound: &[(ValueId, DTensor)],
    inputs: Vec<DTensor>,
) -> Result<GTape> {
    let needs = |v: ValueId| gp.requires_grad(v);
    let mut pass = forward(gpu, gp.plan(), ops, (bound, inputs), true, Some(&needs))?;
    let logits = pass.values[gp.logits_value()].take().expect("logits computed");
    Ok(GTape { records: pass.records, logits, updates: pass.updates })
}

/// The reverse walk from `dlogits`: the gradient of every trainable parameter, in `params`
/// order (zeros where no path reaches one).
pub fn backward(
    gpu: &Gpu,
    gp: &GradPlan,
    ops: &[GOp],
    mut records: Vec<Option<GRecord>>,
    dlogits: DTensor,
) -> Result<Vec<DTensor>> {
    let plan = gp.plan();
    let mut grads: Vec<Option<DTensor>> = vec![None; plan.n_values];
    grads[gp.logits_value()] = Some(dlogits);
    for (i, step) in plan.steps.iter().enumerate().rev() {
        let (Some(rec), Some(dy)) = (records[i].take(), grads[step.output].take()) else {
            continue;
        };
        let need: Vec<bool> = step.inputs.iter().map(|&v| gp.requires_grad(v)).collect();
        let dxs = ops[i].backward(gpu, &rec, &dy, &need).map_err(|e| {
            let (name, op) = gp.step_name(i);
            Error::node(name, op, e.to_string())
        })?;
        for ((&v, dx), &n) in step.inputs.iter().zip(dxs).zip(&need) {
            if let (true, Some(dx)) = (n, dx) {
                // The one place gradients add up (skip connections), as `GradStore::accumulate`.
                grads[v] = Some(match grads[v].take() {
                    None => dx,
                    Some(acc) => gpu.add(&acc, &dx)?,
                });
            }
        }
    }
    gp.params
        .iter()
        .zip(&gp.param_shapes)
        .map(|(&p, shape)| match grads[p].take() {
            Some(g) => Ok(g),
            None => Ok(gpu.tensor(shape, gpu.zeros::<f32>(shape.iter().product())?)),
        })
        .collect()
}

/// Mean softmax cross-entropy of device logits and its gradient (design.md's contract, as
/// `train::loss`): labels checked on the host, per-row terms and the gradient on the device.
pub fn cross_entropy(gpu: &Gpu, logits: &DTensor, labels: &[i64]) -> Result<(f32, DTensor)> {
    let (n, k) = loss::check_logits(&logits.shape, labels)?;
    let labels32: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
    let labels_d = gpu.to_device(&labels32)?;
    let (mut rows, mut grad) = (gpu.zeros::<f64>(n)?, gpu.zeros::<f32>(n * k)?);
    let (ni, ki) = (n as i32, k as i32);
    let mut l = gpu.launch("cross_entropy");
    l.arg(&*logits.buf).arg(&labels_d).arg(&mut rows).arg(&mut grad).arg(&ni).arg(&ki);
    gpu.go(l, n, "cross-entropy")?;
    let loss = loss::mean_loss(gpu.to_host(&rows)?.iter().sum(), n)?;
    Ok((loss, gpu.tensor(&logits.shape, grad)))
}

/// A training plan on the GPU with its weights uploaded: `edgetune grad`, `bench grad`, and the
/// GPU-vs-CPU tests (`vjp`).
pub struct GradSession {
    gpu: Gpu,
    gp: GradPlan,
    ops: Vec<GOp>,
    bound: Bound,
    /// The input shapes the plan is for.
    shapes: Vec<Vec<usize>>,
}

impl GradSession {
    /// Plans `graph` for inputs of `shape`, differentiating the initializers with `trainable` set.
    pub fn new(graph: &Graph, shape: &[usize], trainable: &[bool], bn: BnMode) -> Result<GradSession> {
        let shapes = vec![shape.to_vec()];
        GradSession::from_plan(graph, GradPlan::new(graph, &shapes, trainable, bn)?, shapes)
    }

    /// A session for `gp`, planned for inputs of `shapes`.
    pub fn from_plan(graph: &Graph, gp: GradPlan, shapes: Vec<Vec<usize>>) -> Result<GradSession> {
        let gpu = Gpu::open()?;
        let ops = gpu_ops(graph, gp.plan())?;
        let bound = gpu.upload_bound(gp.plan().bound.iter())?;
        Ok(GradSession { gpu, gp, ops, bound, shapes })
    }

    /// The recorded forward pass on host `inputs` (refused unless they have the planned shapes).
    fn tape(&self, inputs: &[Tensor]) -> Result<GTape> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        if shapes != self.shapes {
            return Err(Error::data("input", format!("shapes {shapes:?}, but the GPU plan is for {:?}", self.shapes)));
        }
        let inputs = inputs.iter().map(|t| self.gpu.upload(t)).collect::<Result<_>>()?;
        record(&self.gpu, &self.gp, &self.ops, &self.bound, inputs)
    }

    /// Loss and the gradients of the trainable initializers (in initializer order) on one batch,
    /// left on the device. (The batch goes up and the loss comes back: what a step of
    /// `edgetune grad` costs.)
    pub fn run(&self, x: &Tensor, labels: &[i64]) -> Result<(f32, Vec<DTensor>)> {
        let tape = self.tape(std::slice::from_ref(x))?;
        let (loss, dlogits) = cross_entropy(&self.gpu, &tape.logits, labels)?;
        Ok((loss, backward(&self.gpu, &self.gp, &self.ops, tape.records, dlogits)?))
    }

    /// `run`, with the gradients downloaded.
    pub fn gradients(&self, x: &Tensor, labels: &[i64]) -> Result<(f32, Vec<Tensor>)> {
        let (loss, grads) = self.run(x, labels)?;
        Ok((loss, self.download_all(&grads)?))
    }

    /// The vector-Jacobian product: the plan's output (the logits) for `inputs`, and the gradient
    /// of every trainable parameter when the output's gradient is `seed`.
    pub fn vjp(&self, inputs: &[Tensor], seed: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
        let tape = self.tape(inputs)?;
        let y = self.gpu.download(&tape.logits)?;
        let grads = backward(&self.gpu, &self.gp, &self.ops, tape.records, self.gpu.upload(seed)?)?;
        Ok((y, self.download_all(&grads)?))
    }

    fn download_all(&self, ts: &[DTensor]) -> Result<Vec<Tensor>> {
        ts.iter().map(|t| self.gpu.download(t)).collect()
    }

    /// The GPU's name.
    pub fn name(&self) -> String {
        self.gpu.name()
    }

    /// The training plan (the same steps the CPU runs).
    pub fn plan(&self) -> &GradPlan {
        &self.gp
    }

    /// Shape of the logits for this plan's input shape.
    pub fn logits_shape(&self) -> &[usize] {
        self.gp.logits_shape()
    }

    /// Waits for the queued work (for timings).
    pub fn sync(&self) -> Result<()> {
        self.gpu.sync()
    }
}
