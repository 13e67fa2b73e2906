//! 2-D convolution as GEMM: `out[b, g] = W[g] · im2col(x[b, g])`.
//!
//! Shapes: x `[N, C, H, W]`, W `[M, C/G, KH, KW]`, out `[N, M, OH, OW]`. im2col lays the patches
//! out as a `(C/G·KH·KW) × (OH·OW)` matrix; a 1×1, stride-1, unpadded convolution skips it and
//! multiplies the input planes directly.

use rayon::prelude::*;

use super::gemm::{gemm, MatRef};
use super::micro::MicroKernel;
use super::packed::{gemm_packed, BRef, PackedA, Patches};
use super::simd;
use crate::ops::window::Geometry;

/// What to apply to the output while it is hot: a residual tensor of the output's shape (a
/// ResNet block's skip connection), the per-output-channel bias, then ReLU.
#[derive(Clone, Copy, Default)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    pub residual: Option<&'a [f32]>,
    pub relu: bool,
}

pub struct ConvShape {
    pub batch: usize,
    pub in_ch: usize,
    pub out_ch: usize,
    pub groups: usize,
    pub geo: Geometry,
}

impl ConvShape {
    pub fn k(&self) -> usize {
        self.in_ch / self.groups * self.geo.kernel[0] * self.geo.kernel[1]
    }
}

/// Row `row` = (c, ky, kx) of the patch matrix: for each output position (oy, ox) the input tap
/// it reads, or zero where the tap falls in the padding.
pub fn im2col_row(x: &[f32], geo: &Geometry, row: usize, out: &mut [f32]) {
    let [h, w] = geo.in_hw;
    let [oh, ow] = geo.out_hw;
    let [kh, kw] = geo.kernel;
    let (c, ky, kx) = (row / (kh * kw), row / kw % kh, row % kw);
    let plane = &x[c * h * w..(c + 1) * h * w];
    for oy in 0..oh {
        let iy = (oy * geo.strides[0] + ky * geo.dilations[0]) as isize - geo.pads[0] as isize;
        let dst = &mut out[oy * ow..(oy + 1) * ow];
        if iy < 0 || iy >= h as isize {
            dst.fill(0.0);
            continue;
        }
        let src = &plane[iy as usize * w..(iy as usize + 1) * w];
        let x0 = (kx * geo.dilations[1]) as isize - geo.pads[1] as isize;
        gather_taps(src, x0, geo.strides[1], dst);
    }
}

/// `dst[t] = src[x0 + t·stride]`, zero where that index falls outside `src` (the padding).
pub fn gather_taps(src: &[f32], x0: isize, stride: usize, dst: &mut [f32]) {
    let taps = Taps::new(src.len(), x0, stride, dst.len());
    taps.copy(src, stride, dst);
}

/// Which of `n` taps `x0 + t·stride` fall inside a row of `w` values (t in `lo..hi`) and where
/// the first of them is: computed once, they leave a branch-free copy or strided gather.
#[derive(Clone, Copy, Debug)]
pub struct Taps {
    pub lo: usize,
    pub hi: usize,
    /// The input index of tap `lo`.
    pub first: usize,
}

impl Taps {
    pub fn new(w: usize, x0: isize, stride: usize, n: usize) -> Taps {
        let lo = if x0 >= 0 { 0 } else { (-x0 as usize).div_ceil(stride) }.min(n);
        let hi = if x0 >= w as isize { 0 } else { ((w as isize - 1 - x0) as usize / stride + 1).min(n) }.max(lo);
        Taps { lo, hi, first: if lo == hi { 0 } else { (x0 + (lo * stride) as isize) as usize } }
    }

