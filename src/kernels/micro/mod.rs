//! The GEMM micro-kernels and their choice at run time.
//!
//! A micro-kernel updates one `mr × nr` tile of C from a `kc`-deep slice of an A panel (`mr` rows,
//! k-major) and of B (`kc` rows of `nr` floats, `ldb` apart): the contract of `KernelFn`. Each
//! kernel fixes its tile to its register file, so the packed layouts of `packed` depend on it and
//! every packed operand records the kernel it was packed for.
//!
//! The kernel is chosen once per process: the widest the CPU executes (`is_x86_feature_detected!`),
//! or the one `EDGETUNE_KERNEL` names (`avx512`, `avx2`, `portable`) to compare them. The x86
//! kernels are `#[target_feature]` functions, so one binary built for plain x86-64 runs the best
//! kernel of every machine.

use std::sync::OnceLock;

#[macro_use]
mod x86;
mod avx2;
mod avx512;
mod portable;

/// One tile update, `C[rows × cols] (+)= A_panel · B`: what a kernel is called with.
#[derive(Clone, Copy, Debug)]
pub struct Tile {
    /// Steps of k.
    pub kc: usize,
    /// The A panel slice: `kc · mr` floats, k-major.
    pub a: *const f32,
    /// `kc` rows of `nr` floats, `ldb` apart.
    pub b: *const f32,
    pub ldb: usize,
    /// `rows × cols` floats with row stride `ldc`.
    pub c: *mut f32,
    pub ldc: usize,
    pub rows: usize,
    pub cols: usize,
    /// Overwrite C instead of adding to it.
    pub fresh: bool,
}

/// A micro-kernel's code.
///
/// # Safety
/// The pointers of the tile address what its fields say; `rows ≤ mr`, `cols ≤ nr`; the CPU
/// supports the kernel (`MicroKernel::supported`).
pub type KernelFn = unsafe fn(tile: &Tile);

/// One micro-kernel: its tile, its K block and its code.
#[derive(Debug)]
pub struct MicroKernel {
    /// The name `EDGETUNE_KERNEL`, `edgetune --version` and the benchmarks use.
    pub name: &'static str,
    /// Rows of the C tile (the A panel's height).
    pub mr: usize,
    /// Columns of the C tile (the B panel's width).
    pub nr: usize,
    /// Depth of one pass over a B panel: `kc · nr` floats stay in L1 while every A panel streams by.
    pub kc: usize,
    /// The code for this CPU (a kernel with more than one build of its tile picks one here, once
    /// per GEMM rather than per tile).
    select: fn() -> KernelFn,
    supported: fn() -> bool,
}

impl MicroKernel {
    /// Whether this CPU executes the kernel's instructions.
    pub fn supported(&self) -> bool {
        (self.supported)()
    }

    /// The kernel's code (see `KernelFn` for its contract).
    pub fn code(&self) -> KernelFn {
        (self.select)()
    }
}

impl PartialEq for MicroKernel {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// Every kernel, best first.
pub static ALL: [&MicroKernel; 3] = [&avx512::KERNEL, &avx2::KERNEL, &portable::KERNEL];

/// The kernels this CPU executes, best first (the portable one always).
pub fn available() -> Vec<&'static MicroKernel> {
    ALL.iter().copied().filter(|k| k.supported()).collect()
}

/// The kernels this CPU cannot execute (the tests name what they skipped).
pub fn unavailable() -> Vec<&'static MicroKernel> {
    ALL.iter().copied().filter(|k| !k.supported()).collect()
}

/// The kernel `EDGETUNE_KERNEL` pins, `None` when it is unset or empty, or why it cannot run.
pub fn pinned() -> Result<Option<&'static MicroKernel>, String> {
    let Some(value) = std::env::var_os("EDGETUNE_KERNEL").filter(|v| !v.is_empty()) else { return Ok(None) };
    let names = || ALL.iter().map(|k| k.name).collect::<Vec<_>>().join(", ");
    let value = value.to_string_lossy();
    let kernel = ALL
        .iter()
        .find(|k| k.name == value)
        .ok_or_else(|| format!("EDGETUNE_KERNEL={value}: not a kernel (one of {})", names()))?;
    if !kernel.supported() {
        let here = available().iter().map(|k| k.name).collect::<Vec<_>>().join(", ");
        return Err(format!("EDGETUNE_KERNEL={value}: this CPU cannot run it (it runs {here})"));
    }
    Ok(Some(kernel))
}

