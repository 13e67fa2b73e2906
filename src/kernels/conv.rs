//! 2-D convolution as GEMM: `out[b, g] = W[g] · patches(x[b, g])`.
//!
//! Shapes: x `[N, C, H, W]`, W `[M, C/G, KH, KW]`, out `[N, M, OH, OW]`. The patch matrix is
//! `(C/G·KH·KW) × (OH·OW)` (im2col's layout), never materialised in the forward pass: a pointwise
//! convolution multiplies the input planes, a stride-1 one reads its padded planes at fixed
//! offsets (`BRef::Shifted`), any other builds each panel slice from its taps (`BRef::Patches`);
//! a strided 1×1 one is the pointwise convolution of the subsampled input. dx of a stride-1
//! convolution is itself a forward convolution (`ConvShape::dx_convolution`); dW, and dx of
//! strided windows, go through a materialised im2col and matrixmultiply.

use rayon::prelude::*;

use super::gemm::{gemm, MatRef};
use super::micro::MicroKernel;
use super::packed::{gemm_packed, BRef, Images, PackedA, Patches, Shifted};
use super::simd;
use super::SyncPtr;
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

/// Patch matrix of one group of `images` side by side: rows `(c, ky, kx)`, columns `(b, oy, ox)`
/// (`x` starts at the first image's group, `images.stride` floats between images).
pub fn im2col(x: &[f32], channels: usize, geo: &Geometry, images: Images, cols: &mut [f32]) {
    let n = geo.out_hw[0] * geo.out_hw[1];
    let plane = geo.in_hw[0] * geo.in_hw[1];
    let (rows, ld) = (channels * geo.kernel[0] * geo.kernel[1], images.count * n);
    cols[..rows * ld].par_chunks_mut(ld).enumerate().for_each(|(row, out)| {
        for (b, dst) in out.chunks_mut(n).enumerate() {
            im2col_row(&x[b * images.stride..][..channels * plane], geo, row, dst);
        }
    });
}

/// The weights of each group packed for `gemm_packed` on `kern` (`[M/G] × [C/G·KH·KW]` each).
pub fn pack_weights(kern: &'static MicroKernel, weight: &[f32], s: &ConvShape) -> Vec<PackedA> {
    let (mg, k) = (s.out_ch / s.groups, s.k());
    (0..s.groups).map(|g| PackedA::pack(kern, MatRef::rows(&weight[g * mg * k..(g + 1) * mg * k], k), mg, k)).collect()
}

/// Images multiplied by one GEMM, for outputs of `n` positions each: one where its columns fill
/// the tiles, enough for about 512 columns where they do not (the 7×7 and 4×4 outputs of the last
/// stages leave most of a 32-wide tile and most threads idle otherwise).
fn images_per_gemm(n: usize, batch: usize) -> usize {
    const COLUMNS: usize = 512;
    COLUMNS.div_ceil(n.max(1)).clamp(1, batch.max(1))
}

/// A stride-1 window's input planes padded once, for `BRef::Shifted`: each image's group of
/// planes `[C/G, Hp, Wp]`, `stride` floats apart, then slack for the last rows' overrun.
struct Padded {
    data: Vec<f32>,
    /// Where row (c, ky, kx) of the patch matrix starts in an image's padded planes.
    offsets: Vec<usize>,
    /// The padded row length: output positions run along it, `Wp − OW` of them dropped.
    wp: usize,
    /// Floats per padded plane (`Hp·Wp`) and per image (`C/G` planes).
    plane: usize,
    stride: usize,
}

impl Padded {
    fn new(channels: usize, geo: &Geometry, images: usize) -> Padded {
        let ([h, w], [kh, kw], [dy, dx]) = (geo.in_hw, geo.kernel, geo.dilations);
        let (hp, wp) = (h + geo.pads[0] + geo.pads[2], w + geo.pads[1] + geo.pads[3]);
        let offsets =
            (0..channels * kh * kw).map(|r| r / (kh * kw) * hp * wp + r / kw % kh * dy * wp + r % kw * dx).collect();
        let (plane, stride) = (hp * wp, channels * hp * wp);
        Padded { data: vec![0.0; images * stride + dx * (kw - 1)], offsets, wp, plane, stride }
    }

