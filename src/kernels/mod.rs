//! Compute kernels: the only code outside `ops/` that touches tensor elements in bulk.
//! Each SIMD kernel (`simd`, `pool`) has a scalar twin beside it and a test comparing the two.

pub mod conv;
pub mod gemm;
pub mod layout;
pub mod moments;
pub mod optim;
pub mod packed;
pub mod pool;
pub mod simd;

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
