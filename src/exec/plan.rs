//! Planning: the graph specialised to concrete input shapes. Shapes are inferred node by node;
//! nodes computable without running (shape sub-graphs, constant arithmetic) are folded; the
//! rest become `Step`s with their ops built and their outputs' last uses recorded, so the
//! executor can free every activation right after its last consumer.

use crate::error::{Error, Result};
use crate::fold;
use crate::graph::{Const, Dim, Graph, IntTensor, Source, ValueId};
use crate::ops::{self, BuildCtx, InputInfo, Op};
use crate::tensor::{numel, Tensor};

pub struct Step {
    /// Index of the graph node (for names in errors and reports).
    pub node: usize,
    pub op: Box<dyn Op>,
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
    pub out_shape: Vec<usize>,
}

pub struct Plan {
    pub steps: Vec<Step>,
    /// Values known before running (parameters, constants, folded results), by value id.
    pub bound: Vec<(ValueId, Tensor)>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Values to drop after each step (their last use).
    pub free_after: Vec<Vec<ValueId>>,
    /// Number of value ids, including those the planner added (fused weights).
    pub n_values: usize,
    /// The shape of every graph value the plan knows (inputs, parameters, constants, folded
    /// and computed values), by value id: what an export declares in `value_info`.
    pub shapes: Vec<Option<Vec<usize>>>,
}

enum Known {
    Static(Const),
    Param(Const),
    Runtime(Vec<usize>),
}

impl Known {
    fn shape(&self) -> &[usize] {
        match self {
            Known::Static(c) | Known::Param(c) => c.shape(),
            Known::Runtime(s) => s,
        }
    }
}

/// The batch an exporter baked into the graph and the one running now, when they differ: the
/// first input declares a fixed axis 0 (PyTorch's dynamo exporter writes the example's batch, 1,
/// there and into `Reshape` targets such as `[1, 512]`).
fn baked_batch(graph: &Graph, input_shapes: &[Vec<usize>]) -> Option<(i64, usize)> {
    let (_, decl) = graph.inputs.first()?;
    let Some(Dim::Fixed(exported)) = decl.dims.as_ref()?.first() else { return None };
    let now = *input_shapes.first()?.first()?;
    (*exported != now).then_some((*exported as i64, now))
}

/// A `Reshape` target that names the baked batch as its first entry, rewritten to the running
/// batch, when the reshaped tensor carries the batch on axis 0 and the rewritten target fits
/// it (`[1, 512]` on `[8, 512, 1, 1]` becomes `[8, 512]`).
fn rebatched_target(spec: &Const, input: &[usize], (exported, now): (i64, usize)) -> Option<Const> {
    let Const::I64(t) = spec else { return None };
    if t.shape.len() != 1 || t.data.first() != Some(&exported) || input.first() != Some(&now) {
        return None;
    }
    let mut data = t.data.clone();
    data[0] = now as i64;
    let fits = ops::Reshape::To { spec: data.clone(), allowzero: false }.apply(input).is_ok();
    fits.then(|| Const::I64(IntTensor::vector(data)))
}

/// What a step does with axis 0 of a batch-carrying input.
enum BatchUse {
    /// Keeps it as its own axis 0 (element-wise ops, convolutions, pooling, reshapes ...).
    Keeps,
    /// Moves it elsewhere (a Transpose whose permutation does not start with 0).
    Moves,
    /// Picks some of its entries (Gather or Squeeze on axis 0, a Slice of axis 0 that ends
    /// before the running batch): a baked batch makes that a different computation.
    Selects,
}

fn batch_use(ctx: &BuildCtx, now: usize) -> Result<BatchUse, String> {
    let a = ctx.attrs();
    let has_zero = |axes: &[i64], rank: usize| axes.iter().any(|&x| x == 0 || x == -(rank as i64));
    let rank = ctx.input(0).map(|i| i.shape.len()).unwrap_or(0);
    Ok(match ctx.node.op_type.as_str() {
        "Transpose" => match a.ints("perm")? {
            Some(p) if p.first() == Some(&0) => BatchUse::Keeps,
            _ if rank <= 1 => BatchUse::Keeps,
            _ => BatchUse::Moves,
        },
        "Gather" if has_zero(&[a.int("axis", 0)?], rank) => BatchUse::Selects,
        "Squeeze" => {
            let axes = if ctx.opset < 13 { a.ints("axes")? } else { ctx.const_ints(1)? };
            if axes.is_some_and(|x| has_zero(&x, rank)) {
                BatchUse::Selects
            } else {
                BatchUse::Keeps
            }
        }
        "Slice" => {
            let (ends, axes) = if ctx.opset < 10 {
                (a.ints("ends")?, a.ints("axes")?)
            } else {
                (ctx.const_ints(2)?, ctx.const_ints(3)?)
            };
            let ends = ends.unwrap_or_default();
            let axes = axes.unwrap_or_else(|| (0..ends.len() as i64).collect());
            let cut = axes.iter().zip(&ends).any(|(&x, &e)| has_zero(&[x], rank) && e < now as i64);
            if cut {
                BatchUse::Selects
            } else {
                BatchUse::Keeps
            }
        }
        _ => BatchUse::Keeps,
    })
}

