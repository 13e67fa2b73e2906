//! Max and average pooling over NCHW planes, parallel across planes. Each window tap is applied
//! to a whole output row at once: with stride 1 the row is contiguous and runs through the SIMD
//! kernels in `simd`; `*_scalar` twins define the result.

use rayon::prelude::*;

use super::simd::{self, Arith};
use crate::ops::window::Geometry;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    Max,
    /// Average; `count_pad` counts padded taps in the divisor (ONNX `count_include_pad`).
    Avg {
        count_pad: bool,
    },
}

/// For tap offset `off` (already minus the begin pad) the output range whose input index
/// `o * stride + off` lies in `[0, len)`.
fn valid_range(off: isize, stride: usize, len: usize, out: usize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if off >= 0 { 0 } else { ((-off) + s - 1) / s };
    let hi = if off >= len as isize { 0 } else { ((len as isize - 1 - off) / s + 1).min(out as isize) };
    (lo as usize, (hi.max(lo)) as usize)
}

/// Pools `planes` planes of `x` (each `in_hw`) into `out` (each `out_hw`).
pub fn pool2d(x: &[f32], planes: usize, geo: &Geometry, kind: Pool, out: &mut [f32], use_simd: bool) {
    let [h, w] = geo.in_hw;
    let [oh, ow] = geo.out_hw;
    out[..planes * oh * ow].par_chunks_mut(oh * ow).zip(x[..planes * h * w].par_chunks(h * w)).for_each(|(o, p)| {
        pool_plane(p, geo, kind, o, use_simd);
    });
}

fn pool_plane(x: &[f32], geo: &Geometry, kind: Pool, out: &mut [f32], use_simd: bool) {
    let [h, w] = geo.in_hw;
    let [oh, ow] = geo.out_hw;
    let [kh, kw] = geo.kernel;
    let init = if kind == Pool::Max { f32::NEG_INFINITY } else { 0.0 };
    let mut tmp = vec![0.0f32; ow];
    for oy in 0..oh {
        let acc = &mut out[oy * ow..(oy + 1) * ow];
        acc.fill(init);
        for ky in 0..kh {
            let iy = (oy * geo.strides[0] + ky * geo.dilations[0]) as isize - geo.pads[0] as isize;
            if iy < 0 || iy >= h as isize {
                continue;
            }
            let row = &x[iy as usize * w..(iy as usize + 1) * w];
            for kx in 0..kw {
                let off = (kx * geo.dilations[1]) as isize - geo.pads[1] as isize;
                let (lo, hi) = valid_range(off, geo.strides[1], w, ow);
                if lo >= hi {
                    continue;
                }
                let first = (lo as isize * geo.strides[1] as isize + off) as usize;
                let src: &[f32] = if geo.strides[1] == 1 {
                    &row[first..first + (hi - lo)]
                } else {
                    for (i, t) in tmp[..hi - lo].iter_mut().enumerate() {
                        *t = row[first + i * geo.strides[1]];
                    }
                    &tmp[..hi - lo]
                };
                let dst = &mut acc[lo..hi];
                match (kind, use_simd) {
                    (Pool::Max, true) => simd::max_inplace(dst, src),
                    (Pool::Max, false) => simd::max_inplace_scalar(dst, src),
                    (Pool::Avg { .. }, true) => simd::arith_inplace(Arith::Add, dst, src),
                    (Pool::Avg { .. }, false) => simd::arith_inplace_scalar(Arith::Add, dst, src),
                }
            }
        }
        if let Pool::Avg { count_pad } = kind {
            for (ox, v) in acc.iter_mut().enumerate() {
                *v /= divisor(geo, oy, ox, count_pad) as f32;
            }
        }
    }
}

/// Number of taps averaged at output (oy, ox): the window clipped to the input, or (with
/// `count_pad`) clipped to the padded input — the PyTorch/ONNX `count_include_pad` rule.
pub fn divisor(geo: &Geometry, oy: usize, ox: usize, count_pad: bool) -> usize {
    let axis = |d: usize, o: usize| {
        let start = (o * geo.strides[d]) as isize - geo.pads[d] as isize;
        let (lo, hi) = if count_pad {
            (-(geo.pads[d] as isize), (geo.in_hw[d] + geo.pads[d + 2]) as isize)
        } else {
            (0, geo.in_hw[d] as isize)
        };
        (0..geo.kernel[d]).filter(|&k| (lo..hi).contains(&(start + (k * geo.dilations[d]) as isize))).count()
    };
    axis(0, oy) * axis(1, ox)
}

