//! Conv: 2-D convolution with groups, strides, dilations, pads or auto_pad, optional bias.
//! Depthwise layers (one input channel per group) run on their own direct kernel; the others
//! as a GEMM per group.
//! Inference plans may fuse a following BatchNormalization (into the weights) and ReLU.

use super::window::Window;
use super::{expect_rank, BuildCtx, Built, Op, Record, Saves};
use std::sync::{Arc, Mutex};

use crate::kernels::conv::{conv2d, conv2d_backward, pack_weights, ConvShape, Epilogue};
use crate::kernels::packed::PackedA;
use crate::kernels::simd;
use crate::kernels::{depthwise, micro};
use crate::tensor::Tensor;

pub struct Conv {
    pub window: Window,
    pub groups: usize,
    /// ReLU applied to the output (set by the inference planner's fusion).
    pub relu: bool,
    /// A residual tensor, the last runtime input, added before the ReLU (inference fusion of a
    /// ResNet block's Add).
    pub residual: bool,
    /// The weights packed for the GEMM, while the same weight tensor keeps coming (inference, a
    /// frozen layer in training).
    packed: Mutex<PackCache>,
}

/// What a convolution keeps of its packed weights.
enum PackCache {
    Empty,
    /// The weight tensor and its packed panels. Holding the tensor keeps its storage alive, so
    /// the identity check cannot be fooled by a reused address.
    Held(Tensor, Arc<Vec<PackedA>>),
    /// A different weight tensor came: the layer trains. Its weights are packed per step and not
    /// kept, since a kept copy (and the old tensor it holds) would be stale at the next step and
    /// hold twice the layer's weights through the backward pass, at the step's peak memory.
    Training,
}

impl std::fmt::Debug for Conv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conv")
            .field("window", &self.window)
            .field("groups", &self.groups)
            .field("relu", &self.relu)
            .finish()
    }
}

impl Clone for Conv {
    fn clone(&self) -> Conv {
        Conv {
            window: self.window.clone(),
            groups: self.groups,
            relu: self.relu,
            residual: self.residual,
            packed: Mutex::new(PackCache::Empty),
        }
    }
}

pub fn build(ctx: &BuildCtx) -> Result<Built, String> {
    let w = ctx.input(1)?.shape;
    expect_rank(w, 4, "Conv weight (only 2-D convolution is supported)")?;
    let groups = ctx.attrs().int("group", 1)?;
    if groups < 1 {
        return Err(format!("group must be positive, got {groups}"));
    }
    let window = Window::from_attrs(ctx.attrs(), Some([w[2], w[3]]))?;
    let inputs = if ctx.has_input(2) { vec![0, 1, 2] } else { vec![0, 1] };
    Built::new(
        Conv { window, groups: groups as usize, relu: false, residual: false, packed: Mutex::new(PackCache::Empty) },
        inputs,
    )
}

impl Conv {
    /// Where the bias is among `n` runtime inputs (x, w, [bias], [residual]).
    fn bias_index(&self, n: usize) -> Option<usize> {
        (n > 2 + self.residual as usize).then_some(2)
    }

    /// The packed weights for `w` (cached while the same tensor keeps coming).
    fn packed_weights(&self, w: &Tensor, s: &ConvShape) -> Arc<Vec<PackedA>> {
        let mut cache = self.packed.lock().expect("conv weight cache");
        if let PackCache::Held(t, p) = &*cache {
            if t.shares_storage(w) && t.shape() == w.shape() {
                return p.clone();
            }
        }
        let p = Arc::new(pack_weights(micro::active(), w.data(), s));
        *cache = match *cache {
            PackCache::Empty => PackCache::Held(w.clone(), p.clone()),
            _ => PackCache::Training,
        };
        p
    }

    pub fn shape(&self, x: &[usize], w: &[usize]) -> Result<ConvShape, String> {
        expect_rank(x, 4, "Conv input")?;
        let (c, m, g) = (x[1], w[0], self.groups);
        if c != w[1] * g {
            return Err(format!("input has {c} channels but the weight {w:?} with group={g} expects {}", w[1] * g));
        }
        if m % g != 0 {
            return Err(format!("{m} output channels do not divide into {g} groups"));
        }
        let geo = self.window.geometry([x[2], x[3]]).map_err(|e| format!("input {x:?}: {e}"))?;
        Ok(ConvShape { batch: x[0], in_ch: c, out_ch: m, groups: g, geo })
    }
}

