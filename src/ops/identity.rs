//! Identity, and the ops that are identities at inference: Dropout, Cast to a float type.
//! The output shares the input's storage.

use super::{BuildCtx, Built, Op, Record};
use crate::graph::IntTensor;
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct Identity;

pub fn build(_ctx: &BuildCtx) -> Result<Built, String> {
    Built::new(Identity, [0])
}

pub fn build_dropout(_ctx: &BuildCtx) -> Result<Built, String> {
    // Inference: the ratio (attribute before opset 12, input after) and training_mode are unused.
    Built::new(Identity, [0])
}

pub fn build_cast(ctx: &BuildCtx) -> Result<Built, String> {
    // ONNX TensorProto types FLOAT = 1, DOUBLE = 11, FLOAT16 = 10: all computed as f32 here.
    match ctx.attrs().int("to", 0)? {
        1 | 10 | 11 => Built::new(Identity, [0]),
        to => Err(format!("Cast of a run-time float tensor to type {to} is not supported")),
    }
}

impl Op for Identity {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(inputs[0].to_vec())
    }

    fn forward(&self, inputs: &[&Tensor], _out_shape: &[usize]) -> Tensor {
        inputs[0].clone()
    }

    fn forward_ints(&self, inputs: &[&IntTensor], _out_shape: &[usize]) -> Option<IntTensor> {
        Some(inputs[0].clone())
    }

    fn backward(&self, _rec: &Record, dy: &Tensor, _need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        Ok(vec![Some(dy.clone())])
    }
}
