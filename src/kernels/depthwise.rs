//! Depthwise convolution computed directly: group = input channels, so each output channel m reads
//! one input plane, c = m / mult (`mult` = output channels per group, 1 in MobileNets). A GEMM per
//! group would be a 1-row matrix product with the im2col overhead of a full one.
//!
//! Shapes as `conv`: x `[N, C, H, W]`, W `[C·mult, 1, KH, KW]`, y `[N, C·mult, OH, OW]`.
//! - forward: `y[b,m,oy,ox] = Σ_{ky,kx} W[m,ky,kx] · x[b,c, oy·sh + ky·dh − pt, ox·sw + kx·dw − pl]`
//!   (taps in the padding read 0), one output plane per task, each tap a scaled row added to the
//!   output row;
//! - dx: for stride 1 and mult 1 the forward pass of dy with each channel's taps reversed and the
//!   padding mirrored (`ConvShape::dx_convolution`); otherwise the adjoint, each tap's scaled dy
//!   row added onto the input row it read, one input plane (all `mult` output channels reading
//!   it) per task;
//! - dW: `dW[m,ky,kx] = Σ_{b,oy,ox} dy[b,m,oy,ox] · x[b,c,iy,ix]`, one output channel per task,
//!   accumulated per tap in 16 f32 lanes of partial sums, summed in f64 at the end.
//!
//! A horizontally strided window reads each input row split into its phases (`Phased`), so every
//! tap is a contiguous run. The per-plane loops are compiled twice (`fma_fn!`: AVX2 and the
//! baseline) and use separate multiplies and adds (Rust never contracts them into FMAs), so both
//! copies give identical results.

use rayon::prelude::*;

use super::conv::{ConvShape, Epilogue};
use super::{fma_fn, simd};
use crate::ops::window::Geometry;

/// Whether `conv2d`'s shape is one this module computes: one input channel per group, groups > 1.
pub fn applies(s: &ConvShape) -> bool {
    s.groups > 1 && s.groups == s.in_ch
}

/// Where tap `kx` reads in a row: output columns `lo..hi` read input columns
/// `ix = ox·sw + kx·dw − pl` inside the row, which in the row's phase `phase` (see `Phased`) are
/// the contiguous run from `start`.
#[derive(Clone, Copy)]
struct Tap {
    lo: usize,
    hi: usize,
    phase: usize,
    start: usize,
}

/// Each tap's run, `None` for a tap that reads only padding.
fn taps(geo: &Geometry) -> Vec<Option<Tap>> {
    let (w, sw, ow, pl) = (geo.in_hw[1], geo.strides[1], geo.out_hw[1], geo.pads[1]);
    (0..geo.kernel[1])
        .map(|kx| {
            let off = kx * geo.dilations[1];
            let lo = pl.saturating_sub(off).div_ceil(sw).min(ow);
            // Largest ox with ox·sw + off − pl ≤ w − 1.
            let hi = if w + pl > off { ((w - 1 + pl - off) / sw + 1).min(ow) } else { 0 };
            let ix = lo * sw + off - pl;
            (lo < hi).then_some(Tap { lo, hi, phase: ix % sw, start: ix / sw })
        })
        .collect()
}

/// The input row tap `ky` of output row `oy` reads, if inside the plane.
fn input_row(geo: &Geometry, oy: usize, ky: usize) -> Option<usize> {
    (oy * geo.strides[0] + ky * geo.dilations[0]).checked_sub(geo.pads[0]).filter(|&iy| iy < geo.in_hw[0])
}

/// A plane with each row split into its `sw` phases (phase p: columns p, p + sw, ...), so a tap
/// of a horizontally strided window reads one contiguous run; `pw` columns per phase. Stride 1
/// is the plane itself.
struct Phased {
    sw: usize,
    pw: usize,
    iw: usize,
}

impl Phased {
    fn new(geo: &Geometry) -> Phased {
        let (iw, sw) = (geo.in_hw[1], geo.strides[1]);
        Phased { sw, pw: iw.div_ceil(sw), iw }
    }

    fn len(&self, rows: usize) -> usize {
        rows * self.sw * self.pw
    }

    /// Row `iy`, phase `p`: `pw` floats.
    fn at(&self, iy: usize, p: usize) -> usize {
        (iy * self.sw + p) * self.pw
    }

    fn split(&self, plane: &[f32], out: &mut [f32]) {
        for (row, dst) in plane.chunks(self.iw).zip(out.chunks_mut(self.sw * self.pw)) {
            for (p, phase) in dst.chunks_mut(self.pw).enumerate() {
                for (d, &v) in phase.iter_mut().zip(row[p.min(row.len())..].iter().step_by(self.sw)) {
                    *d = v;
                }
            }
        }
    }

