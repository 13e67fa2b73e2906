//! Our own packed SGEMM for the convolutions: `C[m×n] (+)= A[m×k] · B[k×n]` with both operands
//! in panel layouts, so that weights are packed once (not per call, per image and per block as a
//! general GEMM must) and im2col writes straight into B's layout.
//!
//! Layouts (zero-padded to whole panels), for the micro-kernel's tile `MR × NR` (`micro`):
//!   `PackedA`: panels of `MR` rows; panel p holds, for each kk in 0..k, `A[p·MR + r][kk]` for
//!   r in 0..MR (k-major), i.e. element (r, kk) at `p·k·MR + kk·MR + r`.
//!   `PackedB`: panels of `NR` columns; element (kk, j) of panel q at `q·k·NR + kk·NR + j`.
//! The micro-kernel keeps an MR×NR tile of C in registers and streams a `KC`-deep slice of one A
//! panel and one B panel through it; K is blocked by `KC` so the B panel slice stays in L1 while
//! every A panel passes over it. Each packed operand records its kernel: a GEMM multiplies
//! operands packed for the same one.

use rayon::prelude::*;

use super::conv::Taps;
use super::gemm::MatRef;
use super::micro::{MicroKernel, Tile};
use super::SyncPtr;
use crate::ops::window::Geometry;

/// A packed in MR-row panels.
#[derive(Clone, Debug)]
pub struct PackedA {
    pub m: usize,
    pub k: usize,
    kern: &'static MicroKernel,
    data: Vec<f32>,
}

impl PackedA {
    /// A packed in the panels of `kern`.
    pub fn pack(kern: &'static MicroKernel, a: MatRef, m: usize, k: usize) -> PackedA {
        PackedA::from_fn(kern, m, k, |row, kk| a.data[row * a.rs + kk * a.cs])
    }

    /// The `m × k` matrix whose element (row, kk) is `at(row, kk)`, packed in the panels of
    /// `kern`. Each panel is written in order, k-major: the panel's rows at one kk are read
    /// together (contiguous when A is a column-major or a reordered weight tensor).
    pub fn from_fn(kern: &'static MicroKernel, m: usize, k: usize, at: impl Fn(usize, usize) -> f32 + Sync) -> PackedA {
        let mr = kern.mr;
        let panels = m.div_ceil(mr);
        let mut data = vec![0.0; panels * k * mr];
        data.par_chunks_mut((k * mr).max(1)).enumerate().for_each(|(p, panel)| {
            let rows = mr.min(m - p * mr);
            for (kk, column) in panel.chunks_exact_mut(mr).enumerate() {
                for (r, v) in column[..rows].iter_mut().enumerate() {
                    *v = at(p * mr + r, kk);
                }
            }
        });
        PackedA { m, k, kern, data }
    }

    /// The micro-kernel these panels are laid out for.
    pub fn kernel(&self) -> &'static MicroKernel {
        self.kern
    }
}

/// B packed in NR-column panels.
#[derive(Clone, Debug)]
pub struct PackedB {
    pub k: usize,
    pub n: usize,
    kern: &'static MicroKernel,
    data: Vec<f32>,
}

impl PackedB {
    /// A row-major `k × n` matrix packed in the panels of `kern`.
    pub fn pack(kern: &'static MicroKernel, data: &[f32], k: usize, n: usize) -> PackedB {
        BRef::Rows { data, k, n, images: Images::ONE }.packed(kern)
    }
}

/// Images side by side along B's columns: column `b·n + j` is column j of image b, whose data
/// starts `stride` floats after image b−1's. A convolution over a small output (7×7, 4×4)
/// multiplies several images at once: one image's columns would fill a tile only in part and
/// give the threads too few of them.
#[derive(Clone, Copy, Debug)]
pub struct Images {
    pub count: usize,
    pub stride: usize,
}

impl Images {
    pub const ONE: Images = Images { count: 1, stride: 0 };

