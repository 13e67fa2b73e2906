//! Our own packed SGEMM for the convolutions: `C[m×n] (+)= A[m×k] · B[k×n]` with both operands
//! in panel layouts, so that weights are packed once (not per call, per image and per block as a
//! general GEMM must) and im2col writes straight into B's layout.
//!
//! Layouts (zero-padded to whole panels):
//!   `PackedA`: panels of `MR` rows; panel p holds, for each kk in 0..k, `A[p·MR + r][kk]` for
//!   r in 0..MR (k-major), i.e. element (r, kk) at `p·k·MR + kk·MR + r`.
//!   `PackedB`: panels of `NR` columns; element (kk, j) of panel q at `q·k·NR + kk·NR + j`.
//! The micro-kernel keeps an MR×NR tile of C in 24 AVX-512 registers (12 rows × 2 × 16 lanes) and
//! streams a `KC`-deep slice of one A panel and one B panel through it; `kernel_scalar` is its
//! twin. K is blocked by `KC` so a B panel slice (KC·NR floats = 32 KiB) stays in L1 while every
//! A panel passes over it.

use rayon::prelude::*;
use wide::f32x16;

use super::conv::gather_taps;
use super::gemm::MatRef;
use super::SyncPtr;
use crate::ops::window::Geometry;

pub const MR: usize = 12;
pub const NR: usize = 16 * NV;
/// Vectors of 16 lanes per tile row.
const NV: usize = 2;
const KC: usize = 256;

/// A packed in MR-row panels.
#[derive(Clone, Debug)]
pub struct PackedA {
    pub m: usize,
    pub k: usize,
    data: Vec<f32>,
}

impl PackedA {
    pub fn pack(a: MatRef, m: usize, k: usize) -> PackedA {
        let panels = m.div_ceil(MR);
        let mut data = vec![0.0; panels * k * MR];
        data.par_chunks_mut(k * MR).enumerate().for_each(|(p, panel)| {
            for r in 0..MR.min(m - p * MR) {
                let row = p * MR + r;
                for kk in 0..k {
                    panel[kk * MR + r] = a.data[row * a.rs + kk * a.cs];
                }
            }
        });
        PackedA { m, k, data }
    }
}

/// B packed in NR-column panels.
#[derive(Clone, Debug)]
pub struct PackedB {
    pub k: usize,
    pub n: usize,
    data: Vec<f32>,
}

impl PackedB {
    /// Fills B row by row: `row(kk, out)` writes the n values of row kk into `out`. Rows are
    /// produced in parallel; each is then scattered into its panels.
    pub fn from_rows(k: usize, n: usize, row: impl Fn(usize, &mut [f32]) + Sync) -> PackedB {
        let panels = n.div_ceil(NR);
        let mut data = vec![0.0; panels * k * NR];
        let ptr = SyncPtr(data.as_mut_ptr());
        (0..k).into_par_iter().for_each_init(
            || vec![0.0f32; n],
            |buf, kk| {
                row(kk, buf);
                let full = n / NR;
                for q in 0..full {
                    // SAFETY: (q, kk) addresses a distinct NR-slot inside `data` for every row kk;
                    // a fixed-size copy compiles to two vector moves instead of a memmove call.
                    unsafe {
                        let src = buf.as_ptr().add(q * NR) as *const [f32; NR];
                        std::ptr::write_unaligned(
                            ptr.get().add(q * k * NR + kk * NR) as *mut [f32; NR],
                            std::ptr::read_unaligned(src),
                        );
                    }
                }
                if full < panels {
                    let cols = n - full * NR;
                    // SAFETY: as above, for the last, partial panel.
                    let dst = unsafe { std::slice::from_raw_parts_mut(ptr.get().add(full * k * NR + kk * NR), cols) };
                    dst.copy_from_slice(&buf[full * NR..]);
                }
            },
        );
        PackedB { k, n, data }
    }

