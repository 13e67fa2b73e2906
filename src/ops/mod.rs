//! The op table: ONNX `op_type` -> a builder that reads the node's attributes and constant
//! inputs and returns an `Op`. One file per op (or per family sharing one forward, such as the
//! four reshapes); `window` holds the sliding-window geometry that Conv and the pools share.

use std::any::Any;
use std::fmt::Debug;

use crate::attrs::Attrs;
use crate::graph::{Const, IntTensor, Node};
use crate::tensor::Tensor;

mod batchnorm;
mod binary;
mod clip;
mod concat;
pub mod conv;
mod gather;
mod gemm;
mod global_pool;
mod identity;
mod matmul;
mod pad;
mod pool;
mod reduce_mean;
mod relu;
mod reshape;
mod slice;
mod softmax;
mod sum;
mod transpose;
pub mod window;

pub use batchnorm::BatchNorm;
pub use conv::Conv;
pub use relu::Relu;
pub use softmax::softmax_rows;

/// A node's computation once its attributes and constant inputs are resolved.
pub trait Op: Send + Sync + Debug + Any {
    /// Output shape for the given runtime input shapes, or why they do not fit.
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String>;

    /// Computes the output; `out_shape` is what `output_shape` returned for these inputs.
    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor;

    /// The same computation on integers, for folding shape sub-graphs at load time.
    fn forward_ints(&self, _inputs: &[&IntTensor], _out_shape: &[usize]) -> Option<IntTensor> {
        None
    }
}

/// What a builder knows about one node input.
#[derive(Clone, Copy)]
pub struct InputInfo<'a> {
    pub shape: &'a [usize],
    /// The value when it is known before running (a constant, or a parameter's current value).
    pub value: Option<&'a Const>,
}

pub struct BuildCtx<'a> {
    pub node: &'a Node,
    pub opset: i64,
    /// One entry per node input; `None` for an omitted optional input.
    pub inputs: Vec<Option<InputInfo<'a>>>,
}

impl<'a> BuildCtx<'a> {
    pub fn attrs(&self) -> &'a Attrs {
        &self.node.attrs
    }

    pub fn has_input(&self, i: usize) -> bool {
        matches!(self.inputs.get(i), Some(Some(_)))
    }

    pub fn input(&self, i: usize) -> Result<InputInfo<'a>, String> {
        self.inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("missing input {i}"))
    }

    /// A constant input's value, `None` when the optional input is omitted.
    pub fn const_input(&self, i: usize) -> Result<Option<&'a Const>, String> {
        match self.inputs.get(i).copied().flatten() {
            None => Ok(None),
            Some(InputInfo { value: Some(v), .. }) => Ok(Some(v)),
            Some(_) => Err(format!(
                "input {i} must be a constant (computed at run time here)"
            )),
        }
    }

    pub fn const_ints(&self, i: usize) -> Result<Option<Vec<i64>>, String> {
        Ok(self.const_input(i)?.map(Const::to_ints))
    }
}

/// A built op and which node inputs it reads at run time (the others were consumed as constants).
pub struct Built {
    pub op: Box<dyn Op>,
    pub inputs: Vec<usize>,
}

impl Built {
    pub fn new(op: impl Op, inputs: impl Into<Vec<usize>>) -> Result<Built, String> {
        Ok(Built {
            op: Box::new(op),
            inputs: inputs.into(),
        })
    }
}

type BuildFn = fn(&BuildCtx) -> Result<Built, String>;

const TABLE: &[(&str, BuildFn)] = &[
    ("Add", binary::build_add),
    ("AveragePool", pool::build_average),
    ("BatchNormalization", batchnorm::build),
    ("Cast", identity::build_cast),
    ("Clip", clip::build),
    ("Concat", concat::build),
    ("Conv", conv::build),
    ("Div", binary::build_div),
    ("Dropout", identity::build_dropout),
    ("Flatten", reshape::build_flatten),
    ("Gather", gather::build),
    ("Gemm", gemm::build),
    ("GlobalAveragePool", global_pool::build),
    ("Identity", identity::build),
    ("MatMul", matmul::build),
    ("MaxPool", pool::build_max),
    ("Mul", binary::build_mul),
    ("Pad", pad::build),
    ("ReduceMean", reduce_mean::build),
    ("Relu", relu::build),
    ("Reshape", reshape::build_reshape),
    ("Slice", slice::build),
    ("Softmax", softmax::build),
    ("Squeeze", reshape::build_squeeze),
    ("Sub", binary::build_sub),
    ("Sum", sum::build),
    ("Transpose", transpose::build),
    ("Unsqueeze", reshape::build_unsqueeze),
];

/// Ops that exist only in shape sub-graphs; `crate::fold` evaluates them at load time.
pub const FOLD_ONLY: &[&str] = &[
    "Constant",
    "ConstantOfShape",
    "Equal",
    "Range",
    "Shape",
    "Size",
    "Where",
];

pub fn builder(op_type: &str) -> Option<BuildFn> {
    TABLE
        .iter()
        .find(|(name, _)| *name == op_type)
        .map(|(_, f)| *f)
}

/// Whether an op type can appear in a model edgetune loads.
pub fn is_known(op_type: &str) -> bool {
    builder(op_type).is_some() || FOLD_ONLY.contains(&op_type)
}

/// The op types that run at run time (for `inspect` and the README's table).
pub fn runtime_ops() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|(name, _)| *name)
}

/// Shape check shared by the ops: the input's rank.
pub(crate) fn expect_rank(shape: &[usize], rank: usize, what: &str) -> Result<(), String> {
    if shape.len() != rank {
        return Err(format!("{what} must have rank {rank}, got shape {shape:?}"));
    }
    Ok(())
}