    /// The column pieces of `start..end` that lie in one image (`n` columns each), as (offset of
    /// the image's data, column in the image, offset in the panel, length).
    fn pieces(self, n: usize, start: usize, end: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
        let mut pos = start;
        std::iter::from_fn(move || {
            (pos < end).then(|| {
                let (b, j) = (pos / n, pos % n);
                let len = (end - pos).min(n - j);
                let piece = (b * self.stride, j, pos - start, len);
                pos += len;
                piece
            })
        })
    }
}

/// The right operand: packed panels, or a matrix whose panel slices are copied into an L1-sized
/// buffer right before the micro-kernels use them.
#[derive(Clone, Copy)]
pub enum BRef<'a> {
    Packed(&'a PackedB),
    /// A row-major `k × n` matrix (a pointwise convolution's input planes), or `images` of them
    /// side by side. Read in place, its rows `n` floats apart would map a panel slice onto a few
    /// L1 sets (12.5 KB apart at 56×56) and evict it before the next A panel; a copy stays.
    Rows {
        data: &'a [f32],
        k: usize,
        n: usize,
        images: Images,
    },
    /// The im2col patch matrix of a convolution, never materialised: each KC×NR panel slice is
    /// built in an L1-sized buffer right before the micro-kernels use it (implicit GEMM).
    Patches(&'a Patches<'a>),
    /// The patch matrix of a stride-1 window over input planes padded once (`Shifted`). A panel
    /// slice is one fixed-size copy per row, where `Patches` works out taps and padding per run.
    Shifted(Shifted<'a>),
}

/// A patch matrix whose row (c, ky, kx) is `data` read on from `offsets[row]` in each image:
/// a stride-1 window over planes padded once, columns along padded rows (`n` per image; those
/// past an output row's end are computed and dropped).
#[derive(Clone, Copy)]
pub struct Shifted<'a> {
    pub data: &'a [f32],
    pub offsets: &'a [usize],
    pub n: usize,
    pub images: Images,
}

/// The patch matrix of `channels` input planes under a window: row (c, ky, kx), column (oy, ox);
/// or that of several `images` side by side, columns (b, oy, ox).
pub struct Patches<'a> {
    pub x: &'a [f32],
    pub channels: usize,
    pub geo: Geometry,
    pub images: Images,
}

impl Patches<'_> {
    fn dims(&self) -> (usize, usize) {
        let g = &self.geo;
        (self.channels * g.kernel[0] * g.kernel[1], self.images.count * g.out_hw[0] * g.out_hw[1])
    }

    /// Rows `k0..k0+kc` of the columns of panel q (`nr` wide) into `buf` (kc rows of nr, zero
    /// beyond n). The panel's output positions fall in a few runs along output rows; where each
    /// run's taps start for each kernel column, and which fall in the padding, is worked out once
    /// per call, and the rows (c, ky, kx) are counted up: no division per row, where a division
    /// per row and tap used to cost more than the micro-kernels' work on a 64-channel layer.
    fn fill(&self, nr: usize, q: usize, k0: usize, kc: usize, buf: &mut [f32]) {
        let g = &self.geo;
        let ([h, w], [_, ow], [kh, kw]) = (g.in_hw, g.out_hw, g.kernel);
        let [sy, sx] = g.strides;
        let n = self.dims().1;
        let (start, end) = (q * nr, ((q + 1) * nr).min(n));
        // runs[i] = (image data offset, oy, offset in the panel, length, ox): the panel's columns
        // along output rows; taps[kx · runs + i] for kernel column kx.
        let mut runs = Vec::with_capacity(nr.div_ceil(ow) + 1);
        for (base, j, at, len) in self.images.pieces(g.out_hw[0] * ow, start, end) {
            let mut pos = j;
            while pos < j + len {
                let (oy, ox) = (pos / ow, pos % ow);
                let run = (j + len - pos).min(ow - ox);
                runs.push((base, oy, at + pos - j, run, ox));
                pos += run;
            }
        }
        let taps: Vec<Taps> = (0..kw)
            .flat_map(|kx| {
                runs.iter().map(move |&(_, _, _, len, ox)| {
                    Taps::new(w, (ox * sx + kx * g.dilations[1]) as isize - g.pads[1] as isize, sx, len)
                })
            })
            .collect();
        let (mut c, mut ky, mut kx) = (k0 / (kh * kw), k0 / kw % kh, k0 % kw);
        for r in 0..kc {
            let out = &mut buf[r * nr..(r + 1) * nr];
            if end - start < nr {
                out[end - start..].fill(0.0);
            }
            for (&(base, oy, at, len, _), t) in runs.iter().zip(&taps[kx * runs.len()..]) {
                let plane = &self.x[base + c * h * w..base + (c + 1) * h * w];
                let dst = &mut out[at..at + len];
                let iy = (oy * sy + ky * g.dilations[0]) as isize - g.pads[0] as isize;
                if iy < 0 || iy >= h as isize {
                    dst.fill(0.0);
                } else {
                    t.copy(&plane[iy as usize * w..(iy as usize + 1) * w], sx, dst);
                }
            }
            kx += 1;
            if kx == kw {
                kx = 0;
                ky += 1;
                if ky == kh {
                    ky = 0;
                    c += 1;
                }
            }
        }
    }
}