impl Op for Conv {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = self.shape(inputs[0], inputs[1])?;
        let out = vec![s.batch, s.out_ch, s.geo.out_hw[0], s.geo.out_hw[1]];
        if let Some(b) = self.bias_index(inputs.len()).map(|i| inputs[i]) {
            if b != [s.out_ch] {
                return Err(format!("bias shape {b:?} does not match {} output channels", s.out_ch));
            }
        }
        if self.residual && inputs.last() != Some(&&out[..]) {
            return Err(format!("residual {:?} does not match the output {out:?}", inputs.last()));
        }
        Ok(out)
    }

    fn forward(&self, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
        let s = self.shape(inputs[0].shape(), inputs[1].shape()).expect("shape checked at plan time");
        let mut out = vec![0.0; out_shape.iter().product()];
        let ep = Epilogue {
            bias: self.bias_index(inputs.len()).map(|i| inputs[i].data()),
            residual: self.residual.then(|| inputs[inputs.len() - 1].data()),
            relu: self.relu,
        };
        if depthwise::applies(&s) {
            depthwise::forward(inputs[0].data(), inputs[1].data(), &s, ep, &mut out);
        } else {
            conv2d(inputs[0].data(), &self.packed_weights(inputs[1], &s), &s, ep, &mut out);
        }
        Tensor::from_vec(out_shape, out)
    }

    fn saves(&self) -> Saves {
        Saves::inputs(&[0, 1])
    }

    /// dx and dW through `conv2d_backward` (patches recomputed, not stored) or, for a depthwise
    /// layer, `depthwise::backward`; db = Σ dy over
    /// batch and space. Training plans never fuse, so `relu` is off here.
    fn backward(&self, rec: &Record, dy: &Tensor, need: &[bool]) -> Result<Vec<Option<Tensor>>, String> {
        debug_assert!(!self.relu && !self.residual, "fused convolutions are inference-only");
        let (x, w) = (rec.input(0), rec.input(1));
        let s = self.shape(x.shape(), w.shape())?;
        let mut dx = need[0].then(|| vec![0.0; x.len()]);
        let mut dw = need[1].then(|| vec![0.0; w.len()]);
        if depthwise::applies(&s) {
            depthwise::backward(x.data(), w.data(), &s, dy.data(), dx.as_deref_mut(), dw.as_deref_mut());
        } else if dx.is_some() || dw.is_some() {
            conv2d_backward(micro::active(), x.data(), w.data(), &s, dy.data(), dx.as_deref_mut(), dw.as_deref_mut());
        }
        let mut out = vec![dx.map(|v| Tensor::from_vec(x.shape(), v)), dw.map(|v| Tensor::from_vec(w.shape(), v))];
        if rec.shapes.len() > 2 {
            out.push(need[2].then(|| {
                let plane = s.geo.out_hw[0] * s.geo.out_hw[1];
                let mut db = vec![0.0f64; s.out_ch];
                for (i, p) in dy.data().chunks(plane).enumerate() {
                    db[i % s.out_ch] += simd::sum(p) as f64;
                }
                Tensor::from_vec([s.out_ch], db.into_iter().map(|v| v as f32).collect())
            }));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::window::AutoPad;

    #[test]
    fn packed_weights_are_kept_while_frozen_and_dropped_once_they_train() {
        let window = Window {
            kernel: [3, 3],
            strides: [1, 1],
            dilations: [1, 1],
            pads: [1; 4],
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
        };
        let conv = Conv { window, groups: 1, relu: false, residual: false, packed: Mutex::new(PackCache::Empty) };
        let x = Tensor::from_vec([1, 2, 4, 4], (0..32).map(|i| i as f32).collect());
        let weight = |v: f32| Tensor::from_vec([3, 2, 3, 3], vec![v; 54]);
        let (w1, w2) = (weight(1.0), weight(2.0));
        let s = conv.shape(x.shape(), w1.shape()).unwrap();
        // Frozen: the same tensor again gets the same panels.
        let first = conv.packed_weights(&w1, &s);
        assert!(Arc::ptr_eq(&first, &conv.packed_weights(&w1, &s)), "frozen weights repacked");
        // A new tensor: the layer trains; nothing is kept, not even the old tensor.
        let y2 = conv.forward(&[&x, &w2], &[1, 3, 4, 4]);
        assert!(matches!(*conv.packed.lock().unwrap(), PackCache::Training), "a training layer keeps its panels");
        let y1 = conv.forward(&[&x, &w1], &[1, 3, 4, 4]);
        // Uncached packing still computes with the weights given: all-2 weights give twice the output.
        for (a, b) in y2.data().iter().zip(y1.data()) {
            assert_eq!(*a, 2.0 * b);
        }
    }
}
