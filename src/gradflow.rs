//! The gradient-overlap diagnostic (Yun 2024, "Mitigating Gradient Overlap in Deep Residual
//! Networks with Gradient Normalization"). At a residual Add `y = skip + branch`, the gradient
//! that reaches the block's input `x` is the sum of what comes back through the skip path
//! (identity, or a projection shortcut) and what comes back through the branch. The report gives
//! both norms, their cosine and the norm of their sum, for every residual Add, from one backward
//! pass: each gradient a step sends to `x` is seen (`GradPlan::backward_observed`) and added to
//! the side that step belongs to.
//!
//! An Add counts as residual when both inputs are computed, one block input `x` feeds both (for
//! an identity skip, `x` is the skip input itself; otherwise the latest value both inputs depend
//! on), and every step that reads `x` lies on exactly one of the two sides. Then skip + branch is
//! the whole gradient at `x`, which is what `edgetune grad` would report there. The skip side of
//! a projection is the side with fewer steps.

use crate::autodiff::GradPlan;
use crate::error::Result;
use crate::graph::ValueId;
use crate::kernels::moments::moments;
use crate::kernels::simd::{self, Arith};
use crate::tensor::Tensor;
use crate::train::loss;
use crate::train::transform::znorm_map;

/// A residual Add found in a plan.
#[derive(Clone, Debug)]
pub struct ResidualAdd {
    /// The Add's node name.
    pub node: String,
    /// The block input `x`.
    pub input: ValueId,
    /// Whether the skip path computes something (a projection shortcut) rather than identity.
    pub projection: bool,
    /// (step, input slot) of every edge into `x`, with `true` for the skip side.
    edges: Vec<(usize, usize, bool)>,
}

/// The gradient through one residual Add's two paths.
#[derive(Clone, Debug, PartialEq)]
pub struct AddFlow {
    pub node: String,
    /// Name of the block input `x`.
    pub input: String,
    pub projection: bool,
    pub skip_norm: f64,
    pub branch_norm: f64,
    /// cos∠(skip, branch); 0 when either is zero.
    pub cosine: f64,
    /// ‖skip + branch‖: the norm of the whole gradient at `x`.
    pub sum_norm: f64,
}

/// One trainable tensor's gradient statistics, before and after ZNorm.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorFlow {
    pub name: String,
    pub numel: usize,
    pub mean: f64,
    pub std: f64,
    pub znorm_mean: f64,
    pub znorm_std: f64,
}

pub struct Report {
    pub loss: f32,
    pub adds: Vec<AddFlow>,
    pub tensors: Vec<TensorFlow>,
}

/// Bit sets over steps.
#[derive(Clone)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn union(&mut self, o: &Bits) {
        self.0.iter_mut().zip(&o.0).for_each(|(a, b)| *a |= b);
    }
    fn count_outside(&self, o: &Bits) -> u32 {
        self.0.iter().zip(&o.0).map(|(a, b)| (a & !b).count_ones()).sum()
    }
}

/// Every residual Add of `plan`, in forward order.
pub fn residual_adds(plan: &GradPlan) -> Vec<ResidualAdd> {
    let steps = plan.steps();
    let n = steps.len();
    let mut producer = std::collections::HashMap::new();
    // ancestors[i]: the steps whose outputs step i's output depends on, i included.
    let mut ancestors: Vec<Bits> = Vec::with_capacity(n);
    for (i, s) in steps.iter().enumerate() {
        let mut a = Bits::new(n);
        a.set(i);
        for v in &s.inputs {
            if let Some(&p) = producer.get(v) {
                a.union(&ancestors[p]);
            }
        }
        ancestors.push(a);
        producer.insert(s.output, i);
    }
    let empty = Bits::new(n);
    let anc = |v: ValueId| producer.get(&v).map_or(&empty, |&p| &ancestors[p]);
    // Whether computing `v` reads `x` (or `v` is `x`).
    let depends = |v: ValueId, x: ValueId| v == x || (0..n).any(|s| anc(v).has(s) && steps[s].inputs.contains(&x));
    let computed = |v: ValueId| producer.contains_key(&v) || plan.inputs().contains(&v);
    let mut out = Vec::new();
    for (a, s) in steps.iter().enumerate() {
        let [u, v] = s.inputs[..] else { continue };
        if plan.step_name(a).1 != "Add" || u == v || !computed(u) || !computed(v) {
            continue;
        }
        if !plan.requires_grad(u) || !plan.requires_grad(v) {
            continue;
        }
        // The block input and which Add input is the skip side.
        let (x, skip) = if depends(v, u) {
            (u, u)
        } else if depends(u, v) {
            (v, v)
        } else {
            // The latest value both sides read: a step output, or a graph input.
            let latest = (0..a).rev().map(|i| steps[i].output).chain(plan.inputs().iter().copied());
            let Some(x) = latest.filter(|&x| x != u && x != v).find(|&x| depends(u, x) && depends(v, x)) else {
                continue;
            };
            let len = |w: ValueId| anc(w).count_outside(anc(x));
            (x, if len(u) <= len(v) { u } else { v })
        };
        let branch = if skip == u { v } else { u };
        if !plan.requires_grad(x) {
            continue;
        }
        // Every reader of x must lie on exactly one side.
        let mut edges = Vec::new();
        let mut clean = true;
        for (c, cs) in steps.iter().enumerate() {
            for (slot, _) in cs.inputs.iter().enumerate().filter(|(_, &w)| w == x) {
                // An identity skip is the Add itself reading x; a projection, the steps below it.
                let on_skip = if skip == x { c == a } else { anc(skip).has(c) };
                let on_branch = anc(branch).has(c);
                match (on_skip, on_branch) {
                    (true, false) => edges.push((c, slot, true)),
                    (false, true) => edges.push((c, slot, false)),
                    _ => clean = false,
                }
            }
        }
        if clean && edges.iter().any(|e| e.2) && edges.iter().any(|e| !e.2) {
            out.push(ResidualAdd { node: plan.step_name(a).0.to_string(), input: x, projection: skip != x, edges });
        }
    }
    out
}

