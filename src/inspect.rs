//! `edgetune inspect`: what a model is and whether edgetune can run it, as text or JSON. Whether
//! it runs is decided as a run decides it: ops edgetune does not know are listed by type (count,
//! first nodes); when every op is known, the graph is planned at its declared input size (a
//! free batch as 1, a free image side as the size the model records, else 224) for inference
//! and for training (every float initializer trainable, BatchNorm in training mode), and the
//! first node a plan refuses is named with the reason (an attribute form, a shape).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::json;

use crate::autodiff::BnMode;
use crate::data::recipe::Recipe;
use crate::graph::{Const, Dim, Graph, ValueDecl};
use crate::kernels::micro;
use crate::onnx::Model;
use crate::ops;

pub struct Report {
    pub path: String,
    pub opset: i64,
    pub ir_version: i64,
    pub producer: String,
    pub inputs: Vec<ValueDecl>,
    pub outputs: Vec<ValueDecl>,
    /// Every op type in the file (Constant nodes included) and how often it occurs.
    pub op_counts: BTreeMap<String, usize>,
    pub parameters: usize,
    /// Float initializers (candidates for training) and BatchNorm running statistics.
    pub trainable: Vec<(String, Vec<usize>)>,
    pub running_stats: Vec<String>,
    /// Ops edgetune does not know: op type, node count, the first few node names.
    pub unknown_ops: Vec<(String, usize, Vec<String>)>,
    /// Why the inference plan at the declared size fails (`None`: it plans).
    pub forward_error: Option<String>,
    /// Op types present whose backward rule is missing.
    pub no_backward: Vec<String>,
    /// Why the training plan at the declared size fails (`None`: it plans).
    pub backward_error: Option<String>,
    /// What the model records about its inputs (what `infer` uses by default).
    pub recipe: Recipe,
}

/// How many node names each unknown op type lists.
const FIRST_NODES: usize = 3;

fn dims_string(d: &ValueDecl) -> String {
    match &d.dims {
        None => "?".into(),
        Some(dims) => format!("[{}]", dims.iter().map(Dim::to_string).collect::<Vec<_>>().join(", ")),
    }
}

impl Report {
    pub fn new(model: &Model) -> Report {
        let g = &model.graph;
        let mut op_counts = BTreeMap::new();
        for n in model.proto.graph.iter().flat_map(|g| g.node.iter()) {
            let std_domain = n.domain.is_empty() || n.domain == "ai.onnx";
            let op = if std_domain { n.op_type.clone() } else { format!("{}:{}", n.domain, n.op_type) };
            *op_counts.entry(op).or_insert(0) += 1;
        }
        // BatchNormalization inputs 3 and 4 are statistics, not trained by gradient.
        let mut stats = vec![false; g.values.len()];
        for n in g.nodes.iter().filter(|n| n.op_type == "BatchNormalization") {
            for v in n.inputs.iter().skip(3).flatten() {
                stats[*v] = true;
            }
        }
        let (mut trainable, mut running_stats) = (Vec::new(), Vec::new());
        for init in &g.initializers {
            if let Const::F32(t) = &init.data {
                if stats[init.value] {
                    running_stats.push(init.name.clone());
                } else {
                    trainable.push((init.name.clone(), t.shape().to_vec()));
                }
            }
        }
        // Ops folded at load time (Shape, Constant ...) never need one.
        let runtime: Vec<&str> = ops::runtime_ops().collect();
        let no_backward =
            op_counts.keys().filter(|op| runtime.contains(&op.as_str()) && !ops::has_backward(op)).cloned().collect();
        let unknown_ops = unknown_ops(model);
        let recipe = Recipe::of(model);
        let (forward_error, backward_error) = if unknown_ops.is_empty() {
            plan_errors(g, recipe.input_size)
        } else {
            let why = "the model has ops edgetune does not know".to_string();
            (Some(why.clone()), Some(why))
        };
        Report {
            path: model.path.display().to_string(),
            opset: g.opset,
            ir_version: model.proto.ir_version,
            producer: model.producer(),
            inputs: g.inputs.iter().map(|(_, d)| d.clone()).collect(),
            outputs: g.outputs.iter().map(|(_, d)| d.clone()).collect(),
            op_counts,
            parameters: g.parameter_count(),
            trainable,
            running_stats,
            unknown_ops,
            forward_error,
            no_backward,
            backward_error,
            recipe,
        }
    }

    pub fn forward_supported(&self) -> bool {
        self.forward_error.is_none()
    }

