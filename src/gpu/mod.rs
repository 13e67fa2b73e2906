//! The CUDA path (`--features cuda`, `--device cuda`): the same plans as the CPU, run with
//! cuBLAS for the products and NVRTC-compiled kernels (`kernels.cu`) for everything else.
//! cudarc loads the driver, cuBLAS and NVRTC at run time, and panics when a call reaches a
//! missing library, so `Gpu::open` probes for each before the first call.
//!
//! - `mod.rs`: the device (context, stream, cuBLAS, kernels), device tensors, launches, GEMM;
//! - `ops.rs`: forward and backward of each op the GPU runs;
//! - `exec.rs`: inference, and the recorded forward and reverse walk of a `GradPlan`;
//! - `train.rs`: the training step on the device (loss, transforms, optimizers).

mod exec;
mod ops;
mod train;

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, CudaView, CudaViewMut, LaunchArgs, LaunchConfig,
};

use crate::error::{Error, Result};
use crate::graph::ValueId;
use crate::tensor::Tensor;
pub use exec::{GradSession, Inference};
pub use train::{znorm_bench, GpuTrainer};

/// The kernels' source, compiled by NVRTC when the GPU is opened.
const KERNELS_CU: &str = include_str!("kernels.cu");

/// The kernels `kernels.cu` defines (`__global__ void NAME(`), each loaded once.
fn kernel_names(src: &str) -> impl Iterator<Item = &str> {
    src.split("__global__ void ").skip(1).filter_map(|rest| rest.split('(').next()).map(str::trim)
}

/// Device tensors bound to value ids (weights, constants, inputs).
pub type Bound = Vec<(ValueId, DTensor)>;

/// A device tensor: shape and a shared buffer (views such as Reshape share it).
#[derive(Clone)]
pub struct DTensor {
    pub shape: Vec<usize>,
    pub buf: Arc<CudaSlice<f32>>,
}

impl DTensor {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same storage under another shape (same element count).
    pub fn view(&self, shape: &[usize]) -> DTensor {
        debug_assert_eq!(shape.iter().product::<usize>(), self.len());
        DTensor { shape: shape.to_vec(), buf: self.buf.clone() }
    }
}

/// An open GPU: context, stream, cuBLAS handle and the compiled kernels.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    kernels: HashMap<&'static str, CudaFunction>,
}

/// A CUDA error as a runtime error that says what was being done.
trait OrFail<T> {
    fn or_fail(self, what: &str) -> Result<T>;
}

impl<T, E: std::fmt::Debug> OrFail<T> for std::result::Result<T, E> {
    fn or_fail(self, what: &str) -> Result<T> {
        self.map_err(|e| Error::Runtime(format!("CUDA: {what}: {e:?}")))
    }
}

/// Whether the driver, cuBLAS and NVRTC libraries can be loaded, and why not.
pub fn probe() -> std::result::Result<(), String> {
    // SAFETY: the probes only try to dlopen the libraries; nothing is called through them.
    let (driver, blas, nvrtc) = unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::cublas::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
        )
    };
    let missing: Vec<&str> =
        [(driver, "the NVIDIA driver (libcuda)"), (blas, "cuBLAS (libcublas)"), (nvrtc, "NVRTC (libnvrtc)")]
            .into_iter()
            .filter(|(ok, _)| !ok)
            .map(|(_, name)| name)
            .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("CUDA was not found: {} cannot be loaded on this machine", missing.join(", ")))
    }
}

impl Gpu {
    /// Opens GPU 0 and compiles the kernels; a clear error where there is no usable GPU.
    pub fn open() -> Result<Gpu> {
        probe().map_err(Error::Device)?;
        let ctx =
            CudaContext::new(0).map_err(|e| Error::Device(format!("CUDA was not found: no usable GPU ({e:?})")))?;
        // One stream: cudarc's per-buffer events (for ordering across streams) are not needed.
        // SAFETY: every launch and copy goes to the default stream, so work is ordered anyway.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).or_fail("cuBLAS handle")?;
        let opts = cudarc::nvrtc::CompileOptions { fmad: Some(false), ..Default::default() };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(KERNELS_CU, opts).or_fail("compiling kernels.cu")?;
        let module = ctx.load_module(ptx).or_fail("loading kernels")?;
        let mut kernels = HashMap::new();
        for name in kernel_names(KERNELS_CU) {
            kernels.insert(name, module.load_function(name).or_fail(name)?);
        }
        Ok(Gpu { ctx, stream, blas, kernels })
    }

    /// The GPU's name, e.g. "NVIDIA H200".
    pub fn name(&self) -> String {
        self.ctx.name().unwrap_or_else(|_| "unknown GPU".into())
    }

    pub fn upload(&self, t: &Tensor) -> Result<DTensor> {
        Ok(self.tensor(t.shape(), self.to_device(t.data())?))
    }

