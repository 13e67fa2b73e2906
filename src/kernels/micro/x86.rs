//! The body the x86 micro-kernels share: an `MR × NR` tile of C in `2·MR` vector registers (2
//! vectors per tile row), per step of k one B row (2 loads) and `MR` broadcasts of A, each
//! multiplied into both vectors of its row with a fused multiply-add. Each kernel instantiates it
//! with its ISA's vector type and intrinsics, compiled under its `#[target_feature]`.

macro_rules! x86_kernel {
    (
        name: $name:literal, feature: $feature:literal, supported: $supported:expr,
        tile: $mr:literal x $lanes:literal lanes x 2,
        $zero:ident, $load:ident, $splat:ident, $fmadd:ident, $add:ident, $store:ident $(,)?
    ) => {
        use super::{store_clipped, MicroKernel, Tile};

        const MR: usize = $mr;
        const LANES: usize = $lanes;
        const NR: usize = 2 * LANES;

        pub static KERNEL: MicroKernel = MicroKernel { name: $name, mr: MR, nr: NR, kc: 256, select, supported };

        fn select() -> super::KernelFn {
            run
        }

        fn supported() -> bool {
            #[cfg(target_arch = "x86_64")]
            return $supported;
            #[cfg(not(target_arch = "x86_64"))]
            false
        }

        /// # Safety
        /// See `KernelFn`.
        unsafe fn run(t: &Tile) {
            #[cfg(target_arch = "x86_64")]
            tile(t);
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("{t:?}: the {} kernel is x86-64 only", $name);
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn tile(t: &Tile) {
            use std::arch::x86_64::*;
            let mut acc = [[$zero(); 2]; MR];
            for kk in 0..t.kc {
                let bp = t.b.add(kk * t.ldb);
                let (b0, b1) = ($load(bp), $load(bp.add(LANES)));
                let ap = t.a.add(kk * MR);
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = $splat(*ap.add(r));
                    row[0] = $fmadd(av, b0, row[0]);
                    row[1] = $fmadd(av, b1, row[1]);
                }
            }
            if t.rows == MR && t.cols == NR {
                for (r, row) in acc.iter().enumerate() {
                    let cp = t.c.add(r * t.ldc);
                    for (h, &v) in row.iter().enumerate() {
                        let v = if t.fresh { v } else { $add(v, $load(cp.add(LANES * h))) };
                        $store(cp.add(LANES * h), v);
                    }
                }
            } else {
                let mut spill = [0.0f32; MR * NR];
                for (r, row) in acc.iter().enumerate() {
                    for (h, &v) in row.iter().enumerate() {
                        $store(spill.as_mut_ptr().add(r * NR + LANES * h), v);
                    }
                }
                store_clipped(&spill, NR, t);
            }
        }
    };
}
