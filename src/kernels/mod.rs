//! Compute kernels: the only code outside `ops/` that touches tensor elements in bulk.
//! Each SIMD kernel (`simd`, `pool`) has a scalar twin beside it and a test comparing the two.

pub mod conv;
pub mod depthwise;
pub mod gemm;
pub mod layout;
pub mod micro;
pub mod moments;
pub mod optim;
pub mod packed;
pub mod pool;
pub mod simd;

/// Whether this CPU has AVX2 and FMA (the `fma_fn!` functions' fast path).
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Defines a function whose body is compiled twice: for AVX2 + FMA, run where the CPU has them,
/// and for the build's baseline. For element loops that must round with fused multiply-adds
/// (BatchNorm's, as PyTorch's do): in a baseline x86-64 build `mul_add` is otherwise a library
/// call per element, and in the AVX2 + FMA copy it is one instruction in a loop vectorised 8 wide.
/// Both copies give the same results: a fused multiply-add rounds once, in hardware or in libm.
/// (A closure handed to a `#[target_feature]` function is not inlined into it reliably, so
/// the body is written into each copy.)
macro_rules! fma_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn fast($($arg: $ty),*) $(-> $ret)? $body
                if $crate::kernels::has_avx2_fma() {
                    // SAFETY: this CPU has AVX2 and FMA (checked just above).
                    return unsafe { fast($($arg),*) };
                }
            }
            $body
        }
    };
}
pub(crate) use fma_fn;

/// Elements per task of the threaded element-wise loops: large enough that the split costs
/// nothing next to the work, small enough that both threads share a MobileNet's smaller tensors.
const PAR_CHUNK: usize = 1 << 15;

/// A new tensor's data whose chunk i is `f(src chunk i, out chunk i)`, chunks across threads (the
/// output's fresh pages are touched by the thread that writes them).
pub fn par_chunks_map(src: &[f32], f: impl Fn(&[f32], &mut [f32]) + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = vec![0.0; src.len()];
    out.par_chunks_mut(PAR_CHUNK).zip(src.par_chunks(PAR_CHUNK)).for_each(|(o, s)| f(s, o));
    out
}

/// `out[i] = f(a[i], b[i])` across threads (a backward rule's `dy ⊙ f'(saved)`).
pub fn par_zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    assert_eq!(a.len(), b.len(), "par_zip_map over tensors of different sizes");
    let mut out = vec![0.0; a.len()];
    out.par_chunks_mut(PAR_CHUNK).zip(a.par_chunks(PAR_CHUNK).zip(b.par_chunks(PAR_CHUNK))).for_each(|(o, (a, b))| {
        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
            *o = f(a, b);
        }
    });
    out
}

/// `g` where `keep`, else exactly 0, without a branch: a mask and a bit-and the loops around it
/// vectorise (a ReLU6 mask as `if lo <= x && x <= hi` compiles to two jumps per element, which
/// real activations mispredict: 3 GB/s where this runs at memory speed).
#[inline(always)]
pub fn keep_if(g: f32, keep: bool) -> f32 {
    f32::from_bits(g.to_bits() & (keep as u32).wrapping_neg())
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