    fn join(&self, phased: &[f32], plane: &mut [f32]) {
        for (row, src) in plane.chunks_mut(self.iw).zip(phased.chunks(self.sw * self.pw)) {
            for (p, phase) in src.chunks(self.pw).enumerate() {
                let start = p.min(row.len());
                for (v, &s) in row[start..].iter_mut().step_by(self.sw).zip(phase) {
                    *v = s;
                }
            }
        }
    }
}

/// `y += a · x` (x at least as long as y).
#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let n = y.len();
    for (y, &x) in y.iter_mut().zip(&x[..n]) {
        *y += a * x;
    }
}

/// Output columns per register block of the forward pass.
const B: usize = 16;

/// The forward pass's view of one input plane: zero-padded on every side so that every tap of
/// every output column — rounded up to whole blocks of `B` — reads inside it, then split into
/// `sw` phases per row (see `Phased`), so a tap reads one contiguous run.
struct PaddedPlane {
    /// Row pitch of the padded plane before the phase split; `sw · pw` floats per padded row.
    wp: usize,
    ph: Phased,
    rows: usize,
}

impl PaddedPlane {
    fn new(geo: &Geometry) -> PaddedPlane {
        let owb = geo.out_hw[1].div_ceil(B) * B;
        let wp = (owb - 1) * geo.strides[1] + (geo.kernel[1] - 1) * geo.dilations[1] + 1;
        let wp = wp.max(geo.in_hw[1] + geo.pads[1]).next_multiple_of(geo.strides[1]);
        let rows = geo.in_hw[0] + geo.pads[0] + geo.pads[2];
        PaddedPlane { wp, ph: Phased { sw: geo.strides[1], pw: wp / geo.strides[1], iw: wp }, rows }
    }

    /// Fills `buf` with `plane` placed at (pt, pl), zeros around it, split into phases.
    fn fill(&self, plane: &[f32], geo: &Geometry, tmp: &mut Vec<f32>, buf: &mut Vec<f32>) {
        let (iw, pt, pl) = (geo.in_hw[1], geo.pads[0], geo.pads[1]);
        let dst = if self.ph.sw == 1 { &mut *buf } else { &mut *tmp };
        dst.clear();
        dst.resize(self.rows * self.wp, 0.0);
        for (y, row) in plane.chunks(iw).enumerate() {
            dst[(y + pt) * self.wp + pl..][..iw].copy_from_slice(row);
        }
        if self.ph.sw > 1 {
            buf.clear();
            buf.resize(self.rows * self.wp, 0.0);
            self.ph.split(tmp, buf);
        }
    }
}

fma_fn! {
    /// One output plane (`OH·OW`, overwritten) from the padded, phased input plane `x` and the
    /// `KH·KW` weights `w`: per output row and block of `B` columns, all taps summed in registers
    /// and stored once.
    fn forward_plane(x: &[f32], w: &[f32], geo: &Geometry, pp: &PaddedPlane, out: &mut [f32]) {
        let (kh, kw, ow) = (geo.kernel[0], geo.kernel[1], geo.out_hw[1]);
        let (sh, dh, sw, dw) = (geo.strides[0], geo.dilations[0], geo.strides[1], geo.dilations[1]);
        for (oy, row) in out.chunks_mut(ow).enumerate() {
            for j in (0..ow).step_by(B) {
                let mut acc = [0.0f32; B];
                for ky in 0..kh {
                    let iy = oy * sh + ky * dh;
                    for kx in 0..kw {
                        let (phase, start) = ((kx * dw) % sw, (kx * dw) / sw);
                        let at = pp.ph.at(iy, phase) + start + j;
                        let xs: &[f32; B] = x[at..at + B].try_into().expect("a block of B");
                        let wv = w[ky * kw + kx];
                        for (a, &v) in acc.iter_mut().zip(xs) {
                            *a += wv * v;
                        }
                    }
                }
                let n = B.min(ow - j);
                row[j..j + n].copy_from_slice(&acc[..n]);
            }
        }
    }
}

fma_fn! {
    /// Adds plane `g` (one output channel's dy) times its weights `w` onto the phased input
    /// gradient `dx` (the adjoint of `forward_plane`).
    fn dx_plane(g: &[f32], w: &[f32], geo: &Geometry, ph: &Phased, taps: &[Option<Tap>], dx: &mut [f32]) {
        let (kh, kw, ow) = (geo.kernel[0], geo.kernel[1], geo.out_hw[1]);
        for (oy, grow) in g.chunks(ow).enumerate() {
            for ky in 0..kh {
                let Some(iy) = input_row(geo, oy, ky) else { continue };
                for (kx, t) in taps.iter().enumerate() {
                    let Some(t) = t else { continue };
                    let at = ph.at(iy, t.phase) + t.start;
                    axpy(w[ky * kw + kx], &grow[t.lo..t.hi], &mut dx[at..at + t.hi - t.lo]);
                }
            }
        }
    }
}

