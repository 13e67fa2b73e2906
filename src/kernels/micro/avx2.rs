//! The AVX2 + FMA micro-kernel: a 6 × 16 tile of C in 12 of the 16 ymm registers (6 rows × 2
//! vectors of 8), one B row (2 loads) and 6 broadcasts of A per step of k: 15 registers live, as
//! the 6 × 16 kernels of MLAS, XNNPACK and tract keep.

use super::{store_clipped, MicroKernel};

const MR: usize = 6;
const NR: usize = 16;

pub static KERNEL: MicroKernel = MicroKernel { name: "avx2", mr: MR, nr: NR, kc: 256, run, supported };

fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// # Safety
/// See `KernelFn`.
#[allow(clippy::too_many_arguments)]
unsafe fn run(
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
    #[cfg(target_arch = "x86_64")]
    tile(kc, a, b, ldb, c, ldc, rows, cols, fresh);
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("{kc} {a:?} {b:?} {ldb} {c:?} {ldc} {rows} {cols} {fresh}: no AVX2 off x86-64");
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
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
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for kk in 0..kc {
        let bp = b.add(kk * ldb);
        let (b0, b1) = (_mm256_loadu_ps(bp), _mm256_loadu_ps(bp.add(8)));
        let ap = a.add(kk * MR);
        for (r, row) in acc.iter_mut().enumerate() {
            let av = _mm256_set1_ps(*ap.add(r));
            row[0] = _mm256_fmadd_ps(av, b0, row[0]);
            row[1] = _mm256_fmadd_ps(av, b1, row[1]);
        }
    }
    if rows == MR && cols == NR {
        for (r, row) in acc.iter().enumerate() {
            let cp = c.add(r * ldc);
            for (h, &v) in row.iter().enumerate() {
                let v = if fresh { v } else { _mm256_add_ps(v, _mm256_loadu_ps(cp.add(8 * h))) };
                _mm256_storeu_ps(cp.add(8 * h), v);
            }
        }
    } else {
        let mut spill = [0.0f32; MR * NR];
        for (r, row) in acc.iter().enumerate() {
            for (h, &v) in row.iter().enumerate() {
                _mm256_storeu_ps(spill.as_mut_ptr().add(r * NR + 8 * h), v);
            }
        }
        store_clipped(&spill, NR, c, ldc, rows, cols, fresh);
    }
}