    /// Copies the planes of `images` (of `x`, `x_stride` floats apart) inside the padding.
    fn fill(&mut self, x: &[f32], x_stride: usize, images: usize, geo: &Geometry) {
        let [h, w] = geo.in_hw;
        let (wp, top, left) = (self.wp, geo.pads[0], geo.pads[1]);
        let planes = self.stride / self.plane.max(1);
        if h * w == 0 || planes == 0 {
            return; // nothing inside the padding
        }
        self.data[..images * self.stride].par_chunks_mut(self.plane).enumerate().for_each(|(i, plane)| {
            let src = &x[i / planes * x_stride + i % planes * h * w..][..h * w];
            for (y, row) in src.chunks(w).enumerate() {
                plane[(top + y) * wp + left..][..w].copy_from_slice(row);
            }
        });
    }
}

/// Forward convolution into `out` (`[N, M, OH, OW]`, fully overwritten), with the weights
/// packed by `pack_weights`. A pointwise convolution multiplies the input planes in place, a
/// stride-1 one its padded planes (`BRef::Shifted`); any other reads its patches straight into
/// the GEMM's panels (implicit GEMM, no im2col buffer); a strided 1×1 one multiplies its input's
/// strided positions, gathered first. Small outputs are multiplied several images at a time;
/// those and the shifted ones go through a wide C whose GEMM epilogue copies each finished block
/// to the output planes while it is hot.
pub fn conv2d(x: &[f32], weights: &[PackedA], s: &ConvShape, ep: Epilogue, out: &mut [f32]) {
    if let Some(pointwise) = s.subsampled() {
        return conv2d(&subsample(x, s), weights, &pointwise, ep, out);
    }
    let (cg, mg) = (s.in_ch / s.groups, s.out_ch / s.groups);
    let hw = s.geo.in_hw[0] * s.geo.in_hw[1];
    let ([oh, ow], n, k) = (s.geo.out_hw, s.geo.out_hw[0] * s.geo.out_hw[1], s.k());
    let pointwise = s.geo.is_pointwise();
    let shifted = s.geo.strides == [1, 1] && !pointwise;
    let chunk = images_per_gemm(n, s.batch);
    let mut padded = shifted.then(|| Padded::new(cg, &s.geo, chunk));
    // GEMM columns per image, along rows of `pitch` of which the first `ow` are outputs.
    let pitch = padded.as_ref().map_or(ow, |p| p.wp);
    let per_image = oh * pitch;
    let mut wide = vec![0.0; if chunk > 1 || shifted { mg * chunk * per_image } else { 0 }];
    // Residual, bias and ReLU on output channel `ch` of image b, from column col0 (`block`).
    let finish = |b: usize, ch: usize, col0: usize, block: &mut [f32]| {
        if let Some(res) = ep.residual {
            let at = (b * s.out_ch + ch) * n + col0;
            simd::arith_inplace(simd::Arith::Add, block, &res[at..at + block.len()]);
        }
        let bias = ep.bias.map_or(0.0, |bv| bv[ch]);
        if ep.bias.is_some() || ep.relu {
            simd::affine_inplace(block, 1.0, bias, ep.relu);
        }
    };
    for b0 in (0..s.batch).step_by(chunk) {
        let images = Images { count: chunk.min(s.batch - b0), stride: s.in_ch * hw };
        let outs = &mut out[b0 * s.out_ch * n..(b0 + images.count) * s.out_ch * n];
        for (g, wg) in weights.iter().enumerate() {
            let from = (b0 * s.in_ch + g * cg) * hw;
            let xg = &x[from..from + (images.count - 1) * images.stride + cg * hw];
            let patches = Patches { x: xg, channels: cg, geo: s.geo, images };
            let bmat = match padded.as_mut() {
                Some(p) => {
                    p.fill(xg, images.stride, images.count, &s.geo);
                    let images = Images { count: images.count, stride: p.stride };
                    BRef::Shifted(Shifted { data: &p.data, offsets: &p.offsets, n: per_image, images })
                }
                None if pointwise => BRef::Rows { data: xg, k, n, images },
                None => BRef::Patches(&patches),
            };
            if images.count == 1 && !shifted {
                let og = &mut outs[g * mg * n..(g + 1) * mg * n];
                gemm_packed(wg, bmat, og, n, false, &|row, col0, block| finish(b0, g * mg + row, col0, block));
                continue;
            }
            let ld = images.count * per_image;
            let (optr, outs_len) = (SyncPtr(outs.as_mut_ptr()), outs.len());
            // Each finished row block of the wide C goes to its images' planes while it is hot:
            // the runs of a padded row that are outputs, finished there.
            let scatter = |row: usize, col0: usize, block: &mut [f32]| {
                let ch = g * mg + row;
                let mut j = col0;
                while j < col0 + block.len() {
                    let (i, p) = (j / per_image, j % per_image);
                    let (oy, ox) = (p / pitch, p % pitch);
                    let run = (col0 + block.len() - j).min(pitch - ox);
                    let valid = ow.saturating_sub(ox).min(run);
                    if valid > 0 {
                        let at = (i * s.out_ch + ch) * n + oy * ow + ox;
                        debug_assert!(at + valid <= outs_len, "scatter past the chunk's outputs");
                        // SAFETY: `at..at + valid` lies in output row (image i, channel ch) of
                        // `outs`; no other column of C maps there, so no other task writes it.
                        let dst = unsafe { std::slice::from_raw_parts_mut(optr.get().add(at), valid) };
                        dst.copy_from_slice(&block[j - col0..][..valid]);
                        finish(b0 + i, ch, oy * ow + ox, dst);
                    }
                    j += run;
                }
            };
            gemm_packed(wg, bmat, &mut wide[..mg * ld], ld, false, &scatter);
        }
    }
}

