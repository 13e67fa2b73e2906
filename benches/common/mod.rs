//! What the convolution benchmarks share: the median of repeated timings and a square layer.
#![allow(dead_code)] // each bench uses its part

use std::time::Instant;

use edgetune::kernels::conv::ConvShape;
use edgetune::ops::window::Geometry;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds per call of `f`: the median of `reps` calls after one warm-up call.
pub fn time(reps: usize, f: &mut dyn FnMut()) -> f64 {
    f();
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// A `k`×`k` convolution from `c` to `m` channels over `hw`×`hw` inputs, stride `st`, padded
/// by `k / 2` (ResNet's layers).
pub fn square_conv(batch: usize, c: usize, m: usize, hw: usize, k: usize, st: usize) -> ConvShape {
    let p = k / 2;
    let o = (hw + 2 * p - k) / st + 1;
    let geo = Geometry {
        in_hw: [hw, hw],
        out_hw: [o, o],
        kernel: [k, k],
        strides: [st, st],
        dilations: [1, 1],
        pads: [p; 4],
    };
    ConvShape { batch, in_ch: c, out_ch: m, groups: 1, geo }
}
