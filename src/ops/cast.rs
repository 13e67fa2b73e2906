//! Cast. Everything edgetune computes is float32: a cast to FLOAT or DOUBLE keeps the values,
//! a cast to FLOAT16 or BFLOAT16 rounds them to that type (round to nearest even, overflow to
//! ±inf, as IEEE conversion does) and keeps them in f32 storage. Integer and bool targets exist
//! only for constants (shape sub-graphs), which `cast_const` evaluates at load time.

use super::identity::Identity;
use super::{BuildCtx, Built, Op, Record};
use crate::graph::{Const, IntTensor};
use crate::tensor::Tensor;

/// TensorProto element types (onnx.proto `TensorProto.DataType`).
const FLOAT: i64 = 1;
const UINT8: i64 = 2;
const INT8: i64 = 3;
const UINT16: i64 = 4;
const INT16: i64 = 5;
const INT32: i64 = 6;
const INT64: i64 = 7;
const BOOL: i64 = 9;
const FLOAT16: i64 = 10;
const DOUBLE: i64 = 11;
const UINT32: i64 = 12;
const UINT64: i64 = 13;
const BFLOAT16: i64 = 16;

/// A cast of float32 values to a narrower float type, stored back as float32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RoundTo {
    F16,
    Bf16,
}

impl RoundTo {
    fn apply(self, v: f32) -> f32 {
        match self {
            RoundTo::F16 => half::f16::from_f32(v).to_f32(),
            RoundTo::Bf16 => half::bf16::from_f32(v).to_f32(),
        }
    }
}

pub fn build(ctx: &BuildCtx) -> Result<Built, String> {
    match ctx.attrs().int("to", 0)? {
        FLOAT | DOUBLE => Built::new(Identity, [0]),
        FLOAT16 => Built::new(RoundTo::F16, [0]),
        BFLOAT16 => Built::new(RoundTo::Bf16, [0]),
        to => Err(format!("Cast of a run-time float tensor to type {to} is not supported (float types only)")),
    }
}

/// The cast of a constant (folded at load time), by the Cast-13 rules: float to bool is
/// `v != 0`, float to integer truncates, integer to a narrower integer keeps the low bits.
pub fn cast_const(x: &Const, to: i64) -> Result<Const, String> {
    let shape = x.shape().to_vec();
    let ints = |f: fn(i64) -> i64| {
        Const::I64(IntTensor { shape: shape.clone(), data: x.to_ints().into_iter().map(f).collect() })
    };
    Ok(match to {
        FLOAT | DOUBLE => Const::F32(Tensor::from_vec(shape, x.to_floats())),
        FLOAT16 | BFLOAT16 => {
            let r = if to == FLOAT16 { RoundTo::F16 } else { RoundTo::Bf16 };
            Const::F32(Tensor::from_vec(shape, x.to_floats().into_iter().map(|v| r.apply(v)).collect()))
        }
        BOOL => Const::I64(IntTensor {
            shape: shape.clone(),
            data: x.to_floats().iter().map(|&v| (v != 0.0) as i64).collect(),
        }),
        UINT8 => ints(|v| v as u8 as i64),
        INT8 => ints(|v| v as i8 as i64),
        UINT16 => ints(|v| v as u16 as i64),
        INT16 => ints(|v| v as i16 as i64),
        INT32 => ints(|v| v as i32 as i64),
        UINT32 => ints(|v| v as u32 as i64),
        // u64 keeps its bits in the i64 (as the initializer decoder stores it).
        INT64 | UINT64 => ints(|v| v),
        _ => return Err(format!("Cast to element type {to} is not supported")),
    })
}

impl Op for RoundTo {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(inputs[0].to_vec())
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        Tensor::from_vec(out_shape, inputs[0].data().iter().map(|&v| self.apply(v)).collect())
    }

    /// Straight through, as PyTorch's `.half()`: the gradient of the rounding is taken as 1.
    fn backward(&self, _rec: &Record, dy: &Tensor, _need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        Ok(vec![Some(dy.clone())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::Attr;
    use crate::ops::testing::{ctx, node};

    /// Expected values from numpy (`astype(np.float16)`, `astype(ml_dtypes.bfloat16)`, light venv),
    /// and by hand: as float16 0.1 rounds to 1638/16384 = 0.0999755859375 (nearest of the 10-bit
    /// mantissa), 1e5 exceeds float16's largest 65504 and becomes +inf (IEEE conversion); as
    /// bfloat16 (8 significant bits) 0.1 is 205/2048 = 0.10009765625 and 1e5 is 99840 (the nearest
    /// multiple of 512).
    const X: [f32; 3] = [0.1, 1e5, -2.5];
    const F16: [f32; 3] = [1638.0 / 16384.0, f32::INFINITY, -2.5];
    const BF16: [f32; 3] = [205.0 / 2048.0, 99840.0, -2.5];

    fn run(to: i64) -> Vec<f32> {
        let n = node("Cast", vec![("to", Attr::Int(to))]);
        let inputs = [(vec![3], None)];
        let built = build(&ctx(&n, 21, &inputs)).unwrap();
        let x = Tensor::from_vec([3], X.to_vec());
        built.op.forward(&[&x], &[3]).into_vec()
    }

    #[test]
    fn a_cast_to_half_precision_rounds_at_run_time_and_when_folded() {
        assert_eq!(run(10), F16);
        assert_eq!(run(16), BF16);
        assert_eq!(run(1), X);
        let folded = |to| cast_const(&Const::F32(Tensor::from_vec([3], X.to_vec())), to).unwrap().to_floats();
        assert_eq!(folded(10), F16);
        assert_eq!(folded(16), BF16);
    }

    #[test]
    fn an_integer_cast_wraps_to_the_target_width() {
        // Cast-13 spec: fixed point to fixed point discards the higher bits, e.g. 200 (int16) ->
        // -56 (int8); 300 -> 44 as uint8; -1 -> 65535 as uint16; 2^31 -> -2^31 as int32 (numpy's
        // astype gives the same).
        let x = Const::I64(IntTensor::vector(vec![200, 300, -1, 1 << 31]));
        assert_eq!(cast_const(&x, 3).unwrap().to_ints(), vec![-56, 44, -1, 0]);
        assert_eq!(cast_const(&x, 2).unwrap().to_ints(), vec![200, 44, 255, 0]);
        assert_eq!(cast_const(&x, 4).unwrap().to_ints(), vec![200, 300, 65535, 0]);
        assert_eq!(cast_const(&x, 6).unwrap().to_ints(), vec![200, 300, -1, -(1 << 31)]);
        assert_eq!(cast_const(&x, 7).unwrap().to_ints(), vec![200, 300, -1, 1 << 31]);
    }
}