/// Builds the plan of `graph` for inputs of `input_shapes` (one per graph input, in order).
/// The batch (axis 0 of the first input) is free even where the exporter baked its example's
/// batch into the graph: `Reshape` targets holding it follow the running batch.
pub fn plan(graph: &Graph, input_shapes: &[Vec<usize>]) -> Result<Plan> {
    let mut known: Vec<Option<Known>> = graph
        .values
        .iter()
        .map(|v| match &v.source {
            Source::Initializer(i) => Some(match &graph.initializers[*i].data {
                c @ Const::F32(_) => Known::Param(c.clone()),
                c @ Const::I64(_) => Known::Static(c.clone()),
            }),
            Source::Constant(c) => Some(Known::Static(c.clone())),
            Source::Input(i) => Some(Known::Runtime(input_shapes[*i].clone())),
            Source::Node { .. } => None,
        })
        .collect();
    let baked = baked_batch(graph, input_shapes);
    // Runtime values whose axis 0 is the batch: the first input, and what steps compute from
    // such values while keeping axis 0 at the batch's size.
    let mut carries_batch = vec![false; graph.values.len()];
    if let Some(&(v, _)) = graph.inputs.first() {
        carries_batch[v] = baked.is_some();
    }
    let consumers = graph.consumers();
    let graph_outputs: Vec<ValueId> = graph.outputs.iter().map(|(v, _)| *v).collect();
    let mut steps = Vec::new();
    for (ni, node) in graph.nodes.iter().enumerate() {
        let fail = |msg: String| Error::node(&node.name, &node.op_type, msg);
        for &extra in &node.outputs[1..] {
            if !consumers[extra].is_empty() || graph_outputs.contains(&extra) {
                return Err(fail(format!("output '{}' (beyond the first) is not supported", graph.value_name(extra))));
            }
        }
        let rebatched = match (baked, node.op_type.as_str(), &node.inputs[..]) {
            (Some(b), "Reshape", [Some(x), Some(target), ..]) if carries_batch[*x] => match &known[*target] {
                Some(Known::Static(spec)) => {
                    rebatched_target(spec, known[*x].as_ref().expect("topological order").shape(), b)
                }
                _ => None,
            },
            _ => None,
        };
        let inputs = node
            .inputs
            .iter()
            .enumerate()
            .map(|(slot, v)| {
                v.map(|v| {
                    let k = known[v].as_ref().expect("topological order");
                    let value = match k {
                        _ if slot == 1 && rebatched.is_some() => rebatched.as_ref(),
                        Known::Static(c) | Known::Param(c) => Some(c),
                        Known::Runtime(_) => None,
                    };
                    InputInfo { shape: k.shape(), value }
                })
            })
            .collect();
        let ctx = BuildCtx { node, opset: graph.opset, inputs };
        let all_static = node.inputs.iter().flatten().all(|&v| matches!(known[v], Some(Known::Static(_))));
        let shape_only = matches!(node.op_type.as_str(), "Shape" | "Size");
        let result = if shape_only || ops::FOLD_ONLY.contains(&node.op_type.as_str()) || all_static {
            Known::Static(fold::eval(&ctx).map_err(fail)?)
        } else {
            let build = ops::builder(&node.op_type)
                .ok_or_else(|| fail("this op needs constant inputs, but one is computed at run time".into()))?;
            let built = build(&ctx).map_err(fail)?;
            let in_shapes: Vec<&[usize]> = built
                .inputs
                .iter()
                .map(|&i| ctx.inputs.get(i).copied().flatten().map(|x| x.shape).ok_or(format!("missing input {i}")))
                .collect::<Result<_, _>>()
                .map_err(fail)?;
            let out_shape = built.op.output_shape(&in_shapes).map_err(fail)?;
            let step_inputs: Vec<ValueId> =
                built.inputs.iter().map(|&i| node.inputs[i].expect("checked above")).collect();
            for &v in &step_inputs {
                if let Some(Known::Static(Const::I64(_))) = known[v] {
                    return Err(fail(format!(
                        "integer tensor '{}' cannot feed a float computation",
                        graph.value_name(v)
                    )));
                }
            }
            let batched = node.inputs.first().copied().flatten().is_some_and(|v| carries_batch[v])
                || step_inputs.iter().any(|&v| carries_batch[v]);
            let keeps = match baked.filter(|_| batched) {
                None => false,
                Some((exported, now)) => match batch_use(&ctx, now).map_err(fail)? {
                    BatchUse::Keeps => out_shape.first() == Some(&now),
                    BatchUse::Moves => false,
                    BatchUse::Selects => {
                        return Err(fail(format!(
                            "selects along the batch axis, which the exporter baked in as {exported}: this model runs only at batch {exported} (export it with a dynamic batch to use others)"
                        )))
                    }
                },
            };
            carries_batch[node.outputs[0]] = keeps;
            steps.push(Step {
                node: ni,
                op: built.op,
                inputs: step_inputs,
                output: node.outputs[0],
                out_shape: out_shape.clone(),
            });
            Known::Runtime(out_shape)
        };
        drop(ctx);
        known[node.outputs[0]] = Some(result);
    }

    // Everything a step reads that is not computed by a step is bound up front.
    let mut bound = Vec::new();
    let mut is_bound = vec![false; graph.values.len()];
    let needed = steps.iter().flat_map(|s| s.inputs.iter()).chain(graph_outputs.iter());
    for &v in needed {
        if is_bound[v] {
            continue;
        }
        match &known[v] {
            Some(Known::Static(Const::F32(t))) | Some(Known::Param(Const::F32(t))) => {
                bound.push((v, t.clone()));
                is_bound[v] = true;
            }
            Some(Known::Static(Const::I64(_))) if graph_outputs.contains(&v) => {
                return Err(Error::data(
                    graph.value_name(v),
                    "graph output is an integer constant, not a float tensor",
                ));
            }
            _ => {}
        }
    }
    let shapes = known.iter().map(|k| k.as_ref().map(|k| k.shape().to_vec())).collect();
    let mut plan = Plan {
        shapes,
        steps,
        bound,
        inputs: graph.inputs.iter().map(|(v, _)| *v).collect(),
        outputs: graph_outputs,
        free_after: Vec::new(),
        n_values: graph.values.len(),
    };
    plan.compute_lifetimes();
    Ok(plan)
}

