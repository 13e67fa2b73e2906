//! The op table: ONNX `op_type` -> a builder that reads the node's attributes and constant
//! inputs and returns an `Op`. One file per op (or per family sharing one forward, such as the
//! four reshapes); `window` holds the sliding-window geometry that Conv and the pools share.

use std::any::Any;
use std::fmt::Debug;

use crate::attrs::Attrs;
use crate::graph::{Const, IntTensor, Node};
use crate::tensor::Tensor;

mod activation;
mod batchnorm;
mod binary;
mod cast;
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

pub use activation::Activation;
pub use batchnorm::BatchNorm;
pub use binary::Binary;
pub use cast::cast_const;
pub use conv::Conv;
pub use gemm::Gemm;
pub use global_pool::GlobalAveragePool;
pub use identity::Identity;
pub use pad::{Pad, PadMode};
pub use pool::Pooling;
pub use relu::Relu;
pub use reshape::Reshape;
pub use softmax::{softmax_2d, softmax_rows, Softmax};
pub use transpose::Transpose;

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

    /// Which runtime inputs (and whether the output) the backward rule reads.
    fn saves(&self) -> Saves {
        Saves::NOTHING
    }

    /// The forward pass of a training step: may differ from `forward` (BatchNorm uses batch
    /// statistics) and may leave op-specific tensors and updates of its inputs behind.
    fn forward_train(&self, inputs: &[&Tensor], out_shape: &[usize]) -> TrainForward {
        TrainForward { y: self.forward(inputs, out_shape), extra: Vec::new(), updates: Vec::new() }
    }

    /// Gradients of the runtime inputs given the output's gradient `dy`; entry i is computed
    /// only where `need[i]` (the others may be `None`).
    fn backward(&self, _rec: &Record, _dy: &Tensor, _need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        Err("no backward rule for this op".into())
    }
}

/// What a backward rule reads from the forward pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct Saves {
    /// Bit i: runtime input i.
    pub inputs: u32,
    pub output: bool,
}

impl Saves {
    pub const NOTHING: Saves = Saves { inputs: 0, output: false };

    pub const fn inputs(list: &[usize]) -> Saves {
        let mut bits = 0;
        let mut i = 0;
        while i < list.len() {
            bits |= 1 << list[i];
            i += 1;
        }
        Saves { inputs: bits, output: false }
    }

    pub const fn output() -> Saves {
        Saves { inputs: 0, output: true }
    }

    /// The inputs a backward rule reads, cloned out of `args` (`None` for the others): what the
    /// CPU's `Record` and the GPU's keep.
    pub fn pick<T: Clone>(&self, args: &[&T]) -> Vec<Option<T>> {
        args.iter().enumerate().map(|(k, t)| (self.inputs & (1 << k) != 0).then(|| (*t).clone())).collect()
    }
}

/// Result of `Op::forward_train`.
pub struct TrainForward {
    pub y: Tensor,
    /// Op-specific tensors for the backward rule (kept in `Record::extra`).
    pub extra: Vec<Tensor>,
    /// New values for some runtime inputs (by index), e.g. BatchNorm's running statistics.
    pub updates: Vec<(usize, Tensor)>,
}

/// What the forward pass kept of one step for its backward rule.
pub struct Record {
    /// Saved runtime inputs (`None` where the rule does not read them).
    pub inputs: Vec<Option<Tensor>>,
    /// Shapes of all runtime inputs (always kept: cheap, and most rules need them).
    pub shapes: Vec<Vec<usize>>,
    pub output: Option<Tensor>,
    pub extra: Vec<Tensor>,
}

impl Record {
    /// Saved input i; panics if the op's `saves` did not ask for it (a bug in that op).
    pub fn input(&self, i: usize) -> &Tensor {
        self.inputs[i].as_ref().expect("backward read an input its op did not save")
    }

    pub fn output(&self) -> &Tensor {
        self.output.as_ref().expect("backward read an output its op did not save")
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
        self.inputs.get(i).copied().flatten().ok_or_else(|| format!("missing input {i}"))
    }