    pub fn pack(b: MatRef, k: usize, n: usize) -> PackedB {
        PackedB::from_rows(k, n, |kk, out| {
            for (j, o) in out.iter_mut().enumerate() {
                *o = b.data[kk * b.rs + j * b.cs];
            }
        })
    }
}

/// The MR×NR tile update `C += A_panel[k0..k1] · B[k0..k1, NR columns]` (C starts at zero when
/// `fresh`). B's rows are `ldb` floats apart: `NR` in a packed panel, `n` in a row-major matrix.
/// `rows`/`cols` clip the stored part of the tile at the matrix edge.
///
/// # Safety
/// `a` points at a panel slice of `kc` steps (kc·MR floats); `b` at kc rows of NR readable floats
/// `ldb` apart; `c` at a row-major tile with row stride `ldc` of `rows` × `cols` writable floats.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn kernel(
    kc: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    fresh: bool,
) {
    let load = |p: *const f32| f32x16::new(std::ptr::read_unaligned(p as *const [f32; 16]));
    let mut acc = [[f32x16::ZERO; NV]; MR];
    for kk in 0..kc {
        let bp = b.add(kk * ldb);
        let bv: [f32x16; NV] = std::array::from_fn(|h| load(bp.add(16 * h)));
        let ap = a.add(kk * MR);
        for (r, row) in acc.iter_mut().enumerate() {
            let av = f32x16::splat(*ap.add(r));
            for h in 0..NV {
                row[h] = av.mul_add(bv[h], row[h]);
            }
        }
    }
    if rows == MR && cols == NR {
        for (r, row) in acc.iter().enumerate() {
            let cp = c.add(r * ldc);
            for (h, v) in row.iter().enumerate() {
                let mut v = *v;
                if !fresh {
                    v += load(cp.add(16 * h));
                }
                std::ptr::write_unaligned(cp.add(16 * h) as *mut [f32; 16], v.to_array());
            }
        }
    } else {
        for (r, row) in acc.iter().enumerate().take(rows) {
            let mut vals = [0.0f32; NR];
            for h in 0..NV {
                vals[16 * h..16 * (h + 1)].copy_from_slice(&row[h].to_array());
            }
            for (j, &v) in vals.iter().enumerate().take(cols) {
                let cp = c.add(r * ldc + j);
                *cp = if fresh { v } else { *cp + v };
            }
        }
    }
}

/// Scalar twin of `kernel`, the definition the SIMD kernel is tested against.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_scalar(
    kc: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    fresh: bool,
) {
    for r in 0..rows {
        for j in 0..cols {
            let mut s = 0.0f32;
            for kk in 0..kc {
                s = (*a.add(kk * MR + r)).mul_add(*b.add(kk * ldb + j), s);
            }
            let cp = c.add(r * ldc + j);
            *cp = if fresh { s } else { *cp + s };
        }
    }
}

/// The right operand: packed panels, or a row-major `k × n` matrix read in place (its last,
/// partial panel is copied into a zero-padded one).
#[derive(Clone, Copy)]
pub enum BRef<'a> {
    Packed(&'a PackedB),
    Rows {
        data: &'a [f32],
        k: usize,
        n: usize,
    },
    /// The im2col patch matrix of a convolution, never materialised: each KC×NR panel slice is
    /// built in an L1-sized buffer right before the micro-kernels use it (implicit GEMM).
    Patches(&'a Patches<'a>),
}

/// The patch matrix of `channels` input planes under a window: row (c, ky, kx), column (oy, ox).
pub struct Patches<'a> {
    pub x: &'a [f32],
    pub channels: usize,
    pub geo: Geometry,
}

