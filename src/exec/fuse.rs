//! Inference-only rewrites of a plan: BatchNormalization folded into the preceding Conv's
//! weights and bias; the residual Add of a ResNet block and ReLU fused into the Conv's output
//! epilogue; ReLU fused into an Add. Only applied where the fused output has no other reader,
//! and never in training plans (the backward pass needs the unfused ops).

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
    sole_reader_any(plan, i).filter(|&(_, slot)| slot == 0).map(|(j, _)| j)
}

/// The step that is the only reader of step `i`'s output, and the input slot it reads it at.
fn sole_reader_any(plan: &Plan, i: usize) -> Option<(usize, usize)> {
    let out = plan.steps[i].output;
    if plan.reader_counts()[out] != 1 || plan.outputs.contains(&out) {
        return None;
    }
    let j = plan.steps.iter().position(|s| s.inputs.contains(&out))?;
    Some((j, plan.steps[j].inputs.iter().position(|&v| v == out)?))
}

/// The shape of value `v` if the plan knows it (a step's output or a bound tensor).
fn value_shape(plan: &Plan, v: ValueId) -> Option<Vec<usize>> {
    let from_step = plan.steps.iter().find(|s| s.output == v).map(|s| s.out_shape.clone());
    from_step.or_else(|| bound_value(plan, v).map(|t| t.shape().to_vec()))
}

/// Conv → Add (a ResNet block's skip connection): the other addend joins the Conv's epilogue as a
/// residual input, and the Add's ReLU (if fused already) comes along. The fused step takes the
/// Add's place, after both addends exist.
fn try_fuse_residual(plan: &mut Plan, i: usize) -> bool {
    let Some(conv) = as_any(plan.steps[i].op.as_ref()).downcast_ref::<Conv>() else { return false };
    if conv.relu || conv.residual {
        return false;
    }
    let Some((j, slot)) = sole_reader_any(plan, i) else { return false };
    let Some(add) = as_any(plan.steps[j].op.as_ref()).downcast_ref::<Binary>() else { return false };
    let other = plan.steps[j].inputs[1 - slot];
    let shape = &plan.steps[i].out_shape;
    if add.op != Arith::Add || plan.steps[j].inputs.len() != 2 || value_shape(plan, other).as_ref() != Some(shape) {
        return false;
    }
    let mut fused = conv.clone();
    (fused.relu, fused.residual) = (add.relu, true);
    let mut inputs = plan.steps[i].inputs.clone();
    inputs.push(other);
    let conv_step = plan.steps.remove(i);
    let s = &mut plan.steps[j - 1];
    s.op = Box::new(fused);
    s.inputs = inputs;
    s.node = conv_step.node;
    true
}

/// Fuses the sole reader of step `i`'s output into it when possible; true if the plan changed.
fn try_fuse_next(plan: &mut Plan, i: usize) -> bool {
    if try_fuse_residual(plan, i) {
        return true;
    }
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
        if conv.relu || conv.residual {
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
