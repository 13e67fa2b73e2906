//! Load-time evaluation of nodes whose inputs are all known before running: the shape
//! sub-graphs exporters emit (`Shape -> Gather -> Unsqueeze -> Concat -> Reshape`, ...) and
//! arithmetic on constants. Ops that only exist there live here; everything else is evaluated by
//! its runtime op (`forward` for floats, `forward_ints` for integers), so each op's semantics
//! are written once.

use crate::graph::{Const, IntTensor};
use crate::kernels::layout;
use crate::ops::{self, BuildCtx};
use crate::tensor::{broadcast_shapes, numel, Tensor};

/// Evaluates the node of `ctx` (all inputs known; `Shape`/`Size` need only the input shape).
pub fn eval(ctx: &BuildCtx) -> Result<Const, String> {
    let node = ctx.node;
    let ints = |i: usize| -> Result<Vec<i64>, String> {
        Ok(ctx.const_input(i)?.ok_or(format!("missing input {i}"))?.to_ints())
    };
    match node.op_type.as_str() {
        "Shape" => {
            let shape: Vec<i64> = ctx.input(0)?.shape.iter().map(|&d| d as i64).collect();
            let r = shape.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let start = clamp(ctx.attrs().int("start", 0)?);
            let end = clamp(ctx.attrs().int("end", r)?);
            Ok(Const::I64(IntTensor::vector(shape[start..end.max(start)].to_vec())))
        }
        "Size" => Ok(Const::I64(IntTensor { shape: vec![], data: vec![numel(ctx.input(0)?.shape) as i64] })),
        "ConstantOfShape" => {
            let dims = ints(0)?;
            let shape: Vec<usize> = dims
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| format!("negative dim {d}")))
                .collect::<Result<_, _>>()?;
            let n = crate::tensor::checked_numel(&shape)
                .filter(|&n| n <= 1 << 28)
                .ok_or(format!("shape {dims:?} too large"))?;
            Ok(match ctx.attrs().tensor("value")? {
                Some(Const::I64(v)) => {
                    Const::I64(IntTensor { shape, data: vec![v.data.first().copied().unwrap_or(0); n] })
                }
                Some(Const::F32(v)) => {
                    Const::F32(Tensor::from_vec(shape, vec![v.data().first().copied().unwrap_or(0.0); n]))
                }
                None => Const::F32(Tensor::zeros(shape)),
            })
        }
        "Cast" => ops::cast_const(ctx.const_input(0)?.ok_or("missing input")?, ctx.attrs().int("to", 0)?),
        "Range" => {
            let vals: Vec<&Const> =
                (0..3).map(|i| ctx.const_input(i)?.ok_or(format!("missing input {i}"))).collect::<Result<_, _>>()?;
            if vals.iter().all(|c| matches!(c, Const::I64(_))) {
                let [s, l, d] = [0, 1, 2].map(|i| vals[i].to_ints()[0]);
                if d == 0 {
                    return Err("Range delta is 0".into());
                }
                let n = ((l - s) as f64 / d as f64).ceil().max(0.0) as usize;
                Ok(Const::I64(IntTensor::vector((0..n as i64).map(|i| s + i * d).collect())))
            } else {
                let [s, l, d] = [0, 1, 2].map(|i| vals[i].to_floats()[0]);
                let n = ((l - s) / d).ceil().max(0.0) as usize;
                Ok(Const::F32(Tensor::from_vec([n], (0..n).map(|i| s + i as f32 * d).collect())))
            }
        }
        "Equal" => {
            let (a, b) = (ctx.const_input(0)?.ok_or("missing input")?, ctx.const_input(1)?.ok_or("missing input")?);
            let shape = broadcast_shapes(a.shape(), b.shape()).ok_or("shapes do not broadcast")?;
            let (x, y) = (a.to_floats(), b.to_floats());
            let eq = layout::zip_broadcast(&x, a.shape(), &y, b.shape(), &shape, |p, q| if p == q { 1.0 } else { 0.0 });
            Ok(Const::I64(IntTensor { shape, data: eq.into_iter().map(|v| v as i64).collect() }))
        }
        "Where" => {
            let c: Vec<&Const> =
                (0..3).map(|i| ctx.const_input(i)?.ok_or(format!("missing input {i}"))).collect::<Result<_, _>>()?;
            let shape = broadcast_shapes(c[0].shape(), c[1].shape())
                .and_then(|s| broadcast_shapes(&s, c[2].shape()))
                .ok_or("shapes do not broadcast")?;
            let cond = layout::broadcast(&c[0].to_ints(), c[0].shape(), &shape);
            if let (Const::I64(x), Const::I64(y)) = (c[1], c[2]) {
                let (x, y) =
                    (layout::broadcast(&x.data, &x.shape, &shape), layout::broadcast(&y.data, &y.shape, &shape));
                let data = cond.iter().zip(x.iter().zip(&y)).map(|(&k, (&p, &q))| if k != 0 { p } else { q }).collect();
                return Ok(Const::I64(IntTensor { shape, data }));
            }
            let (x, y) = (
                layout::broadcast(&c[1].to_floats(), c[1].shape(), &shape),
                layout::broadcast(&c[2].to_floats(), c[2].shape(), &shape),
            );
            let data = cond.iter().zip(x.iter().zip(&y)).map(|(&k, (&p, &q))| if k != 0 { p } else { q }).collect();
            Ok(Const::F32(Tensor::from_vec(shape, data)))
        }
        op => by_runtime_op(ctx, op),
    }
}

fn by_runtime_op(ctx: &BuildCtx, op_type: &str) -> Result<Const, String> {
    let build = ops::builder(op_type).ok_or_else(|| format!("cannot evaluate {op_type} at load time"))?;
    let built = build(ctx)?;
    let values: Vec<&Const> = built
        .inputs
        .iter()
        .map(|&i| ctx.const_input(i)?.ok_or(format!("missing input {i}")))
        .collect::<Result<_, _>>()?;
    let shapes: Vec<&[usize]> = values.iter().map(|v| v.shape()).collect();
    let out_shape = built.op.output_shape(&shapes)?;
    if values.iter().all(|v| matches!(v, Const::F32(_))) {
        let ts: Vec<&Tensor> = values
            .iter()
            .map(|v| match v {
                Const::F32(t) => t,
                Const::I64(_) => unreachable!(),
            })
            .collect();
        return Ok(Const::F32(built.op.forward(&ts, &out_shape)));
    }
    let ints: Vec<IntTensor>;
    let refs: Vec<&IntTensor> = if values.iter().all(|v| matches!(v, Const::I64(_))) {
        values
            .iter()
            .map(|v| match v {
                Const::I64(t) => t,
                Const::F32(_) => unreachable!(),
            })
            .collect()
    } else {
        // Mixed types (e.g. an int shape and a float scale): compute in integers.
        ints = values.iter().map(|v| IntTensor { shape: v.shape().to_vec(), data: v.to_ints() }).collect();
        ints.iter().collect()
    };
    built
        .op
        .forward_ints(&refs, &out_shape)
        .map(Const::I64)
        .ok_or_else(|| format!("cannot evaluate {op_type} on integer constants"))
}