fma_fn! {
    /// `acc[tap·B + i] += Σ g[oy, j + i] · x[tap's input of (oy, j + i)]` over output rows oy and
    /// column blocks j: one image's contribution to one output channel's dW, per tap and lane,
    /// read from the padded, phased input plane as `forward_plane` reads it (columns past the
    /// row's end multiply a zero of dy).
    fn dw_plane(g: &[f32], x: &[f32], geo: &Geometry, pp: &PaddedPlane, acc: &mut [f32]) {
        let (kh, kw, ow) = (geo.kernel[0], geo.kernel[1], geo.out_hw[1]);
        let (sh, dh, sw, dw) = (geo.strides[0], geo.dilations[0], geo.strides[1], geo.dilations[1]);
        for (oy, grow) in g.chunks(ow).enumerate() {
            for j in (0..ow).step_by(B) {
                let mut gb = [0.0f32; B];
                let n = B.min(ow - j);
                gb[..n].copy_from_slice(&grow[j..j + n]);
                for ky in 0..kh {
                    let iy = oy * sh + ky * dh;
                    for kx in 0..kw {
                        let (phase, start) = ((kx * dw) % sw, (kx * dw) / sw);
                        let at = pp.ph.at(iy, phase) + start + j;
                        let xs: &[f32; B] = x[at..at + B].try_into().expect("a block of B");
                        let t = (ky * kw + kx) * B;
                        let a: &mut [f32; B] = (&mut acc[t..t + B]).try_into().expect("a block of B");
                        for ((a, &gv), &xv) in a.iter_mut().zip(&gb).zip(xs) {
                            *a += gv * xv;
                        }
                    }
                }
            }
        }
    }
}

/// Forward pass with the epilogue (residual, bias, ReLU) applied per output plane while it is hot.
pub fn forward(x: &[f32], w: &[f32], s: &ConvShape, ep: Epilogue, out: &mut [f32]) {
    debug_assert!(applies(s));
    let geo = &s.geo;
    let (hw, n, k) = (geo.in_hw[0] * geo.in_hw[1], geo.out_hw[0] * geo.out_hw[1], geo.kernel[0] * geo.kernel[1]);
    let (mult, pp) = (s.out_ch / s.in_ch, PaddedPlane::new(geo));
    out.par_chunks_mut(n.max(1)).enumerate().for_each_init(Default::default, |(tmp, buf), (plane, o)| {
        let (b, m) = (plane / s.out_ch, plane % s.out_ch);
        pp.fill(&x[(b * s.in_ch + m / mult) * hw..][..hw], geo, tmp, buf);
        forward_plane(buf, &w[m * k..][..k], geo, &pp, o);
        if let Some(res) = ep.residual {
            simd::arith_inplace(simd::Arith::Add, o, &res[plane * n..][..n]);
        }
        if ep.bias.is_some() || ep.relu {
            simd::affine_inplace(o, 1.0, ep.bias.map_or(0.0, |bv| bv[m]), ep.relu);
        }
    });
}

