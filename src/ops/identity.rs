//! Identity, and the ops that are identities at inference: Dropout, Cast to float32 or double
//! (see `cast`). The output shares the input's storage.

use super::{BuildCtx, Built, Op, Record};
use crate::graph::IntTensor;
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct Identity;

pub fn build(_ctx: &BuildCtx) -> Result<Built, String> {
    Built::new(Identity, [0])
}

pub fn build_dropout(ctx: &BuildCtx) -> Result<Built, String> {
    // Inference is the identity: the ratio (attribute before opset 12, input after) is unused.
    // From opset 12 an input training_mode=true drops at random unless the ratio is 0.
    if ctx.opset >= 12 && ctx.has_input(2) {
        let training = ctx
            .const_ints(2)
            .map_err(|_| "training_mode must be a constant (it is computed at run time here)".to_string())?
            .is_some_and(|v| v.iter().any(|&t| t != 0));
        let ratio = match training.then(|| ctx.const_input(1)).transpose()?.flatten() {
            Some(r) => r.to_floats().first().copied().unwrap_or(0.5),
            None => 0.5,
        };
        if training && ratio != 0.0 {
            return Err(format!("training_mode=true with ratio {ratio} (random dropout) is not supported"));
        }
    }
    Built::new(Identity, [0])
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Const, IntTensor};
    use crate::ops::testing::{ctx, node};

    fn scalar_bool(v: bool) -> Option<Const> {
        Some(Const::I64(IntTensor { shape: vec![], data: vec![v as i64] }))
    }

    #[test]
    fn dropout_in_training_mode_is_refused_unless_its_ratio_is_zero() {
        // Dropout-12+: training_mode=true drops at random (onnx's test_training_dropout*); only a
        // ratio of 0 keeps it the identity edgetune computes.
        let n = node("Dropout", vec![]);
        let x = (vec![3, 4], None);
        let ratio = |r: f32| (vec![], Some(Const::F32(Tensor::scalar(r))));
        let training = [x.clone(), ratio(0.75), (vec![], scalar_bool(true))];
        let err = build_dropout(&ctx(&n, 13, &training)).err().expect("random dropout must be refused");
        assert!(err.contains("training_mode"), "{err}");
        // An omitted ratio is 0.5: random too.
        let flag = scalar_bool(true);
        let mut omitted = ctx(&n, 13, &training);
        omitted.inputs[1] = None;
        omitted.inputs[2] = Some(crate::ops::InputInfo { shape: &[], value: flag.as_ref() });
        assert!(build_dropout(&omitted).is_err());
        assert!(build_dropout(&ctx(&n, 13, &training[..1])).is_ok());
        assert!(build_dropout(&ctx(&n, 13, &[x.clone(), ratio(0.0), (vec![], scalar_bool(true))])).is_ok());
        assert!(build_dropout(&ctx(&n, 13, &[x.clone(), ratio(0.5), (vec![], scalar_bool(false))])).is_ok());
        let run_time_flag = [x.clone(), ratio(0.5), (vec![], None)];
        assert!(build_dropout(&ctx(&n, 13, &run_time_flag)).is_err());
    }
}
