//! Inference-only rewrites of a plan: BatchNormalization folded into the preceding Conv's
//! weights and bias, ReLU fused into the Conv's output epilogue and into a residual Add. Only
//! applied where the fused output has no other reader, and never in training plans (the
//! backward pass needs the unfused ops).

use std::any::Any;

use super::plan::{Plan, Step};
use crate::graph::ValueId;
use crate::kernels::simd::Arith;
use crate::ops::{BatchNorm, Binary, Conv, Relu};
use crate::tensor::Tensor;

pub fn fuse_for_inference(plan: &mut Plan) {
    let mut i = 0;
    while i < plan.steps.len() {
        if !try_fuse_next(plan, i) {
            i += 1;
        }
    }
    plan.compute_lifetimes();
}

fn as_any(op: &dyn crate::ops::Op) -> &dyn Any {
    op
}

fn bound_value(plan: &Plan, v: ValueId) -> Option<&Tensor> {
    plan.bound.iter().find(|(id, _)| *id == v).map(|(_, t)| t)
}

/// The step that is the only reader of step `i`'s output (as its first input), if any.
fn sole_reader(plan: &Plan, i: usize) -> Option<usize> {
    let out = plan.steps[i].output;
    if plan.reader_counts()[out] != 1 || plan.outputs.contains(&out) {
        return None;
    }
    plan.steps.iter().position(|s| s.inputs.first() == Some(&out))
}

/// Fuses the sole reader of step `i`'s output into it when possible; true if the plan changed.
fn try_fuse_next(plan: &mut Plan, i: usize) -> bool {
    let Some(j) = sole_reader(plan, i) else { return false };
    let next_is_relu = as_any(plan.steps[j].op.as_ref()).downcast_ref::<Relu>().is_some();
    if let Some(add) = as_any(plan.steps[i].op.as_ref()).downcast_ref::<Binary>() {
        if add.op != Arith::Add || add.relu || !next_is_relu {
            return false;
        }
        let fused = Binary { op: Arith::Add, relu: true };
        let inputs = plan.steps[i].inputs.clone();
        replace(plan, i, j, Box::new(fused), inputs);
        return true;
    }
    let Some(conv) = as_any(plan.steps[i].op.as_ref()).downcast_ref::<Conv>() else {
        return false;
    };
    let next = as_any(plan.steps[j].op.as_ref());
    let mut fused = conv.clone();
    if let Some(bn) = next.downcast_ref::<BatchNorm>() {
        if conv.relu {
            return false;
        }
        let params: Option<Vec<&Tensor>> = plan.steps[j].inputs[1..].iter().map(|&v| bound_value(plan, v)).collect();
        let Some(p) = params else { return false };
        let (scale, shift) = bn.folded(p[0].data(), p[1].data(), p[2].data(), p[3].data());
        let conv_step = &plan.steps[i];
        let Some(w) = bound_value(plan, conv_step.inputs[1]).cloned() else {
            return false;
        };
        let bias = conv_step.inputs.get(2).and_then(|&v| bound_value(plan, v)).cloned();
        if conv_step.inputs.len() > 2 && bias.is_none() {
            return false;
        }
        let per_out = w.len() / scale.len();
        let mut wd = w.data().to_vec();
        for (m, chunk) in wd.chunks_mut(per_out).enumerate() {
            chunk.iter_mut().for_each(|v| *v *= scale[m]);
        }
        let bd: Vec<f32> =
            (0..scale.len()).map(|m| bias.as_ref().map_or(0.0, |b| b.data()[m]) * scale[m] + shift[m]).collect();
        let (wv, bv) = (plan.n_values, plan.n_values + 1);
        plan.n_values += 2;
        plan.bound.push((wv, Tensor::from_vec(w.shape(), wd)));
        plan.bound.push((bv, Tensor::from_vec([scale.len()], bd)));
        let x = plan.steps[i].inputs[0];
        replace(plan, i, j, Box::new(fused), vec![x, wv, bv]);
        return true;
    }
    if next_is_relu && !conv.relu {
        fused.relu = true;
        let inputs = plan.steps[i].inputs.clone();
        replace(plan, i, j, Box::new(fused), inputs);
        return true;
    }
    false
}

/// Step i becomes `op` over `inputs`, producing what step j produced; step j goes away.
fn replace(plan: &mut Plan, i: usize, j: usize, op: Box<dyn crate::ops::Op>, inputs: Vec<ValueId>) {
    let removed: Step = plan.steps.remove(j);
    let s = &mut plan.steps[i];
    s.op = op;
    s.inputs = inputs;
    s.output = removed.output;
    s.out_shape = removed.out_shape;
}