impl BRef<'_> {
    fn dims(&self) -> (usize, usize) {
        match self {
            BRef::Packed(p) => (p.k, p.n),
            BRef::Rows { k, n, images, .. } => (*k, *n * images.count),
            BRef::Patches(p) => p.dims(),
            BRef::Shifted(p) => (p.offsets.len(), p.n * p.images.count),
        }
    }

    /// Rows `k0..k0+kc` of panel q (`nr` columns, zero beyond n) into `buf`, for the operands
    /// that are not packed already.
    fn fill(&self, nr: usize, q: usize, k0: usize, kc: usize, buf: &mut [f32]) {
        match self {
            BRef::Packed(_) => unreachable!("packed panels are read in place"),
            BRef::Patches(p) => p.fill(nr, q, k0, kc, buf),
            BRef::Rows { data, n, images, .. } => fill_rows(data, *images, *n, nr, q, kc, buf, |r| (k0 + r) * n),
            BRef::Shifted(p) => fill_rows(p.data, p.images, p.n, nr, q, kc, buf, |r| p.offsets[k0 + r]),
        }
    }

    /// All of B in packed panels (for a split where every task needs all of it).
    fn packed(&self, kern: &'static MicroKernel) -> PackedB {
        let (k, n) = self.dims();
        let nr = kern.nr;
        let mut data = vec![0.0; n.div_ceil(nr) * k * nr];
        data.par_chunks_mut((k * nr).max(1)).enumerate().for_each(|(q, panel)| self.fill(nr, q, 0, k, panel));
        PackedB { k, n, kern, data }
    }
}

/// Rows 0..kc of panel q (`nr` columns of `images` × `n`, zero beyond) of a B whose row r of image
/// b is `data[b·stride + row(r) ..]`. A full-width panel inside one image, the common case, is a
/// fixed-size copy per row (no library call).
#[allow(clippy::too_many_arguments)]
fn fill_rows(
    data: &[f32],
    images: Images,
    n: usize,
    nr: usize,
    q: usize,
    kc: usize,
    buf: &mut [f32],
    row: impl Fn(usize) -> usize,
) {
    fn fixed<const W: usize>(data: &[f32], from: usize, kc: usize, buf: &mut [f32], row: impl Fn(usize) -> usize) {
        for (r, dst) in buf[..kc * W].chunks_exact_mut(W).enumerate() {
            let src: &[f32; W] = data[from + row(r)..][..W].try_into().expect("W floats");
            <&mut [f32; W]>::try_from(dst).expect("W floats").copy_from_slice(src);
        }
    }
    let (start, end) = (q * nr, ((q + 1) * nr).min(n * images.count));
    let mut pieces = images.pieces(n, start, end);
    let first = pieces.next();
    if let Some((base, j, 0, len)) = first {
        if len == nr {
            match nr {
                32 => return fixed::<32>(data, base + j, kc, buf, row),
                16 => return fixed::<16>(data, base + j, kc, buf, row),
                8 => return fixed::<8>(data, base + j, kc, buf, row),
                _ => {}
            }
        }
    }
    let pieces: Vec<_> = first.into_iter().chain(pieces).collect();
    for r in 0..kc {
        let out = &mut buf[r * nr..(r + 1) * nr];
        for &(base, j, at, len) in &pieces {
            out[at..at + len].copy_from_slice(&data[base + row(r) + j..][..len]);
        }
        out[end - start..].fill(0.0);
    }
}

