//! Which initializers train: `--train all | head | REGEX`. Never BatchNorm running statistics
//! (updated by the forward pass, not by gradients), integer constants, nor 0-d floats: exporters
//! write constants such as Clip's bounds (ReLU6) and scalar factors as 0-d initializers, ops read
//! them at load time, and no exporter writes a learnable parameter as one (PyTorch's
//! `named_parameters` of the exported models has no 0-d entry).

use regex::Regex;

use crate::autodiff::running_stat_values;
use crate::error::{Error, Result};
use crate::graph::{Const, Graph};

/// Checks a `--train` value when the command line is read: all, head, or a valid regex.
pub fn parse_spec(spec: &str) -> Result<String, String> {
    match spec {
        "all" | "head" => Ok(spec.to_string()),
        pattern => regex(pattern).map(|_| spec.to_string()),
    }
}

fn regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| {
        // The regex crate draws the pattern with a caret over several lines; its last line
        // names the problem.
        let text = e.to_string();
        let why = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        format!("'{pattern}' is not a valid regex ({})", why.trim_start_matches("error: "))
    })
}

/// One flag per initializer of `graph`.
pub fn trainable(graph: &Graph, spec: &str) -> Result<Vec<bool>> {
    let stats = running_stat_values(graph);
    let candidate = |i: usize| {
        let init = &graph.initializers[i];
        matches!(&init.data, Const::F32(t) if t.rank() > 0) && !stats.contains(&init.value)
    };
    let n = graph.initializers.len();
    let flags: Vec<bool> = match spec {
        "all" => (0..n).map(candidate).collect(),
        "head" => {
            let head = head_initializers(graph);
            (0..n).map(|i| candidate(i) && head.contains(&i)).collect()
        }
        pattern => {
            let re = regex(pattern).map_err(|e| Error::Config(format!("--train: {e}")))?;
            (0..n).map(|i| candidate(i) && re.is_match(&graph.initializers[i].name)).collect()
        }
    };
    if !flags.iter().any(|&f| f) {
        return Err(Error::Config(format!("--train {spec}: no trainable float initializer matches")));
    }
    Ok(flags)
}

/// Initializers of the classifier: those read (directly or through Identity) by the last Gemm
/// or MatMul and by the nodes after it.
fn head_initializers(graph: &Graph) -> Vec<usize> {
    let Some(last) = graph.nodes.iter().rposition(|n| n.op_type == "Gemm" || n.op_type == "MatMul") else {
        return Vec::new();
    };
    let index = graph.initializer_index();
    let mut out = Vec::new();
    for node in &graph.nodes[last..] {
        for &v in node.inputs.iter().flatten() {
            let mut v = v;
            // Follow Identity nodes back to the initializer they forward.
            while let crate::graph::Source::Node { node: p, .. } = graph.values[v].source {
                match (graph.nodes[p].op_type.as_str(), graph.nodes[p].inputs.first().copied().flatten()) {
                    ("Identity", Some(src)) => v = src,
                    _ => break,
                }
            }
            if let Some(&i) = index.get(graph.values[v].name.as_str()) {
                out.push(i);
            }
        }
    }
    out
}