/// The kernel of this process: the pinned one, else the best available. A pin this CPU cannot run
/// falls back to the best (the front ends refuse it first with `pinned`'s message).
pub fn active() -> &'static MicroKernel {
    static ACTIVE: OnceLock<&'static MicroKernel> = OnceLock::new();
    ACTIVE.get_or_init(|| pinned().ok().flatten().unwrap_or(available()[0]))
}

/// One line naming the active kernel, whether it was pinned, and what this CPU runs (for
/// `edgetune --version` and the benchmarks' text output).
pub fn describe() -> String {
    let here = available().iter().map(|k| k.name).collect::<Vec<_>>().join(", ");
    let how = if matches!(pinned(), Ok(Some(_))) { "pinned by EDGETUNE_KERNEL" } else { "the best this CPU runs" };
    format!("kernel {} ({how}; this CPU runs {here})", active().name)
}

/// Writes a finished tile held in `acc` (row-major, `nr` floats per row) into C, clipped to
/// `rows × cols`: the edge tiles of every kernel (their full tiles store straight from registers).
///
/// # Safety
/// As `KernelFn` for the tile's C; `acc` holds `rows` rows of `nr` floats.
#[inline(always)]
unsafe fn store_clipped(acc: &[f32], nr: usize, t: &Tile) {
    for r in 0..t.rows {
        let src = &acc[r * nr..r * nr + t.cols];
        let dst = std::slice::from_raw_parts_mut(t.c.add(r * t.ldc), t.cols);
        if t.fresh {
            dst.copy_from_slice(src);
        } else {
            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
        }
    }
}

/// The scalar definition every kernel is tested against, for a tile of any `mr`.
///
/// # Safety
/// As `KernelFn`, for the given `mr`.
#[cfg(test)]
pub unsafe fn reference(mr: usize, t: &Tile) {
    for r in 0..t.rows {
        for j in 0..t.cols {
            let mut s = 0.0f64;
            for kk in 0..t.kc {
                s += *t.a.add(kk * mr + r) as f64 * *t.b.add(kk * t.ldb + j) as f64;
            }
            let cp = t.c.add(r * t.ldc + j);
            *cp = if t.fresh { s as f32 } else { *cp + s as f32 };
        }
    }
}

/// Runs a test body once per kernel this CPU executes and prints the kernels it skipped.
#[cfg(test)]
pub fn for_each_kernel(mut body: impl FnMut(&'static MicroKernel)) {
    for k in unavailable() {
        eprintln!("skipped the {} kernel: this CPU cannot run it", k.name);
    }
    for k in available() {
        body(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kernel_matches_the_scalar_definition_on_every_tile_shape() {
        for_each_kernel(|kern| {
            let (mr, nr) = (kern.mr, kern.nr);
            for kc in [0, 1, 7, kern.kc] {
                // Small integers: every product and sum is exact in f32, so results compare equal.
                let a: Vec<f32> = (0..kc * mr).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
                let ldb = nr + 5;
                let b: Vec<f32> = (0..kc.max(1) * ldb).map(|i| ((i * 104729) % 11) as f32 - 5.0).collect();
                for (rows, cols) in [(mr, nr), (1, 1), (mr - 1, nr), (mr, nr - 3), (2, 5)] {
                    for fresh in [true, false] {
                        let ldc = nr + 3;
                        let mut got = vec![1.5f32; mr * ldc];
                        let mut want = got.clone();
                        let (a, b) = (a.as_ptr(), b.as_ptr());
                        let tile = |c| Tile { kc, a, b, ldb, c, ldc, rows, cols, fresh };
                        // SAFETY: buffers sized for the tile, its strides and kc; kernel supported.
                        unsafe {
                            kern.code()(&tile(got.as_mut_ptr()));
                            reference(mr, &tile(want.as_mut_ptr()));
                        }
                        assert_eq!(got, want, "{} kc {kc} tile {rows}x{cols} fresh {fresh}", kern.name);
                    }
                }
            }
        });
    }

    #[test]
    fn a_pin_names_a_kernel_and_the_best_is_first() {
        assert!(available().contains(&&portable::KERNEL), "the portable kernel runs everywhere");
        assert_eq!(available().len() + unavailable().len(), ALL.len());
        if std::env::var_os("EDGETUNE_KERNEL").is_none_or(|v| v.is_empty()) {
            assert_eq!(active(), available()[0]);
        }
    }
}