/// `C = A·B (+ C if accumulate)`, C row-major with row stride `ldc`, then `epilogue(row, col0, block)`
/// on each finished row block of C. Threads split the tile grid along its longer side. The
/// micro-kernel is the one A was packed for (a packed B must have been packed for it too).
pub fn gemm_packed(
    a: &PackedA,
    b: BRef,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    epilogue: &(dyn Fn(usize, usize, &mut [f32]) + Sync),
) {
    let kern = a.kern;
    let (kb, n) = b.dims();
    let (m, k) = (a.m, a.k);
    assert_eq!(k, kb, "inner dimensions differ");
    match b {
        BRef::Rows { data, n: per_image, images, .. } => {
            assert!(data.len() >= (images.count - 1) * images.stride + k * per_image, "B too short")
        }
        BRef::Packed(pb) => assert_eq!(pb.kern, kern, "A and B packed for different kernels"),
        BRef::Shifted(p) => {
            let last = p.offsets.iter().max().map_or(0, |o| o + p.n);
            assert!(p.data.len() >= (p.images.count - 1) * p.images.stride + last, "B too short")
        }
        BRef::Patches(_) => {}
    }
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "gemm output too short");
    // A was packed for `kern`, which `micro` only hands out where the CPU supports it.
    let code = kern.code();
    let (mr, nr, kcap) = (kern.mr, kern.nr, kern.kc);
    let (mp, np) = (m.div_ceil(mr), n.div_ceil(nr));
    let cptr = SyncPtr(c.as_mut_ptr());
    // Tiles [p0,p1) × [q0,q1) of the panel grid.
    let run = |p0: usize, p1: usize, q0: usize, q1: usize| {
        // The L1 buffer for one panel slice of a B that is not packed.
        let mut slice = vec![0.0f32; if matches!(b, BRef::Packed(_)) { 0 } else { kcap * nr }];
        let mut k0 = 0;
        while k0 < k.max(1) {
            let kc = kcap.min(k - k0);
            let fresh = k0 == 0 && !accumulate;
            for q in q0..q1 {
                let cols = nr.min(n - q * nr);
                // B's rows k0.. for panel q (nr floats apart).
                let bq: *const f32 = match b {
                    BRef::Packed(pb) => pb.data[q * k * nr + k0 * nr..].as_ptr(),
                    _ => {
                        b.fill(nr, q, k0, kc, &mut slice);
                        slice.as_ptr()
                    }
                };
                for p in p0..p1 {
                    let rows = mr.min(m - p * mr);
                    let tile = Tile {
                        kc,
                        a: a.data[p * k * mr + k0 * mr..].as_ptr(),
                        b: bq,
                        ldb: nr,
                        c: cptr.get().wrapping_add(p * mr * ldc + q * nr),
                        ldc,
                        rows,
                        cols,
                        fresh,
                    };
                    // SAFETY: panel offsets are inside the packed buffers (sizes fixed by pack);
                    // the C tile (p, q) is inside C (checked above) and owned by this task alone;
                    // the CPU runs `kern` (see above).
                    unsafe { code(&tile) };
                }
            }
            if k == 0 {
                break;
            }
            k0 += kc;
        }
        let (r0, r1) = (p0 * mr, (p1 * mr).min(m));
        let (c0, c1) = (q0 * nr, (q1 * nr).min(n));
        for r in r0..r1 {
            // SAFETY: row r, columns [c0,c1) belong to this task's tiles.
            let row = unsafe { std::slice::from_raw_parts_mut(cptr.get().add(r * ldc + c0), c1 - c0) };
            epilogue(r, c0, row);
        }
    };
    let threads = rayon::current_num_threads();
    if threads <= 1 || m * n * k < 1 << 18 {
        return run(0, mp, 0, np);
    }
    if !matches!(b, BRef::Packed(_)) && np < mp {
        // Splitting rows: every task would copy all of B's slices; pack B once instead.
        let packed = b.packed(kern);
        return gemm_packed(a, BRef::Packed(&packed), c, ldc, accumulate, epilogue);
    }
    if np >= mp {
        let chunk = np.div_ceil(threads * 2).max(1);
        (0..np.div_ceil(chunk)).into_par_iter().for_each(|i| run(0, mp, i * chunk, ((i + 1) * chunk).min(np)));
    } else {
        let chunk = mp.div_ceil(threads * 2).max(1);
        (0..mp.div_ceil(chunk)).into_par_iter().for_each(|i| run(i * chunk, ((i + 1) * chunk).min(mp), 0, np));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::gemm_reference;
    use crate::kernels::micro::for_each_kernel;

    #[test]
    fn implicit_patches_equal_the_materialised_im2col() {
        use crate::kernels::conv::im2col;
        let geo = Geometry {
            in_hw: [9, 11],
            out_hw: [5, 4],
            kernel: [3, 2],
            strides: [2, 3],
            dilations: [1, 2],
            pads: [1, 2, 0, 1],
        };
        let x: Vec<f32> = (0..2 * 9 * 11).map(|i| i as f32).collect();
        let src = Patches { x: &x, channels: 2, geo, images: Images::ONE };
        let (k, n) = src.dims();
        let mut cols = vec![0.0; k * n];
        im2col(&x, 2, &geo, Images::ONE, &mut cols);
        for_each_kernel(|kern| {
            let want = PackedB::pack(kern, &cols, k, n);
            assert_eq!(BRef::Patches(&src).packed(kern).data, want.data, "{}", kern.name);
            // Slices that start inside a channel and a kernel row, as K blocks of a deep patch
            // matrix do: the row counters start from k0.
            let nr = kern.nr;
            for (q, k0, kc) in [(0, 5, 7), (n.div_ceil(nr) - 1, 1, k - 1), (0, k - 1, 1)] {
                let mut slice = vec![f32::NAN; kc * nr];
                src.fill(nr, q, k0, kc, &mut slice);
                assert_eq!(slice, want.data[q * k * nr + k0 * nr..][..kc * nr], "{} q {q} k0 {k0}", kern.name);
            }
        });
    }

    #[test]
    fn every_kernel_and_operand_form_matches_the_reference() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for &(m, k, n) in &[(1, 1, 1), (12, 256, 32), (13, 300, 33), (64, 147, 300), (200, 577, 49), (5, 3, 70)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 11) as f32 - 5.0).collect();
            let want = gemm_reference(m, k, n, MatRef::rows(&a, k), MatRef::rows(&b, n));
            for_each_kernel(|kern| {
                let pa = PackedA::pack(kern, MatRef::rows(&a, k), m, k);
                let pb = PackedB::pack(kern, &b, k, n);
                for (form, bref) in
                    [("packed", BRef::Packed(&pb)), ("rows", BRef::Rows { data: &b, k, n, images: Images::ONE })]
                {
                    // Accumulate onto a C of ones: checks both the fresh and the accumulating paths.
                    let mut c = vec![1.0; m * (n + 3)];
                    pool.install(|| gemm_packed(&pa, bref, &mut c, n + 3, true, &|_, _, _| {}));
                    for i in 0..m {
                        for j in 0..n {
                            // Integer operands: exact in f32 at these sizes.
                            let at = i * (n + 3) + j;
                            assert_eq!(c[at], want[i * n + j] + 1.0, "{} {form} {m}x{k}x{n} at ({i},{j})", kern.name);
                        }
                        assert!(
                            c[i * (n + 3) + n..(i + 1) * (n + 3)].iter().all(|&v| v == 1.0),
                            "padding columns untouched"
                        );
                    }
                }
            });
        }
    }
}