    /// `dst[t] = src[first + (t − lo)·stride]` for t in lo..hi, zero elsewhere.
    #[inline]
    pub fn copy(self, src: &[f32], stride: usize, dst: &mut [f32]) {
        let Taps { lo, hi, first } = self;
        // Most runs have no tap in the padding: skip the (library) calls that would clear nothing.
        if lo > 0 {
            dst[..lo].fill(0.0);
        }
        if hi < dst.len() {
            dst[hi..].fill(0.0);
        }
        if lo == hi {
            return; // every tap falls in the padding
        }
        if stride == 1 {
            dst[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
        } else {
            for (d, s) in dst[lo..hi].iter_mut().zip(src[first..].iter().step_by(stride)) {
                *d = *s;
            }
        }
    }
}

/// Patch matrix of one group of one image: rows `(c, ky, kx)`, columns `(oy, ox)`.
pub fn im2col(x: &[f32], channels: usize, geo: &Geometry, cols: &mut [f32]) {
    let n = geo.out_hw[0] * geo.out_hw[1];
    let rows = channels * geo.kernel[0] * geo.kernel[1];
    cols[..rows * n].par_chunks_mut(n).enumerate().for_each(|(row, out)| im2col_row(x, geo, row, out));
}

/// The weights of each group packed for `gemm_packed` on `kern` (`[M/G] × [C/G·KH·KW]` each).
pub fn pack_weights(kern: &'static MicroKernel, weight: &[f32], s: &ConvShape) -> Vec<PackedA> {
    let (mg, k) = (s.out_ch / s.groups, s.k());
    (0..s.groups).map(|g| PackedA::pack(kern, MatRef::rows(&weight[g * mg * k..(g + 1) * mg * k], k), mg, k)).collect()
}

/// Forward convolution into `out` (`[N, M, OH, OW]`, fully overwritten), with the weights
/// packed by `pack_weights`. A pointwise convolution multiplies the input planes in place; any
/// other reads its patches straight into the GEMM's panels (implicit GEMM, no im2col buffer).
pub fn conv2d(x: &[f32], weights: &[PackedA], s: &ConvShape, ep: Epilogue, out: &mut [f32]) {
    let (cg, mg) = (s.in_ch / s.groups, s.out_ch / s.groups);
    let [h, w] = s.geo.in_hw;
    let n = s.geo.out_hw[0] * s.geo.out_hw[1];
    let k = s.k();
    for b in 0..s.batch {
        for (g, wg) in weights.iter().enumerate() {
            let xg = &x[(b * s.in_ch + g * cg) * h * w..(b * s.in_ch + (g + 1) * cg) * h * w];
            let og = &mut out[(b * s.out_ch + g * mg) * n..(b * s.out_ch + (g + 1) * mg) * n];
            let patches = Patches { x: xg, channels: cg, geo: s.geo };
            let bmat = if s.geo.is_pointwise() { BRef::Rows { data: xg, k, n } } else { BRef::Patches(&patches) };
            let epilogue = |row: usize, col0: usize, block: &mut [f32]| {
                if let Some(res) = ep.residual {
                    let at = (b * s.out_ch + g * mg + row) * n + col0;
                    simd::arith_inplace(simd::Arith::Add, block, &res[at..at + block.len()]);
                }
                let bias = ep.bias.map_or(0.0, |bv| bv[g * mg + row]);
                if ep.bias.is_some() || ep.relu {
                    simd::affine_inplace(block, 1.0, bias, ep.relu);
                }
            };
            gemm_packed(wg, bmat, og, n, false, &epilogue);
        }
    }
}

/// Adjoint of `im2col`: adds each patch-matrix entry back onto the input position it came from
/// (taps in the padding are dropped). Parallel over channels: each owns its plane.
pub fn col2im(cols: &[f32], channels: usize, geo: &Geometry, dx: &mut [f32]) {
    let [h, w] = geo.in_hw;
    let [oh, ow] = geo.out_hw;
    let [kh, kw] = geo.kernel;
    let n = oh * ow;
    dx[..channels * h * w].par_chunks_mut(h * w).enumerate().for_each(|(c, plane)| {
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &cols[((c * kh + ky) * kw + kx) * n..][..n];
                for oy in 0..oh {
                    let iy = (oy * geo.strides[0] + ky * geo.dilations[0]) as isize - geo.pads[0] as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * w..(iy as usize + 1) * w];
                    let x0 = (kx * geo.dilations[1]) as isize - geo.pads[1] as isize;
                    for ox in 0..ow {
                        let ix = x0 + (ox * geo.strides[1]) as isize;
                        if ix >= 0 && ix < w as isize {
                            dst[ix as usize] += row[oy * ow + ox];
                        }
                    }
                }
            }
        }
    });
}

/// Gradients of `conv2d` (without epilogue) given `dy` (`[N, M, OH, OW]`): `dx` (`[N, C, H, W]`)
/// when asked, `dw` (shape of the weight) when asked; both fully overwritten.
///   dW[g] = Σ_b dY[b,g] · im2col(x[b,g])ᵀ      dcols = W[g]ᵀ · dY[b,g],  dx = col2im(dcols)
pub fn conv2d_backward(
    x: &[f32],
    weight: &[f32],
    s: &ConvShape,
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
) {
    let (cg, mg) = (s.in_ch / s.groups, s.out_ch / s.groups);
    let [h, w] = s.geo.in_hw;
    let n = s.geo.out_hw[0] * s.geo.out_hw[1];
    let k = s.k();
    let pointwise = s.geo.is_pointwise();
    let mut cols = vec![0.0; if pointwise { 0 } else { k * n }];
    let mut dx = dx;
    if let Some(d) = dx.as_deref_mut() {
        d.fill(0.0);
    }
    let mut dw = dw;
    if let Some(d) = dw.as_deref_mut() {
        d.fill(0.0);
    }
    for b in 0..s.batch {
        for g in 0..s.groups {
            let xr = (b * s.in_ch + g * cg) * h * w..(b * s.in_ch + (g + 1) * cg) * h * w;
            let dyg = &dy[(b * s.out_ch + g * mg) * n..(b * s.out_ch + (g + 1) * mg) * n];
            let wg = &weight[g * mg * k..(g + 1) * mg * k];
            if let Some(dwa) = dw.as_deref_mut() {
                let bmat = if pointwise {
                    MatRef::transposed(&x[xr.clone()], n)
                } else {
                    im2col(&x[xr.clone()], cg, &s.geo, &mut cols);
                    MatRef::transposed(&cols, n)
                };
                gemm(mg, n, k, MatRef::rows(dyg, n), bmat, &mut dwa[g * mg * k..(g + 1) * mg * k], k, true);
            }
            if let Some(dxa) = dx.as_deref_mut() {
                let target = &mut dxa[xr];
                if pointwise {
                    gemm(k, mg, n, MatRef::transposed(wg, k), MatRef::rows(dyg, n), target, n, false);
                } else {
                    gemm(k, mg, n, MatRef::transposed(wg, k), MatRef::rows(dyg, n), &mut cols, n, false);
                    col2im(&cols, cg, &s.geo, target);
                }
            }
        }
    }
}