impl Patches<'_> {
    fn dims(&self) -> (usize, usize) {
        let g = &self.geo;
        (self.channels * g.kernel[0] * g.kernel[1], g.out_hw[0] * g.out_hw[1])
    }

    /// Rows `k0..k0+kc` of panel q's columns into `buf` (kc rows of NR, zero beyond n).
    fn fill(&self, q: usize, k0: usize, kc: usize, buf: &mut [f32]) {
        let g = &self.geo;
        let ([h, w], [_, ow], [kh, kw]) = (g.in_hw, g.out_hw, g.kernel);
        let n = self.dims().1;
        let (start, end) = (q * NR, ((q + 1) * NR).min(n));
        let sx = g.strides[1];
        for r in 0..kc {
            let row = k0 + r;
            let (c, ky, kx) = (row / (kh * kw), row / kw % kh, row % kw);
            let plane = &self.x[c * h * w..(c + 1) * h * w];
            let out = &mut buf[r * NR..(r + 1) * NR];
            out[end - start..].fill(0.0);
            // The panel's output positions, one output row (segment) at a time.
            let mut pos = start;
            while pos < end {
                let (oy, ox) = (pos / ow, pos % ow);
                let seg = (end - pos).min(ow - ox);
                let dst = &mut out[pos - start..pos - start + seg];
                pos += seg;
                let iy = (oy * g.strides[0] + ky * g.dilations[0]) as isize - g.pads[0] as isize;
                if iy < 0 || iy >= h as isize {
                    dst.fill(0.0);
                    continue;
                }
                let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                let x0 = (ox * sx + kx * g.dilations[1]) as isize - g.pads[1] as isize;
                gather_taps(src, x0, sx, dst);
            }
        }
    }

    /// The whole patch matrix in packed panels (for a split where every task needs all of it).
    fn packed(&self) -> PackedB {
        let (k, n) = self.dims();
        let mut data = vec![0.0; n.div_ceil(NR) * k * NR];
        data.par_chunks_mut(k * NR).enumerate().for_each(|(q, panel)| self.fill(q, 0, k, panel));
        PackedB { k, n, data }
    }
}

impl BRef<'_> {
    fn dims(&self) -> (usize, usize) {
        match self {
            BRef::Packed(p) => (p.k, p.n),
            BRef::Rows { k, n, .. } => (*k, *n),
            BRef::Patches(p) => p.dims(),
        }
    }
}

/// `C = A·B (+ C if accumulate)`, C row-major with row stride `ldc`, then `epilogue(row, col0, block)`
/// on each finished row block of C. Threads split the tile grid along its longer side.
pub fn gemm_packed(
    a: &PackedA,
    b: BRef,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    epilogue: &(dyn Fn(usize, usize, &mut [f32]) + Sync),
) {
    gemm_packed_with(a, b, c, ldc, accumulate, epilogue, kernel)
}

type Kernel = unsafe fn(usize, *const f32, *const f32, usize, *mut f32, usize, usize, usize, bool);

