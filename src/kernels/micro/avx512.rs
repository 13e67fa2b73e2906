//! The AVX-512 micro-kernel: a 12 × 32 tile of C in 24 of the 32 zmm registers (12 rows × 2
//! vectors of 16), one B row (2 loads) and 12 broadcasts of A per step of k.

x86_kernel! {
    name: "avx512", feature: "avx512f", supported: is_x86_feature_detected!("avx512f"),
    tile: 12 x 16 lanes x 2,
    _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_storeu_ps,
}