/// One forward and backward pass on (`x`, `labels`) with the gradient at every residual Add's
/// input split by path, and every trainable tensor's gradient statistics before and after ZNorm
/// with `eps`. `value_name` names values for the report; `param_names` the trainable tensors in
/// `plan.params` order.
pub fn measure(
    plan: &GradPlan,
    adds: &[ResidualAdd],
    x: Tensor,
    labels: &[i64],
    eps: f32,
    value_name: impl Fn(ValueId) -> String,
    param_names: &[String],
) -> Result<Report> {
    let tape = plan.forward(vec![x], &[]);
    let (loss, dlogits) = loss::softmax_cross_entropy(&tape.logits, labels)?;
    // One edge can feed several Adds' block inputs (two Adds sharing readers of one value).
    let mut route: std::collections::HashMap<(usize, usize), Vec<(usize, usize)>> = Default::default();
    for (k, add) in adds.iter().enumerate() {
        for &(step, slot, skip) in &add.edges {
            route.entry((step, slot)).or_default().push((k, skip as usize));
        }
    }
    // sides[k] = [branch, skip] gradient at add k's input.
    let mut sides: Vec<[Option<Tensor>; 2]> = vec![[None, None]; adds.len()];
    let grads = plan.backward_observed(tape, dlogits, |step, slot, dx| {
        for &(k, side) in route.get(&(step, slot)).into_iter().flatten() {
            match &mut sides[k][side] {
                Some(acc) => simd::arith_inplace(Arith::Add, acc.data_mut(), dx.data()),
                empty => *empty = Some(dx.clone()),
            }
        }
    })?;
    // An Add the loss does not depend on (a dead branch, an auxiliary output) gets no gradient
    // on one side or both: it has nothing to report.
    let adds = adds
        .iter()
        .zip(sides)
        .filter_map(|(add, [branch, skip])| Some((add, skip?, branch?)))
        .map(|(add, skip, branch)| {
            let (s, b) = (skip.data(), branch.data());
            let dot = |p: &[f32], q: &[f32]| p.iter().zip(q).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>();
            let (ss, bb, sb) = (dot(s, s), dot(b, b), dot(s, b));
            let cosine = if ss > 0.0 && bb > 0.0 { sb / (ss * bb).sqrt() } else { 0.0 };
            let sum_sq: f64 = s.iter().zip(b).map(|(&p, &q)| (p as f64 + q as f64).powi(2)).sum();
            AddFlow {
                node: add.node.clone(),
                input: value_name(add.input),
                projection: add.projection,
                skip_norm: ss.sqrt(),
                branch_norm: bb.sqrt(),
                cosine,
                sum_norm: sum_sq.sqrt(),
            }
        })
        .collect();
    let tensors = grads
        .iter()
        .zip(param_names)
        .map(|(g, name)| {
            let (mean, var) = moments(g.data());
            // ZNorm is affine: the statistics after it follow from those before.
            let a = znorm_map(g.len(), (mean, var), eps);
            let (scale, shift) = (a.scale as f64, a.shift as f64);
            let (znorm_mean, znorm_std) = (mean * scale + shift, var.sqrt() * scale.abs());
            TensorFlow { name: name.clone(), numel: g.len(), mean, std: var.sqrt(), znorm_mean, znorm_std }
        })
        .collect();
    Ok(Report { loss, adds, tensors })
}