/// Gradient of `pool2d`: `dx` (fully overwritten) from `dy`. Max routes each output's gradient
/// to the first largest tap in window order (PyTorch's choice on ties); average spreads it over
/// the window's in-input taps, divided by the same divisor as the forward.
pub fn pool2d_backward(x: &[f32], planes: usize, geo: &Geometry, kind: Pool, dy: &[f32], dx: &mut [f32]) {
    let [h, w] = geo.in_hw;
    let [oh, ow] = geo.out_hw;
    let [kh, kw] = geo.kernel;
    let taps = |oy: usize, ox: usize| {
        (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (ky, kx))).filter_map(move |(ky, kx)| {
            let iy = (oy * geo.strides[0] + ky * geo.dilations[0]) as isize - geo.pads[0] as isize;
            let ix = (ox * geo.strides[1] + kx * geo.dilations[1]) as isize - geo.pads[1] as isize;
            (iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize).then(|| iy as usize * w + ix as usize)
        })
    };
    dx[..planes * h * w]
        .par_chunks_mut(h * w)
        .zip(dy[..planes * oh * ow].par_chunks(oh * ow))
        .zip(x[..planes * h * w].par_chunks(h * w))
        .for_each(|((dxp, dyp), xp)| {
            dxp.fill(0.0);
            for oy in 0..oh {
                for ox in 0..ow {
                    let g = dyp[oy * ow + ox];
                    match kind {
                        Pool::Max => {
                            let best = taps(oy, ox).fold(None, |b: Option<usize>, i| match b {
                                Some(j) if xp[j] >= xp[i] => Some(j),
                                _ => Some(i),
                            });
                            if let Some(i) = best {
                                dxp[i] += g;
                            }
                        }
                        Pool::Avg { count_pad } => {
                            let share = g / divisor(geo, oy, ox, count_pad) as f32;
                            taps(oy, ox).for_each(|i| dxp[i] += share);
                        }
                    }
                }
            }
        });
}

/// Mean of each plane (global average pooling).
pub fn plane_means(x: &[f32], plane: usize, out: &mut [f32]) {
    out.par_iter_mut().zip(x.par_chunks(plane)).for_each(|(o, p)| *o = simd::sum(p) / plane as f32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_pooling_matches_scalar_twin_and_hand_values() {
        // 4x4 plane 0..16, 3x3 max pool stride 2 pad 1 -> 2x2: windows end at rows/cols 1 and 3,
        // so the maxima are x[1][1]=5, x[1][3]=7, x[3][1]=13, x[3][3]=15.
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let geo = Geometry {
            in_hw: [4, 4],
            out_hw: [2, 2],
            kernel: [3, 3],
            strides: [2, 2],
            dilations: [1, 1],
            pads: [1, 1, 1, 1],
        };
        let mut out = vec![0.0; 4];
        pool2d(&x, 1, &geo, Pool::Max, &mut out, true);
        assert_eq!(out, vec![5.0, 7.0, 13.0, 15.0]);
        // Average without pads counted: top-left window covers x[0..2][0..2] = (0+1+4+5)/4.
        pool2d(&x, 1, &geo, Pool::Avg { count_pad: false }, &mut out, true);
        assert_eq!(out[0], 2.5);
        // With pads counted the divisor is 9: 10/9.
        pool2d(&x, 1, &geo, Pool::Avg { count_pad: true }, &mut out, true);
        assert!((out[0] - 10.0 / 9.0).abs() < 1e-6);

        let x: Vec<f32> = (0..3 * 37 * 35).map(|i| ((i * 7919) % 101) as f32 - 50.0).collect();
        for (st, pads) in [(1, [1, 1, 1, 1]), (2, [0, 1, 1, 0])] {
            let geo = Geometry {
                in_hw: [37, 35],
                out_hw: [0, 0],
                kernel: [3, 3],
                strides: [st, st],
                dilations: [1, 1],
                pads,
            };
            let out_hw = [(37 + pads[0] + pads[2] - 3) / st + 1, (35 + pads[1] + pads[3] - 3) / st + 1];
            let geo = Geometry { out_hw, ..geo };
            for kind in [Pool::Max, Pool::Avg { count_pad: true }, Pool::Avg { count_pad: false }] {
                let mut a = vec![0.0; 3 * out_hw[0] * out_hw[1]];
                let mut b = a.clone();
                pool2d(&x, 3, &geo, kind, &mut a, true);
                pool2d(&x, 3, &geo, kind, &mut b, false);
                assert_eq!(a, b, "{kind:?} stride {st}");
            }
        }
    }
}
