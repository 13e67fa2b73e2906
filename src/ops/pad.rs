//! Pad in modes constant, edge, reflect and wrap (wrap from opset 19): pads as an attribute before
//! opset 11, a constant input from 11 on (with an optional constant value, and optional axes from
//! 18 on). Keras' ZeroPadding2D, PyTorch's ReplicationPad / ReflectionPad / CircularPad.
//!
//! Negative pads crop. As in onnxruntime (numpy.pad and onnx.reference refuse them), an axis is
//! cropped first and the mode pads what is left: wrap repeats the cropped axis, reflect mirrors it.
//! Reflect mirrors at most length − 1 elements per side, as onnxruntime requires (numpy would
//! reflect again); edge and wrap cannot extend an empty axis.

use super::{BuildCtx, Built, Op, Record};
use crate::graph::IntTensor;
use crate::kernels::layout;
use crate::tensor::{norm_axis, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    Constant,
    /// The border element repeated.
    Edge,
    /// Mirrored about the border element, which is not repeated.
    Reflect,
    /// The axis repeated, as on a torus.
    Wrap,
}

impl PadMode {
    fn parse(mode: &str, opset: i64) -> Result<PadMode, String> {
        match mode {
            "constant" => Ok(PadMode::Constant),
            "edge" => Ok(PadMode::Edge),
            "reflect" => Ok(PadMode::Reflect),
            "wrap" if opset >= 19 => Ok(PadMode::Wrap),
            "wrap" => Err(format!("pad mode 'wrap' exists from opset 19 on; this model is opset {opset}")),
            _ => Err(format!("pad mode '{mode}' is not an ONNX Pad mode (constant, edge, reflect, wrap)")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PadMode::Constant => "constant",
            PadMode::Edge => "edge",
            PadMode::Reflect => "reflect",
            PadMode::Wrap => "wrap",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Pad {
    /// ONNX layout: all begins, then all ends; `axes` says which axes they apply to.
    pads: Vec<i64>,
    axes: Option<Vec<i64>>,
    value: f32,
    mode: PadMode,
}

pub fn build(ctx: &BuildCtx) -> Result<Built, String> {
    let mode = PadMode::parse(&ctx.attrs().string("mode", "constant")?, ctx.opset)?;
    let (pads, value, axes) = if ctx.opset < 11 {
        let pads = ctx.attrs().ints("pads")?.ok_or("missing 'pads'")?;
        (pads, ctx.attrs().float("value", 0.0)?, None)
    } else {
        let pads = ctx.const_ints(1)?.ok_or("missing the pads input")?;
        let value = ctx.const_input(2)?.map(|c| c.to_floats().first().copied().unwrap_or(0.0)).unwrap_or(0.0);
        (pads, value, ctx.const_ints(3)?)
    };
    Built::new(Pad { pads, axes, value, mode }, [0])
}

impl Pad {
    /// The value the padding holds in constant mode.
    pub fn value(&self) -> f32 {
        self.value
    }

    pub fn mode(&self) -> PadMode {
        self.mode
    }

    /// (before, after) per axis of a rank-`rank` input; negative amounts crop.
    pub fn amounts(&self, rank: usize) -> Result<(Vec<isize>, Vec<isize>), String> {
        let axes: Vec<usize> = match &self.axes {
            None => (0..rank).collect(),
            Some(a) => a
                .iter()
                .map(|&x| norm_axis(x, rank).ok_or(format!("axis {x} out of range")))
                .collect::<Result<_, _>>()?,
        };
        if let Some(k) = (1..axes.len()).find(|&k| axes[..k].contains(&axes[k])) {
            return Err(format!("axes {:?} name axis {} twice", self.axes.as_deref().unwrap_or(&[]), axes[k]));
        }
        if self.pads.len() != 2 * axes.len() {
            return Err(format!("{} pads do not fit {} axes", self.pads.len(), axes.len()));
        }
        let (mut before, mut after) = (vec![0; rank], vec![0; rank]);
        for (i, &ax) in axes.iter().enumerate() {
            before[ax] = self.pads[i] as isize;
            after[ax] = self.pads[i + axes.len()] as isize;
        }
        Ok((before, after))
    }

    /// Per axis of an input of `shape`: the input position each output position reads (−1 for
    /// the constant), or why the pads do not fit the input.
    pub fn source_maps(&self, shape: &[usize]) -> Result<Vec<Vec<isize>>, String> {
        let (before, after) = self.amounts(shape.len())?;
        (0..shape.len()).map(|d| axis_map(self.mode, d, shape[d], before[d], after[d])).collect()
    }
}

/// Source positions along axis `axis` of length `len` for pads (`before`, `after`).
fn axis_map(mode: PadMode, axis: usize, len: usize, before: isize, after: isize) -> Result<Vec<isize>, String> {
    let first = (-before).max(0);
    let kept = len as isize - first - (-after).max(0);
    let (pre, post) = (before.max(0), after.max(0));
    let here = || {
        let crop = if kept == len as isize || kept < 0 { String::new() } else { format!(", {kept} after cropping") };
        format!("axis {axis} (length {len}{crop}): pads ({before}, {after})")
    };
    if kept < 0 {
        return Err(format!(
            "{}: the negative pads remove {} elements, more than the axis holds",
            here(),
            len as isize - kept
        ));
    }
    if mode != PadMode::Constant && pre + post > 0 {
        if kept == 0 {
            return Err(format!("{}: '{}' mode cannot extend an empty axis", here(), mode.name()));
        }
        if mode == PadMode::Reflect && pre.max(post) > kept - 1 {
            return Err(format!("{}: reflect mirrors at most {} elements per side (length − 1)", here(), kept - 1));
        }
    }
    let source = |j: isize| match mode {
        _ if (0..kept).contains(&j) => first + j,
        PadMode::Constant => -1,
        PadMode::Edge => first + j.clamp(0, kept - 1),
        PadMode::Reflect if j < 0 => first - j,
        PadMode::Reflect => first + 2 * (kept - 1) - j,
        PadMode::Wrap => first + j.rem_euclid(kept),
    };
    Ok((-pre..kept + post).map(source).collect())
}

impl Op for Pad {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(self.source_maps(inputs[0])?.iter().map(Vec::len).collect())
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let x = inputs[0];
        let maps = self.source_maps(x.shape()).expect("checked at plan time");
        Tensor::from_vec(out_shape, layout::gather_axes(x.data(), x.shape(), &maps, self.value))
    }

    /// The same gather on integer constants (padded shape sub-graphs; the ONNX node tests pad
    /// int32 data).
    fn forward_ints(&self, inputs: &[&IntTensor], out_shape: &[usize]) -> Option<IntTensor> {
        let x = inputs[0];
        let maps = self.source_maps(&x.shape).ok()?;
        Some(IntTensor {
            shape: out_shape.to_vec(),
            data: layout::gather_axes(&x.data, &x.shape, &maps, self.value as i64),
        })
    }

    /// dx: each output's gradient added into the input element it was read from (the border
    /// element in edge mode collects every copy of itself); the constant's gradients are dropped.
    fn backward(&self, rec: &Record, dy: &Tensor, _need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        let shape = &rec.shapes[0];
        let maps = self.source_maps(shape)?;
        Ok(vec![Some(Tensor::from_vec(shape.clone(), layout::scatter_add_axes(dy.data(), shape, &maps)))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(mode: PadMode, len: usize, before: isize, after: isize) -> Result<Vec<isize>, String> {
        axis_map(mode, 0, len, before, after)
    }

    #[test]
    fn source_positions_follow_each_mode() {
        // [a b c d] padded by (3, 2), worked by hand from the mode definitions (ONNX Pad spec,
        // numpy.pad): constant −1; edge a a a | a b c d | d d; reflect d c b | a b c d | c b;
        // wrap b c d | a b c d | a b.
        use PadMode::*;
        assert_eq!(map(Constant, 4, 3, 2).unwrap(), [-1, -1, -1, 0, 1, 2, 3, -1, -1]);
        assert_eq!(map(Edge, 4, 3, 2).unwrap(), [0, 0, 0, 0, 1, 2, 3, 3, 3]);
        assert_eq!(map(Reflect, 4, 3, 2).unwrap(), [3, 2, 1, 0, 1, 2, 3, 2, 1]);
        assert_eq!(map(Wrap, 4, 3, 2).unwrap(), [1, 2, 3, 0, 1, 2, 3, 0, 1]);
        // Crops: [a b c d e] by (−1, 2) keeps b c d e, then pads it.
        assert_eq!(map(Edge, 5, -1, 2).unwrap(), [1, 2, 3, 4, 4, 4]);
        assert_eq!(map(Reflect, 5, -1, 2).unwrap(), [1, 2, 3, 4, 3, 2]);
        assert_eq!(map(Wrap, 5, 2, -2).unwrap(), [1, 2, 0, 1, 2]);
        assert_eq!(map(Constant, 3, -3, 1).unwrap(), [-1]);
    }

    #[test]
    fn pads_that_do_not_fit_are_refused() {
        use PadMode::*;
        let err = map(Reflect, 4, 4, 0).unwrap_err();
        assert!(err.contains("at most 3"), "{err}");
        assert!(map(Reflect, 1, 0, 1).unwrap_err().contains("at most 0"));
        assert!(map(Edge, 3, -3, 1).unwrap_err().contains("empty"));
        assert!(map(Constant, 3, -2, -2).unwrap_err().contains("remove"));
        assert_eq!(map(Reflect, 1, 0, 0).unwrap(), [0], "no pad, nothing to mirror");
        assert!(PadMode::parse("wrap", 18).unwrap_err().contains("opset 19"));
        assert!(PadMode::parse("symmetric", 19).unwrap_err().contains("'symmetric'"));
    }
}
