//! The portable micro-kernel for every CPU without a kernel of its own: a 4 × 8 tile in plain
//! Rust that the compiler vectorises (two SSE2 vectors per row on x86-64; meant for NEON on
//! aarch64 too, though no aarch64 build has been tried yet), 8 accumulators that fit either
//! register file. Products are fused multiply-adds where the CPU has them (aarch64 always; on
//! x86-64 a copy compiled for AVX2 + FMA), so this kernel rounds as the others and as PyTorch do;
//! on an x86-64 without FMA, where `mul_add` would be a library call, it multiplies and adds
//! separately.

use super::{store_clipped, KernelFn, MicroKernel, Tile};

const MR: usize = 4;
const NR: usize = 8;

pub static KERNEL: MicroKernel = MicroKernel { name: "portable", mr: MR, nr: NR, kc: 256, select, supported };

fn supported() -> bool {
    true
}

/// The fused build where the CPU has FMA, else the one this target's baseline compiles.
fn select() -> KernelFn {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::has_avx2_fma() {
        return tile_fma;
    }
    tile_baseline
}

/// # Safety
/// See `KernelFn`.
unsafe fn tile_baseline(t: &Tile) {
    tile::<{ cfg!(target_arch = "aarch64") }>(t)
}

/// `tile` with fused products, compiled for AVX2 + FMA (it is inlined here, into that ISA).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_fma(t: &Tile) {
    tile::<true>(t)
}

#[inline(always)]
unsafe fn tile<const FUSED: bool>(t: &Tile) {
    let mut acc = [[0.0f32; NR]; MR];
    for kk in 0..t.kc {
        let bv: [f32; NR] = std::ptr::read_unaligned(t.b.add(kk * t.ldb) as *const [f32; NR]);
        let av: [f32; MR] = std::ptr::read_unaligned(t.a.add(kk * MR) as *const [f32; MR]);
        for (row, &ar) in acc.iter_mut().zip(&av) {
            for (o, &bj) in row.iter_mut().zip(&bv) {
                *o = if FUSED { ar.mul_add(bj, *o) } else { *o + ar * bj };
            }
        }
    }
    store_clipped(acc.as_flattened(), NR, t);
}