/// dx and dW given dy; each output is overwritten.
pub fn backward(x: &[f32], w: &[f32], s: &ConvShape, dy: &[f32], dx: Option<&mut [f32]>, dw: Option<&mut [f32]>) {
    debug_assert!(applies(s));
    let geo = &s.geo;
    let (hw, n, k) = (geo.in_hw[0] * geo.in_hw[1], geo.out_hw[0] * geo.out_hw[1], geo.kernel[0] * geo.kernel[1]);
    let (mult, ph, taps) = (s.out_ch / s.in_ch, Phased::new(geo), taps(geo));
    // dx of a stride-1 layer with one output channel per input channel is itself a depthwise
    // forward pass: dy with each channel's taps reversed and the padding mirrored.
    let dx = match (dx, s.dx_convolution().filter(|_| mult == 1)) {
        (Some(d), Some(t)) => {
            let flipped: Vec<f32> = w.chunks(k).flat_map(|taps| taps.iter().rev().copied()).collect();
            forward(dy, &flipped, &t, Epilogue::default(), d);
            None
        }
        (d, _) => d,
    };
    if let Some(dx) = dx {
        dx.par_chunks_mut(hw.max(1)).enumerate().for_each_init(Vec::new, |buf, (plane, d)| {
            let (b, c) = (plane / s.in_ch, plane % s.in_ch);
            let strided = ph.sw > 1;
            if strided {
                buf.clear();
                buf.resize(ph.len(geo.in_hw[0]), 0.0);
            } else {
                d.fill(0.0);
            }
            let acc: &mut [f32] = if strided { buf } else { d };
            for m in c * mult..(c + 1) * mult {
                dx_plane(&dy[(b * s.out_ch + m) * n..][..n], &w[m * k..][..k], geo, &ph, &taps, acc);
            }
            if strided {
                ph.join(buf, d);
            }
        });
    }
    if let Some(dw) = dw {
        let pp = PaddedPlane::new(geo);
        dw.par_chunks_mut(k).enumerate().for_each_init(Default::default, |(tmp, buf), (m, dwm)| {
            let mut acc = vec![0.0f32; k * B];
            for b in 0..s.batch {
                pp.fill(&x[(b * s.in_ch + m / mult) * hw..][..hw], geo, tmp, buf);
                dw_plane(&dy[(b * s.out_ch + m) * n..][..n], buf, geo, &pp, &mut acc);
            }
            for (t, v) in dwm.iter_mut().enumerate() {
                *v = acc[t * B..(t + 1) * B].iter().map(|&a| a as f64).sum::<f64>() as f32;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::{conv2d_backward_reference, conv2d_reference};

    fn geometry(
        in_hw: [usize; 2],
        kernel: [usize; 2],
        strides: [usize; 2],
        dil: [usize; 2],
        pads: [usize; 4],
    ) -> Geometry {
        let out = |i: usize| {
            let span = dil[i] * (kernel[i] - 1) + 1;
            (in_hw[i] + pads[i] + pads[i + 2] - span) / strides[i] + 1
        };
        Geometry { in_hw, out_hw: [out(0), out(1)], kernel, strides, dilations: dil, pads }
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104729) % 1000) as f32 / 500.0) - 1.0).collect()
    }

    /// Against the direct f64 definitions in `conv` (the GEMM path's reference), over strides,
    /// dilations, asymmetric pads, a channel multiplier of 2 and windows wider than the padded
    /// input's reach on one side. Tolerance: f32 sums of ≤ 50 products of values in [−1, 1]
    /// against f64, 1e-5 relative to the output's scale.
    #[test]
    fn forward_and_backward_match_the_definition() {
        let cases = [
            (2, 3, 3, geometry([7, 6], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1])),
            (1, 4, 8, geometry([9, 9], [3, 3], [2, 2], [1, 1], [0, 1, 1, 0])),
            (2, 2, 2, geometry([8, 7], [5, 5], [1, 2], [1, 1], [2, 2, 2, 2])),
            (1, 3, 3, geometry([9, 8], [3, 3], [1, 1], [2, 2], [2, 0, 1, 3])),
            (3, 2, 4, geometry([5, 5], [3, 3], [2, 1], [1, 1], [1, 1, 1, 1])),
            // The last stages of a MobileNet at small inputs: planes no wider than the window.
            (2, 3, 3, geometry([4, 4], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1])),
            (1, 2, 2, geometry([2, 2], [5, 5], [1, 1], [1, 1], [2, 2, 2, 2])),
            (2, 2, 2, geometry([1, 1], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1])),
            (1, 2, 2, geometry([3, 3], [5, 5], [2, 2], [1, 1], [2, 2, 2, 2])),
            // Rows wide enough for forward_plane's 16-column register blocks and a remainder.
            (1, 2, 2, geometry([4, 41], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1])),
            (2, 2, 4, geometry([5, 70], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1])),
        ];
        for (k, (batch, c, m, geo)) in cases.into_iter().enumerate() {
            let s = ConvShape { batch, in_ch: c, out_ch: m, groups: c, geo };
            let x = values(batch * c * geo.in_hw[0] * geo.in_hw[1], k + 1);
            let w = values(m * geo.kernel[0] * geo.kernel[1], k + 11);
            let bias = values(m, k + 21);
            let n = batch * m * geo.out_hw[0] * geo.out_hw[1];
            let dy = values(n, k + 31);
            let mut y = vec![f32::NAN; n];
            forward(&x, &w, &s, Epilogue { bias: Some(&bias), residual: None, relu: false }, &mut y);
            let want = conv2d_reference(&x, &w, &s, Some(&bias));
            let (mut dx, mut dw) = (vec![f32::NAN; x.len()], vec![f32::NAN; w.len()]);
            backward(&x, &w, &s, &dy, Some(&mut dx), Some(&mut dw));
            let (want_dx, want_dw) = conv2d_backward_reference(&x, &w, &s, &dy);
            for (what, got, want) in [("y", &y, &want), ("dx", &dx, &want_dx), ("dw", &dw, &want_dw)] {
                let scale = want.iter().fold(0.0f32, |a, v| a.max(v.abs())).max(1e-3);
                let err = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) / scale;
                assert!(err < 1e-5, "case {k} {what}: relative error {err:.2e} ({geo:?})");
            }
        }
    }
}
