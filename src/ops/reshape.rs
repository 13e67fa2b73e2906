//! The view ops — Reshape, Flatten, Squeeze, Unsqueeze — which change the shape and keep the
//! elements (and their storage) as they are. Axes/shape come from attributes or, in newer
//! opsets, constant inputs.

use super::{BuildCtx, Built, Op, Record};
use crate::graph::IntTensor;
use crate::tensor::{norm_axis, numel, Tensor};

#[derive(Clone, Debug)]
pub enum Reshape {
    /// ONNX Reshape: 0 copies the input dim (unless `allowzero`), -1 is inferred.
    To {
        spec: Vec<i64>,
        allowzero: bool,
    },
    Flatten {
        axis: i64,
    },
    /// `None`: remove every axis of size 1.
    Squeeze {
        axes: Option<Vec<i64>>,
    },
    Unsqueeze {
        axes: Vec<i64>,
    },
}

pub fn build_reshape(ctx: &BuildCtx) -> Result<Built, String> {
    let spec = ctx.const_ints(1)?.ok_or("missing the shape input")?;
    Built::new(Reshape::To { spec, allowzero: ctx.attrs().int("allowzero", 0)? != 0 }, [0])
}

pub fn build_flatten(ctx: &BuildCtx) -> Result<Built, String> {
    Built::new(Reshape::Flatten { axis: ctx.attrs().int("axis", 1)? }, [0])
}

fn axes(ctx: &BuildCtx) -> Result<Option<Vec<i64>>, String> {
    if ctx.opset < 13 {
        ctx.attrs().ints("axes")
    } else {
        ctx.const_ints(1)
    }
}

pub fn build_squeeze(ctx: &BuildCtx) -> Result<Built, String> {
    Built::new(Reshape::Squeeze { axes: axes(ctx)? }, [0])
}

pub fn build_unsqueeze(ctx: &BuildCtx) -> Result<Built, String> {
    Built::new(Reshape::Unsqueeze { axes: axes(ctx)?.ok_or("missing axes")? }, [0])
}

impl Reshape {
    pub fn apply(&self, x: &[usize]) -> Result<Vec<usize>, String> {
        let n = numel(x);
        match self {
            Reshape::To { spec, allowzero } => {
                let mut out = Vec::with_capacity(spec.len());
                let mut infer = None;
                for (i, &s) in spec.iter().enumerate() {
                    match s {
                        -1 if infer.is_none() => {
                            infer = Some(i);
                            out.push(1);
                        }
                        0 if !allowzero => {
                            out.push(*x.get(i).ok_or(format!("shape {spec:?}: no input dim {i} to copy"))?)
                        }
                        s if s >= 0 => out.push(s as usize),
                        _ => return Err(format!("invalid target shape {spec:?}")),
                    }
                }
                if let Some(i) = infer {
                    let rest = numel(&out);
                    if rest == 0 || !n.is_multiple_of(rest) {
                        return Err(format!("cannot reshape {x:?} to {spec:?}"));
                    }
                    out[i] = n / rest;
                }
                if numel(&out) != n {
                    return Err(format!("cannot reshape {x:?} ({n} elements) to {spec:?}"));
                }
                Ok(out)
            }
            Reshape::Flatten { axis } => {
                // axis in [-r, r]: a negative one counts from the rank r, not from r + 1.
                let r = x.len() as i64;
                let a = if *axis < 0 { axis + r } else { *axis };
                if !(0..=r).contains(&a) {
                    return Err(format!("axis {axis} out of range for {x:?}"));
                }
                let a = a as usize;
                Ok(vec![x[..a].iter().product(), x[a..].iter().product()])
            }
            Reshape::Squeeze { axes } => {
                let drop: Vec<usize> = match axes {
                    None => (0..x.len()).filter(|&d| x[d] == 1).collect(),
                    Some(a) => a
                        .iter()
                        .map(|&a| norm_axis(a, x.len()).ok_or(format!("axis {a} out of range for {x:?}")))
                        .collect::<Result<_, _>>()?,
                };
                if let Some(&d) = drop.iter().find(|&&d| x[d] != 1) {
                    return Err(format!("cannot squeeze axis {d} of size {} in {x:?}", x[d]));
                }
                Ok((0..x.len()).filter(|d| !drop.contains(d)).map(|d| x[d]).collect())
            }
            Reshape::Unsqueeze { axes } => {
                let rank = x.len() + axes.len();
                let mut ins: Vec<usize> = axes
                    .iter()
                    .map(|&a| norm_axis(a, rank).ok_or(format!("axis {a} out of range for rank {rank}")))
                    .collect::<Result<_, _>>()?;
                ins.sort_unstable();
                ins.dedup();
                if ins.len() != axes.len() {
                    return Err(format!("repeated axis in {axes:?}"));
                }
                let mut src = x.iter();
                Ok((0..rank).map(|d| if ins.contains(&d) { 1 } else { *src.next().expect("rank adds up") }).collect())
            }
        }
    }
}

impl Op for Reshape {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        self.apply(inputs[0])
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        inputs[0].clone().into_reshaped(out_shape)
    }

    fn forward_ints(&self, inputs: &[&IntTensor], out_shape: &[usize]) -> Option<IntTensor> {
        Some(IntTensor { shape: out_shape.to_vec(), data: inputs[0].data.clone() })
    }

    fn backward(&self, rec: &Record, dy: &Tensor, _need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        Ok(vec![Some(dy.clone().into_reshaped(rec.shapes[0].clone()))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_counts_a_negative_axis_from_the_rank() {
        // ONNX (opset 11+): axis in [-r, r], negative counts from the back, so -1 on a rank-4
        // input is axis 3: [2, 3, 4, 5] -> [2*3*4, 5] (onnx's test_flatten_negative_axis1).
        assert_eq!(Reshape::Flatten { axis: -1 }.apply(&[2, 3, 4, 5]).unwrap(), vec![24, 5]);
        assert_eq!(Reshape::Flatten { axis: -4 }.apply(&[2, 3, 4, 5]).unwrap(), vec![1, 120]);
        assert_eq!(Reshape::Flatten { axis: 4 }.apply(&[2, 3, 4, 5]).unwrap(), vec![120, 1]);
        assert!(Reshape::Flatten { axis: -5 }.apply(&[2, 3, 4, 5]).is_err());
        assert!(Reshape::Flatten { axis: 5 }.apply(&[2, 3, 4, 5]).is_err());
    }

    #[test]
    fn shapes_follow_the_onnx_rules() {
        let to = |spec: &[i64]| Reshape::To { spec: spec.to_vec(), allowzero: false };
        assert_eq!(to(&[0, -1]).apply(&[8, 512, 1, 1]).unwrap(), vec![8, 512]);
        assert!(to(&[3, -1]).apply(&[8, 512]).is_err());
        assert_eq!(Reshape::Flatten { axis: 1 }.apply(&[2, 3, 4]).unwrap(), vec![2, 12]);
        assert_eq!(Reshape::Flatten { axis: 0 }.apply(&[2, 3]).unwrap(), vec![1, 6]);
        assert_eq!(Reshape::Squeeze { axes: Some(vec![-1, 2]) }.apply(&[2, 3, 1, 1]).unwrap(), vec![2, 3]);
        assert!(Reshape::Squeeze { axes: Some(vec![1]) }.apply(&[2, 3]).is_err());
        assert_eq!(Reshape::Unsqueeze { axes: vec![0, 3] }.apply(&[2, 3]).unwrap(), vec![1, 2, 3, 1]);
    }
}