/// Adjoint of `im2col` for one image: adds each patch-matrix entry (row r at `cols[r·ld..]`)
/// back onto the input position it came from (taps in the padding are dropped). Parallel over
/// channels: each owns its plane.
pub fn col2im(cols: &[f32], ld: usize, channels: usize, geo: &Geometry, dx: &mut [f32]) {
    let [h, w] = geo.in_hw;
    let [oh, ow] = geo.out_hw;
    let [kh, kw] = geo.kernel;
    let n = oh * ow;
    dx[..channels * h * w].par_chunks_mut(h * w).enumerate().for_each(|(c, plane)| {
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &cols[((c * kh + ky) * kw + kx) * ld..][..n];
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

impl ConvShape {
    /// For an unpadded 1×1 window with strides: the pointwise convolution of the input's
    /// strided positions (`subsample`), where a patch gather would read every tap with a stride.
    pub fn subsampled(&self) -> Option<ConvShape> {
        let g = &self.geo;
        if g.kernel != [1, 1] || g.pads != [0; 4] || g.strides == [1, 1] {
            return None;
        }
        let geo = Geometry {
            in_hw: g.out_hw,
            out_hw: g.out_hw,
            kernel: [1, 1],
            strides: [1, 1],
            dilations: [1, 1],
            pads: [0; 4],
        };
        Some(ConvShape { geo, ..*self })
    }

    /// For a stride-1 window: the convolution that computes dx from dy, a plain forward
    /// convolution of dy with the flipped, transposed weights (`pack_flipped_weights`) and the padding
    /// mirrored, so that its output is x's size. None where padding exceeds the window's span.
    pub fn dx_convolution(&self) -> Option<ConvShape> {
        let g = &self.geo;
        let reach = [g.dilations[0] * (g.kernel[0] - 1), g.dilations[1] * (g.kernel[1] - 1)];
        if g.strides != [1, 1] || (0..4).any(|i| g.pads[i] > reach[i % 2]) {
            return None;
        }
        let pads = [reach[0] - g.pads[0], reach[1] - g.pads[1], reach[0] - g.pads[2], reach[1] - g.pads[3]];
        let geo = Geometry { in_hw: g.out_hw, out_hw: g.in_hw, pads, ..*g };
        Some(ConvShape { batch: self.batch, in_ch: self.out_ch, out_ch: self.in_ch, groups: self.groups, geo })
    }
}

/// The input positions an unpadded 1×1 window with strides reads (`ConvShape::subsampled`).
fn subsample(x: &[f32], s: &ConvShape) -> Vec<f32> {
    let ([h, w], [oh, ow], [sy, sx]) = (s.geo.in_hw, s.geo.out_hw, s.geo.strides);
    let mut out = vec![0.0; s.batch * s.in_ch * oh * ow];
    out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).for_each(|(dst, plane)| {
        for (oy, row) in dst.chunks_mut(ow).enumerate() {
            gather_taps(&plane[oy * sy * w..(oy * sy + 1) * w], 0, sx, row);
        }
    });
    out
}

/// The adjoint of `subsample`: `dx` is `ds` at the strided positions, zero elsewhere.
fn unsubsample(ds: &[f32], s: &ConvShape, dx: &mut [f32]) {
    let ([h, w], [oh, ow], [sy, sx]) = (s.geo.in_hw, s.geo.out_hw, s.geo.strides);
    dx.par_chunks_mut(h * w).zip(ds.par_chunks(oh * ow)).for_each(|(plane, src)| {
        plane.fill(0.0);
        for (oy, row) in src.chunks(ow).enumerate() {
            for (ox, &v) in row.iter().enumerate() {
                plane[oy * sy * w + ox * sx] = v;
            }
        }
    });
}

/// The weights of `dx_convolution`, `W'[g·C/G + c][m][ky][kx] = W[g·M/G + m][c][KH−1−ky][KW−1−kx]`,
/// packed for `conv2d` on `kern`: each group a `[C/G] × [M/G·KH·KW]` matrix read straight from W.
pub fn pack_flipped_weights(kern: &'static MicroKernel, weight: &[f32], s: &ConvShape) -> Vec<PackedA> {
    let (cg, mg) = (s.in_ch / s.groups, s.out_ch / s.groups);
    let taps = s.geo.kernel[0] * s.geo.kernel[1];
    // Column (m, tap) of W' is W at m·C/G·taps + (taps − 1 − tap) past its channel's taps.
    let column: Vec<usize> = (0..mg * taps).map(|kk| kk / taps * cg * taps + taps - 1 - kk % taps).collect();
    (0..s.groups)
        .map(|g| {
            let wg = &weight[g * mg * cg * taps..(g + 1) * mg * cg * taps];
            PackedA::from_fn(kern, cg, mg * taps, |c, kk| wg[c * taps + column[kk]])
        })
        .collect()
}

/// Gradients of `conv2d` (without epilogue) given `dy` (`[N, M, OH, OW]`): `dx` (`[N, C, H, W]`)
/// when asked, `dw` (shape of the weight) when asked; both fully overwritten. Images go
/// through the GEMMs several at a time where their outputs are small (as in `conv2d`).
///   dW[g] = Σ_b dY[b,g] · im2col(x[b,g])ᵀ  (the sum over b is the GEMM's inner dimension)
///   dx = conv2d(dy, flipped W) for stride 1 with pads within the window's reach
///   (`ConvShape::dx_convolution`), on the packed kernels; otherwise dcols = W[g]ᵀ · dY[b,g],
///   dx = col2im(dcols). A strided 1×1 window is the pointwise one of the subsampled input.
pub fn conv2d_backward(
    kern: &'static MicroKernel,
    x: &[f32],
    weight: &[f32],
    s: &ConvShape,
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
) {
    if let Some(pointwise) = s.subsampled() {
        let xs = subsample(x, s);
        let mut dxs = dx.is_some().then(|| vec![0.0; xs.len()]);
        conv2d_backward(kern, &xs, weight, &pointwise, dy, dxs.as_deref_mut(), dw);
        if let (Some(d), Some(ds)) = (dx, dxs) {
            unsubsample(&ds, s, d);
        }
        return;
    }
    let mut dx = match (dx, s.dx_convolution()) {
        (Some(d), Some(t)) => {
            conv2d(dy, &pack_flipped_weights(kern, weight, s), &t, Epilogue::default(), d);
            None
        }
        (d, _) => d,
    };
    let mut dw = dw;
    if dx.is_none() && dw.is_none() {
        return;
    }
    let (cg, mg) = (s.in_ch / s.groups, s.out_ch / s.groups);
    let hw = s.geo.in_hw[0] * s.geo.in_hw[1];
    let n = s.geo.out_hw[0] * s.geo.out_hw[1];
    let k = s.k();
    // The chunk's patch matrix is materialised: images are grouped only while it stays within
    // ~4 MiB (the last layers' backward runs at the step's peak memory); one image's may be more.
    const COLS_MAX: usize = 1 << 20;
    let chunk = images_per_gemm(n, s.batch).min((COLS_MAX / (k * n).max(1)).max(1));
    // The patch matrix (or dx's dcols), unless only a pointwise dW of single images is left.
    let mut cols = vec![0.0; if dx.is_some() || !(s.geo.is_pointwise() && chunk == 1) { k * chunk * n } else { 0 }];
    let mut dys = vec![0.0; if chunk > 1 { mg * chunk * n } else { 0 }];
    if let Some(d) = dx.as_deref_mut() {
        d.fill(0.0);
    }
    if let Some(d) = dw.as_deref_mut() {
        d.fill(0.0);
    }
    for b0 in (0..s.batch).step_by(chunk) {
        let images = Images { count: chunk.min(s.batch - b0), stride: s.in_ch * hw };
        let ld = images.count * n;
        for g in 0..s.groups {
            // dY of this group for the chunk's images, [M/G, images·n].
            let dyg = if images.count == 1 {
                &dy[(b0 * s.out_ch + g * mg) * n..][..mg * n]
            } else {
                dys[..mg * ld].par_chunks_mut(ld).enumerate().for_each(|(row, dst)| {
                    for (i, d) in dst.chunks_mut(n).enumerate() {
                        d.copy_from_slice(&dy[((b0 + i) * s.out_ch + g * mg + row) * n..][..n]);
                    }
                });
                &dys[..mg * ld]
            };
            let from = (b0 * s.in_ch + g * cg) * hw;
            let xg = &x[from..from + (images.count - 1) * images.stride + cg * hw];
            if let Some(dwa) = dw.as_deref_mut() {
                let colsm = if s.geo.is_pointwise() && images.count == 1 {
                    xg
                } else {
                    im2col(xg, cg, &s.geo, images, &mut cols);
                    &cols[..]
                };
                let dwg = &mut dwa[g * mg * k..(g + 1) * mg * k];
                gemm(mg, ld, k, MatRef::rows(dyg, ld), MatRef::transposed(colsm, ld), dwg, k, true);
            }
            if let Some(dxa) = dx.as_deref_mut() {
                let wg = &weight[g * mg * k..(g + 1) * mg * k];
                gemm(k, mg, ld, MatRef::transposed(wg, k), MatRef::rows(dyg, ld), &mut cols, ld, false);
                let dxs = &mut dxa[b0 * s.in_ch * hw..(b0 + images.count) * s.in_ch * hw];
                dxs.par_chunks_mut(s.in_ch * hw).enumerate().for_each(|(i, image)| {
                    col2im(&cols[i * n..], ld, cg, &s.geo, &mut image[g * cg * hw..(g + 1) * cg * hw])
                });
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

/// The gradients of `conv2d_reference` by its definition, f64 accumulation: (dx, dw).
#[cfg(test)]
pub fn conv2d_backward_reference(x: &[f32], weight: &[f32], s: &ConvShape, dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (cg, mg) = (s.in_ch / s.groups, s.out_ch / s.groups);
    let ([h, w], [oh, ow], [kh, kw], g) = (s.geo.in_hw, s.geo.out_hw, s.geo.kernel, &s.geo);
    let (mut dx, mut dw) = (vec![0.0f64; x.len()], vec![0.0f64; weight.len()]);
    for b in 0..s.batch {
        for m in 0..s.out_ch {
            for oy in 0..oh {
                for ox in 0..ow {
                    let d = dy[((b * s.out_ch + m) * oh + oy) * ow + ox] as f64;
                    for c in 0..cg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * g.strides[0] + ky * g.dilations[0]) as isize - g.pads[0] as isize;
                                let ix = (ox * g.strides[1] + kx * g.dilations[1]) as isize - g.pads[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xi = ((b * s.in_ch + m / mg * cg + c) * h + iy as usize) * w + ix as usize;
                                let wi = ((m * cg + c) * kh + ky) * kw + kx;
                                dx[xi] += d * weight[wi] as f64;
                                dw[wi] += d * x[xi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    (dx.into_iter().map(|v| v as f32).collect(), dw.into_iter().map(|v| v as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(in_hw: [usize; 2], k: [usize; 2], st: [usize; 2], dil: [usize; 2], pads: [usize; 4]) -> Geometry {
        let out = |d: usize| (in_hw[d] + pads[d] + pads[d + 2] - dil[d] * (k[d] - 1) - 1) / st[d] + 1;
        Geometry { in_hw, out_hw: [out(0), out(1)], kernel: k, strides: st, dilations: dil, pads }
    }

    /// The case's shape, an input and weights: multiples of 1/8 and 1/6 in [-1, 1).
    fn operands(case: (usize, usize, usize, usize, Geometry)) -> (ConvShape, Vec<f32>, Vec<f32>) {
        let (batch, in_ch, out_ch, groups, geo) = case;
        let s = ConvShape { batch, in_ch, out_ch, groups, geo };
        let x = (0..batch * in_ch * geo.in_hw[0] * geo.in_hw[1]).map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0).collect();
        let wlen = out_ch * in_ch / groups * geo.kernel[0] * geo.kernel[1];
        (s, x, (0..wlen).map(|i| ((i * 7) % 13) as f32 / 6.0 - 1.0).collect())
    }

    #[test]
    fn gemm_convolution_matches_direct_definition() {
        let cases = [
            (2, 4, 6, 1, geometry([9, 7], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1])),
            (1, 4, 6, 2, geometry([9, 8], [3, 2], [2, 1], [2, 1], [0, 2, 1, 0])),
            (2, 4, 6, 2, geometry([9, 8], [3, 2], [1, 1], [2, 2], [0, 2, 1, 0])),
            (2, 4, 6, 2, geometry([7, 8], [1, 1], [2, 3], [1, 1], [0, 0, 0, 0])),
            (2, 6, 6, 6, geometry([5, 5], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1])),
            (3, 5, 4, 1, geometry([6, 6], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0])),
            (1, 3, 8, 1, geometry([20, 18], [7, 7], [2, 2], [1, 1], [3, 3, 3, 3])),
        ];
        for case in cases {
            let (s, x, w) = operands(case);
            let (out_ch, geo) = (s.out_ch, s.geo);
            let bias: Vec<f32> = (0..out_ch).map(|i| i as f32 * 0.25 - 0.5).collect();
            let want: Vec<f32> = conv2d_reference(&x, &w, &s, Some(&bias)).into_iter().map(|v| v.max(0.0)).collect();
            crate::kernels::micro::for_each_kernel(|kern| {
                let mut out = vec![f32::NAN; s.batch * out_ch * geo.out_hw[0] * geo.out_hw[1]];
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

    #[test]
    fn threaded_blocks_residuals_and_partial_chunks_match_the_definition() {
        // Above the GEMM's one-task threshold (2^18 multiply-adds) on 4 threads: the wide C's
        // epilogue gets blocks that start mid-row, in the dropped columns and across images. Shifted
        // 4×4 outputs in chunks of 32 images and a partial 8; 20×20 in chunks of 2 and a partial
        // 1; a 1×1 window padded beyond its reach (shifted, not pointwise). Residual, bias, ReLU.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        let cases = [
            (40, 16, 16, 1, geometry([4, 4], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1])),
            (3, 16, 24, 1, geometry([20, 20], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1])),
            (5, 24, 16, 1, geometry([9, 9], [1, 1], [1, 1], [1, 1], [1, 1, 1, 1])),
        ];
        for case in cases {
            let (s, x, w) = operands(case);
            let len = s.batch * s.out_ch * s.geo.out_hw[0] * s.geo.out_hw[1];
            let residual: Vec<f32> = (0..len).map(|i| ((i * 5) % 7) as f32 / 4.0 - 0.75).collect();
            let bias: Vec<f32> = (0..s.out_ch).map(|i| i as f32 * 0.125 - 1.0).collect();
            let conv = conv2d_reference(&x, &w, &s, Some(&bias));
            let want: Vec<f32> = conv.iter().zip(&residual).map(|(c, r)| (c + r).max(0.0)).collect();
            crate::kernels::micro::for_each_kernel(|kern| {
                let mut out = vec![f32::NAN; len];
                let ep = Epilogue { bias: Some(&bias), residual: Some(&residual), relu: true };
                pool.install(|| conv2d(&x, &pack_weights(kern, &w, &s), &s, ep, &mut out));
                // As above: operands on a 1/48 grid, sums below 2^10; 1e-4 bounds the order.
                for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                    assert!((a - b).abs() <= 1e-4, "{} out[{i}] {a} vs {b} for {:?}", kern.name, s.geo);
                }
            });
        }
    }

    #[test]
    fn backward_matches_the_definition() {
        // Stride 1 (dx as the flipped convolution, shifted panels), with dilation, asymmetric
        // and over-wide padding (no flipped form), strided and grouped windows (dx by col2im),
        // pointwise, strided 1×1 (pointwise on the subsampled input); batches of small outputs
        // go through the GEMMs several images at a time (the 5th to 7th: chunks of 43, 35 and
        // 32 images, then a partial one).
        let cases = [
            (3, 4, 6, 1, geometry([6, 5], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1])),
            (2, 4, 4, 2, geometry([7, 9], [3, 2], [1, 1], [2, 2], [2, 0, 1, 1])),
            (2, 3, 5, 1, geometry([5, 5], [2, 2], [1, 1], [1, 1], [2, 2, 2, 2])),
            (3, 6, 6, 3, geometry([7, 6], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1])),
            (50, 5, 4, 1, geometry([4, 3], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0])),
            (40, 4, 8, 1, geometry([6, 6], [3, 3], [2, 1], [1, 1], [0, 1, 1, 0])),
            (40, 2, 3, 1, geometry([4, 4], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1])),
            (3, 4, 6, 2, geometry([7, 8], [1, 1], [2, 3], [1, 1], [0, 0, 0, 0])),
            (1, 3, 8, 1, geometry([24, 22], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1])),
        ];
        for case in cases {
            let (s, x, w) = operands(case);
            let geo = s.geo;
            let dy: Vec<f32> = (0..s.batch * s.out_ch * geo.out_hw[0] * geo.out_hw[1])
                .map(|i| ((i * 11) % 9) as f32 / 4.0 - 1.0)
                .collect();
            let (want_dx, want_dw) = conv2d_backward_reference(&x, &w, &s, &dy);
            crate::kernels::micro::for_each_kernel(|kern| {
                let (mut dx, mut dw) = (vec![f32::NAN; x.len()], vec![f32::NAN; w.len()]);
                conv2d_backward(kern, &x, &w, &s, &dy, Some(&mut dx), Some(&mut dw));
                // Operands are multiples of 1/48 and 1/24 with sums below 2^12: the f32 sums are
                // exact up to order; 1e-3 bounds the rounding of the different summation order.
                for (what, got, want) in [("dx", &dx, &want_dx), ("dw", &dw, &want_dw)] {
                    for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
                        assert!((a - b).abs() <= 1e-3, "{} {what}[{i}] {a} vs {b} for {geo:?}", kern.name);
                    }
                }
            });
        }
    }
}
