//! Where the work runs: `--device cpu` (default) or `--device cuda` (the optional CUDA path,
//! built with `--features cuda`). A build without the feature, or a machine without a driver or
//! GPU, answers `--device cuda` with one line that says CUDA was not found (exit 2).

use crate::error::{Error, Result};

crate::choices::choices! {
    /// Where the work runs.
    pub enum Device (default Cpu) {
        /// edgetune's own CPU kernels.
        Cpu = "cpu",
        /// An NVIDIA GPU through CUDA (cuBLAS and NVRTC-compiled kernels).
        Cuda = "cuda",
    }
}

/// "2 threads, avx512 kernel": how CPU work runs, for reports.
pub fn describe_cpu(threads: usize) -> String {
    format!("{threads} threads, {} kernel", crate::kernels::micro::active().name)
}

/// Why `--device cuda` cannot run here, or `None` when it can be tried (the libraries load; the
/// GPU itself is checked when it is opened).
pub fn cuda_unavailable() -> Option<String> {
    #[cfg(feature = "cuda")]
    {
        crate::gpu::probe().err()
    }
    #[cfg(not(feature = "cuda"))]
    {
        Some("CUDA was not found: this edgetune was built without it (build with `--features cuda`)".into())
    }
}

/// Fails with that one-line error when `device` is CUDA and CUDA cannot run here.
pub fn check(device: Device) -> Result<()> {
    match device {
        Device::Cuda => cuda_unavailable().map_or(Ok(()), |why| Err(Error::Device(why))),
        Device::Cpu => Ok(()),
    }
}

/// A model ready to run where `--device` says (what `infer` and `bench infer` use).
pub enum Runner {
    Cpu(crate::exec::Session),
    #[cfg(feature = "cuda")]
    Cuda(Box<crate::gpu::Inference>),
}

impl Runner {
    /// `threads` applies to the CPU (0: one per core).
    pub fn new(graph: crate::graph::Graph, device: Device, threads: usize) -> Result<Runner> {
        check(device)?;
        match device {
            Device::Cpu => Ok(Runner::Cpu(crate::exec::Session::new(graph, threads)?)),
            #[cfg(feature = "cuda")]
            Device::Cuda => Ok(Runner::Cuda(Box::new(crate::gpu::Inference::new(graph)?))),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda => unreachable!("`check` refuses CUDA in a build without it"),
        }
    }

    pub fn graph(&self) -> &crate::graph::Graph {
        match self {
            Runner::Cpu(s) => s.graph(),
            #[cfg(feature = "cuda")]
            Runner::Cuda(g) => g.graph(),
        }
    }

    /// Every graph output for `inputs` (one per graph input), on the host.
    pub fn run(&mut self, inputs: Vec<crate::tensor::Tensor>) -> Result<Vec<crate::tensor::Tensor>> {
        match self {
            Runner::Cpu(s) => s.run(inputs),
            #[cfg(feature = "cuda")]
            Runner::Cuda(g) => g.run(inputs),
        }
    }

    /// "4 threads" or the GPU's name, for reports.
    pub fn describe(&self) -> String {
        match self {
            Runner::Cpu(s) => describe_cpu(s.threads()),
            #[cfg(feature = "cuda")]
            Runner::Cuda(g) => g.gpu().name(),
        }
    }
}

/// `edgetune grad` on the GPU: the loss and the gradient of each trainable initializer.
pub fn gradients_cuda(
    graph: &crate::graph::Graph,
    x: crate::tensor::Tensor,
    labels: &[i64],
    trainable: &[bool],
    bn: crate::autodiff::BnMode,
) -> Result<(f32, Vec<crate::tensor::Tensor>)> {
    check(Device::Cuda)?;
    #[cfg(feature = "cuda")]
    return crate::gpu::GradSession::new(graph, x.shape(), trainable, bn)?.gradients(&x, labels);
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (graph, x, labels, trainable, bn);
        unreachable!("`check` refuses CUDA in a build without it")
    }
}

/// `bench znorm --device cuda`: median milliseconds over the same shapes as the CPU rows.
pub struct ZnormTimes {
    pub gpu: String,
    /// A plain read-and-write sweep of every gradient (into a second buffer): the floor.
    pub floor_ms: f64,
    /// ZNorm: the statistics on the device, then the normalised gradients written out.
    pub znorm_ms: f64,
    /// ZNorm's statistics, then the fused Adam step (reads g, p, m, v; writes p, m, v).
    pub znorm_adam_ms: f64,
}

/// Times ZNorm and ZNorm + Adam on the GPU over tensors of `sizes`.
pub fn znorm_bench_cuda(sizes: &[usize], iters: usize) -> Result<ZnormTimes> {
    check(Device::Cuda)?;
    #[cfg(feature = "cuda")]
    return crate::gpu::znorm_bench(sizes, iters);
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (sizes, iters);
        unreachable!("`check` refuses CUDA in a build without it")
    }
}
