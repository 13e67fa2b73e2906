//! `--num-classes K`: the classifier replaced by a fresh K-way one, initialised like
//! `torch.nn.Linear` (weight and bias uniform in ±1/√fan_in), seeded. The classifier is the last
//! Gemm, or the last MatMul with its Add; the model's declared output shapes follow.

use crate::data::dataset::Rng;
use crate::error::{Error, Result};
use crate::graph::{Const, Graph, Source};
use crate::onnx::Model;
use crate::tensor::Tensor;

/// Uniform values in [-bound, bound) from the shared seeded generator.
fn uniform(n: usize, bound: f32, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * bound).collect()
}

/// The initializer index feeding node input `slot` (directly or through Identity).
fn init_of(graph: &Graph, node: usize, slot: usize) -> Option<usize> {
    let mut v = graph.nodes[node].inputs.get(slot).copied().flatten()?;
    loop {
        match &graph.values[v].source {
            Source::Initializer(i) => return Some(*i),
            Source::Node { node: p, .. } if graph.nodes[*p].op_type == "Identity" => v = graph.nodes[*p].inputs[0]?,
            _ => return None,
        }
    }
}

/// Replaces the classifier of `model` by a fresh `k`-way one; returns the old class count.
pub fn replace_head(model: &mut Model, k: usize, seed: u64) -> Result<usize> {
    let graph = &mut model.graph;
    let fail = |msg: &str| Error::data(model.path.display().to_string(), msg.to_string());
    if k < 2 {
        return Err(Error::Config(format!("--num-classes {k}: at least 2 classes")));
    }
    let last = graph
        .nodes
        .iter()
        .rposition(|n| n.op_type == "Gemm" || n.op_type == "MatMul")
        .ok_or_else(|| fail("no Gemm or MatMul classifier to replace"))?;
    let node = &graph.nodes[last];
    let trans_b = node.op_type == "Gemm" && node.attrs.int("transB", 0).unwrap_or(0) != 0;
    let w = init_of(graph, last, 1).ok_or_else(|| fail("the classifier's weight is not an initializer"))?;
    // The bias: Gemm's C, or the Add right after a MatMul.
    let bias = if node.op_type == "Gemm" {
        init_of(graph, last, 2)
    } else {
        let out = node.outputs[0];
        graph
            .nodes
            .iter()
            .position(|n| n.op_type == "Add" && n.inputs.contains(&Some(out)))
            .and_then(|a| (0..2).find_map(|s| init_of(graph, a, s)))
    };
    let Const::F32(wt) = &graph.initializers[w].data else { return Err(fail("the classifier's weight is not float")) };
    let (features, old) = match (wt.shape(), trans_b) {
        ([o, f], true) => (*f, *o),
        ([f, o], false) => (*f, *o),
        (s, _) => return Err(fail(&format!("classifier weight of shape {s:?} is not a matrix"))),
    };
    let mut rng = Rng(seed ^ 0x6865_6164);
    let bound = 1.0 / (features as f32).sqrt();
    // torch.nn.Linear's weight is [out, in]: draw in that order, then lay out as the graph wants.
    let fresh = uniform(k * features, bound, &mut rng);
    let data = if trans_b { fresh } else { (0..features * k).map(|i| fresh[(i % k) * features + i / k]).collect() };
    let shape = if trans_b { vec![k, features] } else { vec![features, k] };
    graph.initializers[w].data = Const::F32(Tensor::from_vec(shape, data));
    if let Some(b) = bias {
        graph.initializers[b].data = Const::F32(Tensor::from_vec([k], uniform(k, bound, &mut rng)));
    }
    // The graph's declared outputs say k (the export restates the file's shapes from a plan).
    for (_, decl) in graph.outputs.iter_mut() {
        if let Some(d) = decl.dims.as_mut().and_then(|d| d.last_mut()) {
            if *d == crate::graph::Dim::Fixed(old) {
                *d = crate::graph::Dim::Fixed(k);
            }
        }
    }
    Ok(old)
}
