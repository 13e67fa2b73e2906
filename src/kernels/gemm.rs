//! Single-precision GEMM on `matrixmultiply`, split across rayon threads.
//!
//! Contract: `C[m×n] = A[m×k] · B[k×n] (+ C if accumulate)`, each matrix given by a slice and
//! its (row stride, column stride) in elements, so transposed operands cost nothing. The split is
//! over columns of C (or rows when C is narrow); every task writes a disjoint block of C.

use rayon::prelude::*;

use super::SyncPtr;

/// A read-only matrix operand: elements and (row stride, column stride).
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// Row-major `rows × cols`.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        MatRef { data, rs: cols, cs: 1 }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        MatRef { data, rs: 1, cs: cols }
    }

    fn span(&self, rows: usize, cols: usize) -> usize {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * self.rs + (cols - 1) * self.cs + 1
        }
    }
}

/// Work below this many multiply-adds runs on one thread.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;
/// Column blocks narrower than this waste the packed kernels.
const MIN_BLOCK: usize = 64;

/// `C = A·B (+ C)`, with C row-major `m × n` at row stride `ldc`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(m: usize, k: usize, n: usize, a: MatRef, b: MatRef, c: &mut [f32], ldc: usize, accumulate: bool) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.data.len() >= a.span(m, k) && b.data.len() >= b.span(k, n), "gemm operand too short");
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "gemm output too short");
    let threads = rayon::current_num_threads();
    let work = m * k * n;
    let cptr = SyncPtr(c.as_mut_ptr());
    let run_block = |r0: usize, r1: usize, c0: usize, c1: usize| {
        // SAFETY: blocks [r0,r1)×[c0,c1) are disjoint across tasks and inside C (checked above);
        // A and B spans were checked above; matrixmultiply reads/writes only within them.
        unsafe {
            let cp = cptr.get().add(r0 * ldc + c0);
            matrixmultiply::sgemm(
                r1 - r0,
                k,
                c1 - c0,
                1.0,
                a.data.as_ptr().add(r0 * a.rs),
                a.rs as isize,
                a.cs as isize,
                b.data.as_ptr().add(c0 * b.cs),
                b.rs as isize,
                b.cs as isize,
                if accumulate { 1.0 } else { 0.0 },
                cp,
                ldc as isize,
                1,
            );
        }
    };
    if threads <= 1 || work < PARALLEL_MIN_FLOPS {
        return run_block(0, m, 0, n);
    }
    // Each task packs the operand it does not split in full, so split the dimension whose
    // other operand is smaller: columns (duplicating A, m×k) when n ≥ m, rows (duplicating B,
    // k×n) otherwise.
    if n >= m && n >= MIN_BLOCK * 2 {
        let blocks = (threads * 2).min(n / MIN_BLOCK).max(1);
        let step = n.div_ceil(blocks).next_multiple_of(16);
        (0..n.div_ceil(step)).into_par_iter().for_each(|i| run_block(0, m, i * step, ((i + 1) * step).min(n)));
    } else {
        let blocks = threads.min(m.div_ceil(16)).max(1);
        let step = m.div_ceil(blocks).next_multiple_of(8);
        (0..m.div_ceil(step)).into_par_iter().for_each(|i| run_block(i * step, ((i + 1) * step).min(m), 0, n));
    }
}

/// Reference triple loop (f64 accumulation) for tests.
#[cfg(test)]
pub fn gemm_reference(m: usize, k: usize, n: usize, a: MatRef, b: MatRef) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k).map(|p| a.data[i * a.rs + p * a.cs] as f64 * b.data[p * b.rs + j * b.cs] as f64).sum();
            c[i * n + j] = s as f32;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_blocks_and_strides_match_the_reference() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for &(m, k, n) in &[(1, 7, 1), (64, 147, 300), (300, 64, 20), (5, 512, 1000)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 11) as f32 - 5.0).collect();
            // B given transposed: stored as n×k row-major.
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let want = gemm_reference(m, k, n, MatRef::rows(&a, k), MatRef::rows(&b, n));
            let mut c = vec![0.0; m * n];
            pool.install(|| gemm(m, k, n, MatRef::rows(&a, k), MatRef::transposed(&bt, k), &mut c, n, false));
            // Integer-valued operands: products and sums are exact in f32 at these sizes.
            assert_eq!(c, want, "{m}x{k}x{n}");
        }
    }
}
