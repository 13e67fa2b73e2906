//! Compute kernels: the only code outside `ops/` that touches tensor elements in bulk.
//! Each SIMD kernel (`simd`, `pool`) has a scalar twin beside it and a test comparing the two.

pub mod conv;
pub mod gemm;
pub mod layout;
pub mod micro;
pub mod moments;
pub mod optim;
pub mod packed;
pub mod pool;
pub mod simd;

/// Runs `f` compiled for AVX2 + FMA where this CPU has them, so that the `mul_add`s inlined into
/// it are single instructions and its loops vectorise 8 wide; elsewhere `f` runs as built. For
/// element loops that must round with fused multiply-adds (BatchNorm's, as PyTorch's do) in a
/// baseline x86-64 build, where `mul_add` is otherwise a library call per element. The results
/// are the same either way: a fused multiply-add rounds once, in hardware or in libm.
#[inline(always)]
pub fn fused<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        fn run<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: this CPU has AVX2 and FMA (checked above).
        return unsafe { run(f) };
    }
    f()
}

/// A raw pointer that may cross threads. Users uphold that concurrent tasks write disjoint ranges.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(pub *mut f32);
// SAFETY: only used to hand disjoint output ranges to rayon tasks (see each use).
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    /// The pointer (a method, so closures capture the whole `SyncPtr`, not its raw field).
    #[inline(always)]
    pub fn get(self) -> *mut f32 {
        self.0
    }
}