    pub fn backward_supported(&self) -> bool {
        self.forward_supported() && self.no_backward.is_empty() && self.backward_error.is_none()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let decl = |d: &ValueDecl| {
            json!({"name": d.name, "shape": d.dims.as_ref().map(|v| v.iter().map(|x| match x {
            Dim::Fixed(n) => json!(n),
            Dim::Symbolic(s) => json!(s),
        }).collect::<Vec<_>>())})
        };
        json!({
            "path": self.path,
            "opset": self.opset,
            "ir_version": self.ir_version,
            "producer": self.producer,
            "inputs": self.inputs.iter().map(decl).collect::<Vec<_>>(),
            "outputs": self.outputs.iter().map(decl).collect::<Vec<_>>(),
            "op_counts": self.op_counts,
            "parameters": self.parameters,
            "trainable": self.trainable.iter().map(|(n, s)| json!({"name": n, "shape": s})).collect::<Vec<_>>(),
            "running_stats": self.running_stats,
            "forward_supported": self.forward_supported(),
            "forward_error": self.forward_error,
            "unsupported_ops": self.unknown_ops.iter().map(|(op, n, nodes)| json!({"op": op, "count": n, "first_nodes": nodes})).collect::<Vec<_>>(),
            "backward_supported": self.backward_supported(),
            "backward_error": self.backward_error,
            "kernel": {"active": micro::active().name, "available": micro::available().iter().map(|k| k.name).collect::<Vec<_>>()},
            "ops_without_backward": self.no_backward,
            "recorded": {
                "preprocess": self.recipe.preprocess.map(|p| p.name()),
                "input_size": self.recipe.input_size,
                "resize": self.recipe.resize.map(|r| r.name()),
                "classes": self.recipe.classes,
            },
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model      {}", self.path)?;
        writeln!(
            f,
            "producer   {} (IR {}, opset {})",
            if self.producer.is_empty() { "?" } else { &self.producer },
            self.ir_version,
            self.opset
        )?;
        for d in &self.inputs {
            writeln!(f, "input      {} {}", d.name, dims_string(d))?;
        }
        for d in &self.outputs {
            writeln!(f, "output     {} {}", d.name, dims_string(d))?;
        }
        let ops: Vec<String> = self.op_counts.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        writeln!(f, "ops        {}", ops.join(", "))?;
        let trainable: usize = self.trainable.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        writeln!(
            f,
            "parameters {} ({} trainable in {} tensors; {} BatchNorm running-stat tensors)",
            self.parameters,
            trainable,
            self.trainable.len(),
            self.running_stats.len()
        )?;
        let r = &self.recipe;
        let mut recorded = Vec::new();
        if let Some(p) = r.preprocess {
            recorded.push(format!("preprocess {p}"));
        }
        if let Some([h, w]) = r.input_size {
            recorded.push(format!("input size {h}x{w}"));
        }
        if let Some(z) = r.resize {
            recorded.push(format!("resize {z}"));
        }
        if let Some(c) = &r.classes {
            let shown: Vec<&str> = c.iter().take(5).map(String::as_str).collect();
            let more = if c.len() > 5 { ", ..." } else { "" };
            recorded.push(format!("{} classes ({}{more})", c.len(), shown.join(", ")));
        }
        if !recorded.is_empty() {
            writeln!(f, "recorded   {} (infer's defaults)", recorded.join("; "))?;
        }
        if !self.unknown_ops.is_empty() {
            writeln!(f, "unsupported ops (edgetune does not know them):")?;
            for (op, n, nodes) in &self.unknown_ops {
                let more = if *n > nodes.len() { ", ..." } else { "" };
                writeln!(f, "  {op} x{n} (nodes {}{more})", nodes.join(", "))?;
            }
            return writeln!(f, "forward    not supported\nbackward   not supported");
        }
        match &self.forward_error {
            None => writeln!(f, "forward    supported (planned at the declared input size)")?,
            Some(e) => writeln!(f, "forward    not supported: {e}")?,
        }
        match (&self.backward_error, self.no_backward.is_empty()) {
            _ if self.forward_error.is_some() => writeln!(f, "backward   not supported"),
            (_, false) => writeln!(f, "backward   not available for: {}", self.no_backward.join(", ")),
            (Some(e), true) => writeln!(f, "backward   not supported: {e}"),
            (None, true) => writeln!(f, "backward   supported (every trainable tensor)"),
        }
    }
}

/// Nodes of ops edgetune does not know (or of another domain), grouped by op type in file order.
fn unknown_ops(model: &Model) -> Vec<(String, usize, Vec<String>)> {
    let mut out: Vec<(String, usize, Vec<String>)> = Vec::new();
    for (i, n) in model.proto.graph.iter().flat_map(|g| g.node.iter()).enumerate() {
        let std_domain = n.domain.is_empty() || n.domain == "ai.onnx";
        if std_domain && ops::is_known(&n.op_type) {
            continue;
        }
        let op = if std_domain { n.op_type.clone() } else { format!("{}:{}", n.domain, n.op_type) };
        let name = if n.name.is_empty() { format!("#{i}") } else { n.name.clone() };
        match out.iter_mut().find(|(o, _, _)| *o == op) {
            Some((_, count, nodes)) => {
                *count += 1;
                if nodes.len() < FIRST_NODES {
                    nodes.push(name);
                }
            }
            None => out.push((op, 1, vec![name])),
        }
    }
    out
}

/// The inference and the training plan at the declared input shapes: why each fails, if it does.
fn plan_errors(g: &Graph, size: Option<[usize; 2]>) -> (Option<String>, Option<String>) {
    let shapes: Vec<Vec<usize>> =
        g.inputs.iter().map(|(_, d)| crate::exec::example_shape(d.dims.as_deref().unwrap_or(&[]), size)).collect();
    let forward = crate::exec::plan::plan(g, &shapes).err().map(|e| e.to_string());
    if forward.is_some() {
        return (forward, None);
    }
    let trainable: Vec<bool> = g.initializers.iter().map(|i| matches!(i.data, Const::F32(_))).collect();
    let backward = crate::autodiff::GradPlan::new(g, &shapes, &trainable, BnMode::Train).err().map(|e| e.to_string());
    (None, backward)
}