/// Direct convolution, f64 accumulation: the definition the GEMM path is tested against.
#[cfg(test)]
pub fn conv2d_reference(x: &[f32], weight: &[f32], s: &ConvShape, bias: Option<&[f32]>) -> Vec<f32> {
    let (cg, mg) = (s.in_ch / s.groups, s.out_ch / s.groups);
    let ([h, w], [oh, ow], [kh, kw], g) = (s.geo.in_hw, s.geo.out_hw, s.geo.kernel, &s.geo);
    let mut out = vec![0.0; s.batch * s.out_ch * oh * ow];
    for b in 0..s.batch {
        for m in 0..s.out_ch {
            let grp = m / mg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.map_or(0.0, |bv| bv[m] as f64);
                    for c in 0..cg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * g.strides[0] + ky * g.dilations[0]) as isize - g.pads[0] as isize;
                                let ix = (ox * g.strides[1] + kx * g.dilations[1]) as isize - g.pads[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xi = ((b * s.in_ch + grp * cg + c) * h + iy as usize) * w + ix as usize;
                                let wi = ((m * cg + c) * kh + ky) * kw + kx;
                                acc += x[xi] as f64 * weight[wi] as f64;
                            }
                        }
                    }
                    out[((b * s.out_ch + m) * oh + oy) * ow + ox] = acc as f32;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(in_hw: [usize; 2], k: [usize; 2], st: [usize; 2], dil: [usize; 2], pads: [usize; 4]) -> Geometry {
        let out = |d: usize| (in_hw[d] + pads[d] + pads[d + 2] - dil[d] * (k[d] - 1) - 1) / st[d] + 1;
        Geometry { in_hw, out_hw: [out(0), out(1)], kernel: k, strides: st, dilations: dil, pads }
    }

    #[test]
    fn gemm_convolution_matches_direct_definition() {
        let cases = [
            (2, 4, 6, 1, geometry([9, 7], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1])),
            (1, 4, 6, 2, geometry([9, 8], [3, 2], [2, 1], [2, 1], [0, 2, 1, 0])),
            (2, 6, 6, 6, geometry([5, 5], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1])),
            (3, 5, 4, 1, geometry([6, 6], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0])),
            (1, 3, 8, 1, geometry([20, 18], [7, 7], [2, 2], [1, 1], [3, 3, 3, 3])),
        ];
        for (batch, in_ch, out_ch, groups, geo) in cases {
            let s = ConvShape { batch, in_ch, out_ch, groups, geo };
            let x: Vec<f32> =
                (0..batch * in_ch * geo.in_hw[0] * geo.in_hw[1]).map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0).collect();
            let wlen = out_ch * in_ch / groups * geo.kernel[0] * geo.kernel[1];
            let w: Vec<f32> = (0..wlen).map(|i| ((i * 7) % 13) as f32 / 6.0 - 1.0).collect();
            let bias: Vec<f32> = (0..out_ch).map(|i| i as f32 * 0.25 - 0.5).collect();
            let want: Vec<f32> = conv2d_reference(&x, &w, &s, Some(&bias)).into_iter().map(|v| v.max(0.0)).collect();
            crate::kernels::micro::for_each_kernel(|kern| {
                let mut out = vec![f32::NAN; batch * out_ch * geo.out_hw[0] * geo.out_hw[1]];
                let ep = Epilogue { bias: Some(&bias), residual: None, relu: true };
                conv2d(&x, &pack_weights(kern, &w, &s), &s, ep, &mut out);
                // Values are multiples of 1/48 with |sum| < 2^10: f32 sums are exact up to order,
                // so 1e-4 bounds rounding from the different summation order only.
                for (a, b) in out.iter().zip(&want) {
                    assert!((a - b).abs() <= 1e-4, "{}: {a} vs {b}", kern.name);
                }
            });
        }
    }
}