    /// A constant input's value, `None` when the optional input is omitted.
    pub fn const_input(&self, i: usize) -> Result<Option<&'a Const>, String> {
        match self.inputs.get(i).copied().flatten() {
            None => Ok(None),
            Some(InputInfo { value: Some(v), .. }) => Ok(Some(v)),
            Some(_) => Err(format!("input {i} must be a constant (computed at run time here)")),
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
        Ok(Built { op: Box::new(op), inputs: inputs.into() })
    }
}

type BuildFn = fn(&BuildCtx) -> Result<Built, String>;

/// (op type, builder, whether the op has a backward rule)
const TABLE: &[(&str, BuildFn, bool)] = &[
    ("Add", binary::build_add, true),
    ("AveragePool", pool::build_average, true),
    ("BatchNormalization", batchnorm::build, true),
    ("Cast", cast::build, true),
    ("Clip", clip::build, true),
    ("Concat", concat::build, true),
    ("Conv", conv::build, true),
    ("Div", binary::build_div, true),
    ("Dropout", identity::build_dropout, true),
    ("Flatten", reshape::build_flatten, true),
    ("Gather", gather::build, false),
    ("Gemm", gemm::build, true),
    ("HardSigmoid", activation::build_hard_sigmoid, true),
    ("HardSwish", activation::build_hard_swish, true),
    ("GlobalAveragePool", global_pool::build, true),
    ("Identity", identity::build, true),
    ("MatMul", matmul::build, true),
    ("MaxPool", pool::build_max, true),
    ("Mul", binary::build_mul, true),
    ("Pad", pad::build, true),
    ("ReduceMean", reduce_mean::build, true),
    ("Relu", relu::build, true),
    ("Reshape", reshape::build_reshape, true),
    ("Sigmoid", activation::build_sigmoid, true),
    ("Slice", slice::build, true),
    ("Softmax", softmax::build, true),
    ("Squeeze", reshape::build_squeeze, true),
    ("Sub", binary::build_sub, true),
    ("Sum", sum::build, true),
    ("Tanh", activation::build_tanh, true),
    ("Transpose", transpose::build, true),
    ("Unsqueeze", reshape::build_unsqueeze, true),
];

/// Ops that exist only in shape sub-graphs; `crate::fold` evaluates them at load time.
pub const FOLD_ONLY: &[&str] = &["Constant", "ConstantOfShape", "Equal", "Range", "Shape", "Size", "Where"];

pub fn builder(op_type: &str) -> Option<BuildFn> {
    TABLE.iter().find(|(name, _, _)| *name == op_type).map(|(_, f, _)| *f)
}

/// Whether an op type can appear in a model edgetune loads.
pub fn is_known(op_type: &str) -> bool {
    builder(op_type).is_some() || FOLD_ONLY.contains(&op_type)
}

/// The op types that run at run time (for `inspect` and the README's table).
pub fn runtime_ops() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|(name, _, _)| *name)
}

/// Whether an op type has a backward rule (ops folded at load time need none).
pub fn has_backward(op_type: &str) -> bool {
    TABLE.iter().any(|(name, _, b)| *name == op_type && *b)
}

/// Shape check shared by the ops: the input's rank.
pub(crate) fn expect_rank(shape: &[usize], rank: usize, what: &str) -> Result<(), String> {
    if shape.len() != rank {
        return Err(format!("{what} must have rank {rank}, got shape {shape:?}"));
    }
    Ok(())
}

/// Nodes and build contexts for the builders' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{BuildCtx, InputInfo};
    use crate::attrs::{Attr, Attrs};
    use crate::graph::{Const, Node};

    pub fn node(op: &str, attrs: Vec<(&str, Attr)>) -> Node {
        Node {
            name: format!("{op}#0"),
            op_type: op.to_string(),
            inputs: Vec::new(),
            outputs: vec![0],
            attrs: Attrs(attrs.into_iter().map(|(n, a)| (n.to_string(), a)).collect()),
        }
    }

    /// A context at `opset` whose inputs have these shapes and, where given, constant values.
    pub fn ctx<'a>(node: &'a Node, opset: i64, inputs: &'a [(Vec<usize>, Option<Const>)]) -> BuildCtx<'a> {
        BuildCtx {
            node,
            opset,
            inputs: inputs.iter().map(|(shape, value)| Some(InputInfo { shape, value: value.as_ref() })).collect(),
        }
    }
}
