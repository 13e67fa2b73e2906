//! Our own graph: what the ONNX importer produces and the executor plans from.
//! Nodes are stored in topological order; values are numbered; every value has one source.

use std::collections::HashMap;

use crate::attrs::Attrs;
use crate::tensor::Tensor;

pub type ValueId = usize;

/// An integer tensor (shapes, axes, indices): only ever a compile-time constant here.
#[derive(Clone, Debug, PartialEq)]
pub struct IntTensor {
    pub shape: Vec<usize>,
    pub data: Vec<i64>,
}

impl IntTensor {
    pub fn vector(data: Vec<i64>) -> IntTensor {
        IntTensor { shape: vec![data.len()], data }
    }
}

/// A value known without running the model.
#[derive(Clone, Debug)]
pub enum Const {
    F32(Tensor),
    I64(IntTensor),
}

impl Const {
    pub fn shape(&self) -> &[usize] {
        match self {
            Const::F32(t) => t.shape(),
            Const::I64(t) => &t.shape,
        }
    }

    /// The elements as integers (floats are truncated, as ONNX Cast does).
    pub fn to_ints(&self) -> Vec<i64> {
        match self {
            Const::F32(t) => t.data().iter().map(|&v| v as i64).collect(),
            Const::I64(t) => t.data.clone(),
        }
    }

    /// The elements as floats.
    pub fn to_floats(&self) -> Vec<f32> {
        match self {
            Const::F32(t) => t.data().to_vec(),
            Const::I64(t) => t.data.iter().map(|&v| v as f32).collect(),
        }
    }
}

/// A declared input dimension: fixed, or symbolic (`N`, `batch_size`, or unnamed).
#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    Fixed(usize),
    Symbolic(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbolic(s) if s.is_empty() => write!(f, "?"),
            Dim::Symbolic(s) => write!(f, "{s}"),
        }
    }
}

/// Element types we distinguish for graph inputs and outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemType {
    F32,
    Other(i32),
}

#[derive(Clone, Debug)]
pub struct ValueDecl {
    pub name: String,
    pub elem: ElemType,
    /// `None` when the model declares no shape.
    pub dims: Option<Vec<Dim>>,
}

#[derive(Clone, Debug)]
pub enum Source {
    /// The i-th entry of `Graph::inputs`.
    Input(usize),
    /// The i-th entry of `Graph::initializers`.
    Initializer(usize),
    /// An ONNX `Constant` node's value (never trainable).
    Constant(Const),
    /// Output `slot` of node `node`.
    Node { node: usize, slot: usize },
}

#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    pub source: Source,
}

#[derive(Clone, Debug)]
pub struct Initializer {
    pub name: String,
    pub value: ValueId,
    pub data: Const,
}

#[derive(Clone, Debug)]
pub struct Node {
    /// The ONNX node name, or `<op_type>#<index>` when the file leaves it empty.
    pub name: String,
    pub op_type: String,
    /// `None` for an omitted optional input (empty name in ONNX).
    pub inputs: Vec<Option<ValueId>>,
    pub outputs: Vec<ValueId>,
    pub attrs: Attrs,
}

#[derive(Clone, Debug)]
pub struct Graph {
    pub values: Vec<Value>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<(ValueId, ValueDecl)>,
    pub outputs: Vec<(ValueId, ValueDecl)>,
    pub initializers: Vec<Initializer>,
    /// Version of the default ONNX domain the model was written for.
    pub opset: i64,
}

impl Graph {
    pub fn value_name(&self, v: ValueId) -> &str {
        &self.values[v].name
    }

    pub fn initializer_index(&self) -> HashMap<&str, usize> {
        self.initializers.iter().enumerate().map(|(i, init)| (init.name.as_str(), i)).collect()
    }

    /// For every value, the nodes that read it (in topological order).
    pub fn consumers(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.values.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for v in node.inputs.iter().flatten() {
                if out[*v].last() != Some(&i) {
                    out[*v].push(i);
                }
            }
        }
        out
    }

    /// Number of float elements held in initializers (the model's parameter count).
    pub fn parameter_count(&self) -> usize {
        self.initializers
            .iter()
            .filter_map(|i| match &i.data {
                Const::F32(t) => Some(t.len()),
                Const::I64(_) => None,
            })
            .sum()
    }
}