    /// Uploads bound values (a plan's weights and constants).
    pub fn upload_bound<'a>(&self, bound: impl Iterator<Item = &'a (ValueId, Tensor)>) -> Result<Bound> {
        bound.map(|(v, t)| Ok((*v, self.upload(t)?))).collect()
    }

    pub fn download(&self, t: &DTensor) -> Result<Tensor> {
        Ok(Tensor::from_vec(t.shape.clone(), self.to_host(&*t.buf)?))
    }

    pub fn to_host<T: cudarc::driver::DeviceRepr + Default + Clone>(&self, s: &CudaSlice<T>) -> Result<Vec<T>> {
        self.stream.clone_dtoh(s).or_fail("download")
    }

    pub fn to_device<T: cudarc::driver::DeviceRepr>(&self, v: &[T]) -> Result<CudaSlice<T>> {
        self.stream.clone_htod(v).or_fail("upload")
    }

    /// A zeroed device buffer.
    pub fn zeros<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        n: usize,
    ) -> Result<CudaSlice<T>> {
        self.stream.alloc_zeros::<T>(n.max(1)).or_fail("allocation")
    }

    pub fn tensor(&self, shape: &[usize], buf: CudaSlice<f32>) -> DTensor {
        DTensor { shape: shape.to_vec(), buf: Arc::new(buf) }
    }

    /// Waits for the queued work (timings, and errors of earlier launches).
    pub fn sync(&self) -> Result<()> {
        self.stream.synchronize().or_fail("synchronize")
    }

    /// A launch of kernel `name`; push its arguments, then `go`.
    fn launch(&self, name: &str) -> LaunchArgs<'_> {
        self.stream.launch_builder(&self.kernels[name])
    }

    /// Launches over `n` work items (the kernels loop grid-stride, so the grid is capped).
    fn go(&self, mut args: LaunchArgs<'_>, n: usize, what: &str) -> Result<()> {
        const BLOCK: u32 = 256;
        let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1 << 16) as u32;
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: each caller passes the argument list its kernel in kernels.cu declares, and
        // buffers at least as long as the indices the kernel derives from `n` and the shapes.
        unsafe { args.launch(cfg) }.map(drop).or_fail(what)
    }

    /// Row-major `C[m,n] = alpha·op(A)·op(B) + beta·C` for `batch` products, each operand at
    /// its own element stride (0: shared). `lda`, `ldb`: row lengths of A and B as stored.
    /// cuBLAS is column-major: a row-major matrix is its transpose there, so this computes
    /// Cᵀ = op(B)ᵀ·op(A)ᵀ.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        (ta, tb): (bool, bool),
        (m, n, k): (usize, usize, usize),
        alpha: f32,
        (a, lda): (&CudaView<f32>, usize),
        (b, ldb): (&CudaView<f32>, usize),
        beta: f32,
        c: &mut CudaViewMut<f32>,
        batch: usize,
        (sa, sb, sc): (usize, usize, usize),
    ) -> Result<()> {
        let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
        let int = |v: usize| i32::try_from(v).map_err(|_| Error::Runtime(format!("CUDA: GEMM size {v} over 2^31")));
        let gemm = GemmConfig {
            transa: op(tb),
            transb: op(ta),
            m: int(n)?,
            n: int(m)?,
            k: int(k)?,
            alpha,
            lda: int(ldb)?,
            ldb: int(lda)?,
            beta,
            ldc: int(n)?,
        };
        // SAFETY: the views hold the products' operands: callers size them from the same
        // (m, n, k), leading dimensions and strides.
        unsafe {
            if batch == 1 {
                self.blas.gemm(gemm, b, a, c).or_fail("GEMM")
            } else {
                let cfg = StridedBatchedConfig {
                    gemm,
                    batch_size: int(batch)?,
                    stride_a: sb as i64,
                    stride_b: sa as i64,
                    stride_c: sc as i64,
                };
                self.blas.gemm_strided_batched(cfg, b, a, c).or_fail("batched GEMM")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The names the Rust side launches (`launch("…")`, and the kernel-name arguments of
    /// `unary` and `chunk_kernel`) are exactly the kernels `kernels.cu` defines: a misspelt name
    /// would otherwise fail only on a GPU, and a kernel nothing launches is dead code.
    #[test]
    fn launched_kernels_are_the_defined_ones() {
        let defined: BTreeSet<&str> = super::kernel_names(super::KERNELS_CU).collect();
        let mut launched = BTreeSet::new();
        for src in [include_str!("ops.rs"), include_str!("exec.rs"), include_str!("train.rs")] {
            for call in ["launch(\"", "unary(\"", "chunk_kernel(\""] {
                launched.extend(src.split(call).skip(1).filter_map(|rest| rest.split('"').next()));
            }
        }
        assert_eq!(launched, defined);
    }
}
