//! The AVX2 + FMA micro-kernel: a 6 × 16 tile of C in 12 of the 16 ymm registers (6 rows × 2
//! vectors of 8), one B row (2 loads) and 6 broadcasts of A per step of k: 15 registers live, as
//! the 6 × 16 kernels of MLAS, XNNPACK and tract keep.

x86_kernel! {
    name: "avx2", feature: "avx2,fma",
    supported: crate::kernels::has_avx2_fma(),
    tile: 6 x 8 lanes x 2,
    _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps,
}
