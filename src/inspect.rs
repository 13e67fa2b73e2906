//! `edgetune inspect`: what a model is and whether edgetune can run it, as text or JSON.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::json;

use crate::graph::{Const, Dim, ValueDecl};
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
    /// Op types that run forward (all of them, or the model would not have loaded).
    pub forward_supported: bool,
    /// Op types present whose backward rule is missing.
    pub no_backward: Vec<String>,
}

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
            *op_counts.entry(n.op_type.clone()).or_insert(0) += 1;
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
            forward_supported: true,
            no_backward,
        }
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
            "forward_supported": self.forward_supported,
            "backward_supported": self.no_backward.is_empty(),
            "ops_without_backward": self.no_backward,
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
        writeln!(f, "forward    supported (every op)")?;
        if self.no_backward.is_empty() {
            writeln!(f, "backward   supported (every op)")
        } else {
            writeln!(f, "backward   not available for: {}", self.no_backward.join(", "))
        }
    }
}