impl Plan {
    /// Records, for each step, the runtime values whose last reader it is.
    pub fn compute_lifetimes(&mut self) {
        let mut last = vec![None; self.n_values];
        for (i, s) in self.steps.iter().enumerate() {
            for &v in &s.inputs {
                last[v] = Some(i);
            }
        }
        let keep: Vec<bool> = (0..self.n_values).map(|v| self.outputs.contains(&v)).collect();
        self.free_after = vec![Vec::new(); self.steps.len()];
        for (v, l) in last.into_iter().enumerate() {
            if let (Some(i), false) = (l, keep[v]) {
                self.free_after[i].push(v);
            }
        }
        // A step output nobody reads (a dead branch) is dropped right away.
        for (i, s) in self.steps.iter().enumerate() {
            if !keep[s.output] && !self.steps[i + 1..].iter().any(|t| t.inputs.contains(&s.output)) {
                self.free_after[i].push(s.output);
            }
        }
    }

    /// The most bytes of run-time values (inputs and step outputs) alive at once when the steps
    /// run in order; `kept(i)` names values that stay alive from step `i` on (what a training
    /// pass records for its backward rules). Parameters and constants are not counted: they
    /// are already in memory.
    pub fn peak_bytes(&self, kept: impl Fn(usize) -> Vec<ValueId>) -> usize {
        let mut bytes = vec![0usize; self.n_values];
        for &v in &self.inputs {
            bytes[v] = self.shapes.get(v).cloned().flatten().map_or(0, |s| numel(&s) * 4);
        }
        for s in &self.steps {
            bytes[s.output] = numel(&s.out_shape) * 4;
        }
        let mut alive = vec![false; self.n_values];
        let mut now: usize = self.inputs.iter().map(|&v| bytes[v]).sum();
        self.inputs.iter().for_each(|&v| alive[v] = true);
        let mut retained = vec![false; self.n_values];
        let mut peak = now;
        for (i, s) in self.steps.iter().enumerate() {
            if !alive[s.output] {
                alive[s.output] = true;
                now += bytes[s.output];
            }
            peak = peak.max(now);
            kept(i).into_iter().for_each(|v| retained[v] = true);
            for &v in &self.free_after[i] {
                if alive[v] && !retained[v] {
                    alive[v] = false;
                    now -= bytes[v];
                }
            }
        }
        peak
    }

    /// Number of steps reading each value.
    pub fn reader_counts(&self) -> Vec<usize> {
        let mut n = vec![0; self.n_values];
        for s in &self.steps {
            for &v in &s.inputs {
                n[v] += 1;
            }
        }
        n
    }
}