fn gemm_packed_with(
    a: &PackedA,
    b: BRef,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    epilogue: &(dyn Fn(usize, usize, &mut [f32]) + Sync),
    kern: Kernel,
) {
    let (kb, n) = b.dims();
    let (m, k) = (a.m, a.k);
    assert_eq!(k, kb, "inner dimensions differ");
    if let BRef::Rows { data, .. } = b {
        assert!(data.len() >= k * n, "B too short");
    }
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "gemm output too short");
    let (mp, np) = (m.div_ceil(MR), n.div_ceil(NR));
    let cptr = SyncPtr(c.as_mut_ptr());
    // Tiles [p0,p1) × [q0,q1) of the panel grid.
    let run = |p0: usize, p1: usize, q0: usize, q1: usize| {
        // A row-major B's partial last panel, copied zero-padded (only by the task that owns it).
        let tail: Vec<f32> = match b {
            BRef::Rows { data, .. } if n % NR != 0 && q1 == np => {
                let (start, cols) = ((np - 1) * NR, n % NR);
                let mut t = vec![0.0; k * NR];
                for kk in 0..k {
                    t[kk * NR..kk * NR + cols].copy_from_slice(&data[kk * n + start..kk * n + start + cols]);
                }
                t
            }
            _ => Vec::new(),
        };
        let mut patch_buf = vec![0.0f32; if matches!(b, BRef::Patches(_)) { KC * NR } else { 0 }];
        let mut k0 = 0;
        while k0 < k.max(1) {
            let kc = KC.min(k - k0);
            let fresh = k0 == 0 && !accumulate;
            for q in q0..q1 {
                let cols = NR.min(n - q * NR);
                // B's rows k0.. for panel q, and the stride between them.
                let (bq, ldb): (*const f32, usize) = match b {
                    BRef::Packed(pb) => (pb.data[q * k * NR + k0 * NR..].as_ptr(), NR),
                    BRef::Rows { data, .. } if (q + 1) * NR <= n => (data[k0 * n + q * NR..].as_ptr(), n),
                    BRef::Rows { .. } => (tail[k0 * NR..].as_ptr(), NR),
                    BRef::Patches(src) => {
                        src.fill(q, k0, kc, &mut patch_buf);
                        (patch_buf.as_ptr(), NR)
                    }
                };
                for p in p0..p1 {
                    let rows = MR.min(m - p * MR);
                    // SAFETY: panel offsets are inside the packed buffers (sizes fixed by pack);
                    // the C tile (p, q) is inside C (checked above) and owned by this task alone.
                    unsafe {
                        kern(
                            kc,
                            a.data.as_ptr().add(p * k * MR + k0 * MR),
                            bq,
                            ldb,
                            cptr.get().add(p * MR * ldc + q * NR),
                            ldc,
                            rows,
                            cols,
                            fresh,
                        )
                    };
                }
            }
            if k == 0 {
                break;
            }
            k0 += kc;
        }
        let (r0, r1) = (p0 * MR, (p1 * MR).min(m));
        let (c0, c1) = (q0 * NR, (q1 * NR).min(n));
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
    if let (BRef::Patches(src), true) = (b, np < mp) {
        // Splitting rows: every task would rebuild all patches; build them once instead.
        let packed = src.packed();
        return gemm_packed_with(a, BRef::Packed(&packed), c, ldc, accumulate, epilogue, kern);
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
        let src = Patches { x: &x, channels: 2, geo };
        let (k, n) = src.dims();
        let mut cols = vec![0.0; k * n];
        im2col(&x, 2, &geo, &mut cols);
        let want = PackedB::pack(MatRef::rows(&cols, n), k, n);
        assert_eq!(src.packed().data, want.data);
    }
    use crate::kernels::gemm::gemm_reference;

    #[test]
    fn simd_kernel_matches_scalar_twin_and_reference() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for &(m, k, n) in &[(1, 1, 1), (12, 256, 32), (13, 300, 33), (64, 147, 300), (200, 577, 49), (5, 3, 70)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 11) as f32 - 5.0).collect();
            let want = gemm_reference(m, k, n, MatRef::rows(&a, k), MatRef::rows(&b, n));
            let pa = PackedA::pack(MatRef::rows(&a, k), m, k);
            let pb = PackedB::pack(MatRef::rows(&b, n), k, n);
            let cases = [
                (kernel as Kernel, "simd packed", BRef::Packed(&pb)),
                (kernel as Kernel, "simd rows", BRef::Rows { data: &b, k, n }),
                (kernel_scalar as Kernel, "scalar", BRef::Packed(&pb)),
            ];
            for (kern, name, bref) in cases {
                // Accumulate onto a C of ones: checks both the fresh and the accumulating paths.
                let mut c = vec![1.0; m * (n + 3)];
                pool.install(|| gemm_packed_with(&pa, bref, &mut c, n + 3, true, &|_, _, _| {}, kern));
                for i in 0..m {
                    for j in 0..n {
                        // Integer operands: exact in f32 at these sizes.
                        assert_eq!(c[i * (n + 3) + j], want[i * n + j] + 1.0, "{name} {m}x{k}x{n} at ({i},{j})");
                    }
                    assert!(
                        c[i * (n + 3) + n..(i + 1) * (n + 3)].iter().all(|&v| v == 1.0),
                        "padding columns untouched"
                    );
                }
            }
        }
    }
}
