//! Forward and backward of each op the GPU runs, with the CPU rules' semantics (the ops' own
//! files say what those are): Conv (im2col + cuBLAS, dW and dx from recomputed columns),
//! BatchNormalization (batch statistics in double, running statistics updated as PyTorch),
//! Relu, Add, MaxPool, GlobalAveragePool, Gemm, Softmax (inference), Transpose, Pad and the
//! views.

use std::any::Any;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaView, DeviceRepr, PushKernelArg};

use super::{DTensor, Gpu};
use crate::error::{Error, Result};
use crate::kernels::pool::Pool;
use crate::kernels::simd::Arith;
use crate::ops::window::{Geometry, Window};
use crate::ops::{
    BatchNorm, Binary, Conv, Gemm, GlobalAveragePool, Identity, Op, Pad, PadMode, Pooling, Relu, Reshape, Saves,
    Softmax, Transpose,
};
use crate::tensor::strides;

/// Columns of im2col kept at once (floats): 256 MiB, images processed in chunks below it.
const COLS_BUDGET: usize = 64 << 20;

/// An op as the GPU runs it.
pub enum GOp {
    Conv {
        window: Window,
        bias: bool,
    },
    BatchNorm(BatchNorm),
    Relu,
    Add,
    MaxPool(Window),
    GlobalAveragePool,
    /// Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout: the same storage.
    View,
    Gemm(Gemm),
    /// Inference only, over the last axis.
    Softmax(Softmax),
    Transpose(Transpose),
    /// Constant padding (negative pads crop).
    Pad(Pad),
}

const SUPPORTED: &str =
    "the GPU runs Conv (group 1), BatchNormalization, Relu, Add, MaxPool, GlobalAveragePool, Gemm, \
     Softmax, Transpose, Pad and the reshapes";

impl GOp {
    /// The GPU form of a planned op, or why it has none.
    pub fn of(op: &dyn Op, n_inputs: usize) -> Result<GOp, String> {
        let any: &dyn Any = op;
        if let Some(c) = any.downcast_ref::<Conv>() {
            if c.groups != 1 {
                return Err(format!("grouped convolution (group={}) does not run on the GPU; {SUPPORTED}", c.groups));
            }
            return Ok(GOp::Conv { window: c.window.clone(), bias: n_inputs > 2 });
        }
        if let Some(b) = any.downcast_ref::<BatchNorm>() {
            return Ok(GOp::BatchNorm(b.clone()));
        }
        if any.is::<Relu>() {
            return Ok(GOp::Relu);
        }
        if let Some(Binary { op: Arith::Add, relu: false }) = any.downcast_ref::<Binary>() {
            return Ok(GOp::Add);
        }
        if let Some(Pooling { window, kind: Pool::Max }) = any.downcast_ref::<Pooling>() {
            return Ok(GOp::MaxPool(window.clone()));
        }
        if any.is::<GlobalAveragePool>() {
            return Ok(GOp::GlobalAveragePool);
        }
        if any.is::<Reshape>() || any.is::<Identity>() {
            return Ok(GOp::View);
        }
        if let Some(g) = any.downcast_ref::<Gemm>() {
            return Ok(GOp::Gemm(g.clone()));
        }
        if let Some(s) = any.downcast_ref::<Softmax>() {
            return Ok(GOp::Softmax(s.clone()));
        }
        if let Some(t) = any.downcast_ref::<Transpose>() {
            return Ok(GOp::Transpose(t.clone()));
        }
        if let Some(p) = any.downcast_ref::<Pad>() {
            if p.mode() != PadMode::Constant {
                return Err(format!("Pad mode '{}' does not run on the GPU (only 'constant')", p.mode().name()));
            }
            return Ok(GOp::Pad(p.clone()));
        }
        Err(format!("this op does not run on the GPU; {SUPPORTED}"))
    }
}

/// A device buffer kept for the backward pass.
type Shared = Arc<CudaSlice<f32>>;

/// What a forward pass leaves for the backward rule, beyond the saved inputs and output.
#[derive(Default)]
pub struct Extra {
    /// BatchNorm in training: inv_std and shift per channel.
    pub stats: Option<(Shared, Shared)>,
    /// MaxPool: the index of each output's maximum in its plane.
    pub argmax: Option<Arc<CudaSlice<i32>>>,
}

pub struct GForward {
    pub y: DTensor,
    pub extra: Extra,
    /// New values of some inputs (BatchNorm's running statistics), by input slot.
    pub updates: Vec<(usize, DTensor)>,
}

/// What the forward pass kept of one step.
pub struct GRecord {
    pub inputs: Vec<Option<DTensor>>,
    pub shapes: Vec<Vec<usize>>,
    pub output: Option<DTensor>,
    pub extra: Extra,
}

impl GRecord {
    pub fn new(saves: Saves, args: &[&DTensor], y: &DTensor, extra: Extra) -> GRecord {
        GRecord {
            inputs: saves.pick(args),
            shapes: args.iter().map(|t| t.shape.clone()).collect(),
            output: saves.output.then(|| y.clone()),
            extra,
        }
    }

    fn input(&self, i: usize) -> &DTensor {
        self.inputs[i].as_ref().expect("backward read an input its op did not save")
    }
}

/// Window geometry as the kernels take it (`struct Geo` in kernels.cu).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Geo {
    channels: i32,
    h: i32,
    w: i32,
    kh: i32,
    kw: i32,
    sh: i32,
    sw: i32,
    ph: i32,
    pw: i32,
    dh: i32,
    dw: i32,
    oh: i32,
    ow: i32,
}

// SAFETY: a plain #[repr(C)] struct of i32, laid out as `struct Geo` in kernels.cu.
unsafe impl DeviceRepr for Geo {}

impl Geo {
    fn new(channels: usize, g: &Geometry) -> Geo {
        let i = |v: usize| v as i32;
        Geo {
            channels: i(channels),
            h: i(g.in_hw[0]),
            w: i(g.in_hw[1]),
            kh: i(g.kernel[0]),
            kw: i(g.kernel[1]),
            sh: i(g.strides[0]),
            sw: i(g.strides[1]),
            ph: i(g.pads[0]),
            pw: i(g.pads[1]),
            dh: i(g.dilations[0]),
            dw: i(g.dilations[1]),
            oh: i(g.out_hw[0]),
            ow: i(g.out_hw[1]),
        }
    }
}

/// A strided re-layout as `gather_nd` takes it (`struct Nd` in kernels.cu).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Nd {
    rank: i32,
    /// The C struct's padding before the 8-byte arrays, written out.
    _pad: i32,
    dims: [i64; MAX_RANK],
    strides: [i64; MAX_RANK],
    begin: [i64; MAX_RANK],
    src_dims: [i64; MAX_RANK],
}

// SAFETY: #[repr(C)], two i32 and four i64 arrays, laid out as `struct Nd` in kernels.cu (int,
// 4 bytes of padding, then the arrays); the sizes are checked below.
unsafe impl DeviceRepr for Nd {}

const _: () = assert!(std::mem::size_of::<Nd>() == 8 + 4 * 8 * MAX_RANK && std::mem::size_of::<Geo>() == 13 * 4);

const MAX_RANK: usize = 6;

impl Gpu {
    /// A tensor of `shape` whose coordinate c_k reads `x` at c_k − begin_k along a source axis
    /// of `strides[k]` and length `src_dims[k]`, `value` outside it.
    fn gather(
        &self,
        x: &DTensor,
        shape: &[usize],
        strides: &[usize],
        begin: &[i64],
        src_dims: &[usize],
        value: f32,
    ) -> Result<DTensor> {
        if shape.len() > MAX_RANK {
            return Err(Error::Runtime(format!("rank {} over {MAX_RANK} does not run on the GPU", shape.len())));
        }
        let mut nd = Nd { rank: shape.len() as i32, ..Nd::default() };
        for k in 0..shape.len() {
            (nd.dims[k], nd.strides[k], nd.begin[k], nd.src_dims[k]) =
                (shape[k] as i64, strides[k] as i64, begin[k], src_dims[k] as i64);
        }
        let n = shape.iter().product::<usize>();
        let mut y = self.zeros::<f32>(n)?;
        let nn = n as i64;
        let mut l = self.launch("gather_nd");
        l.arg(&*x.buf).arg(&mut y).arg(&nd).arg(&value).arg(&nn);
        self.go(l, n, "re-layout")?;
        Ok(self.tensor(shape, y))
    }

    /// `x` with its axes permuted: output axis k is input axis `perm[k]`.
    fn permute(&self, x: &DTensor, perm: &[usize]) -> Result<DTensor> {
        let strides = strides(&x.shape);
        let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
        let src: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
        self.gather(x, &shape, &src, &vec![0; perm.len()], &shape, 0.0)
    }
}

fn geometry(window: &Window, x: &[usize]) -> Result<Geo> {
    Ok(Geo::new(x[1], &window_geometry(window, x)?))
}

fn window_geometry(window: &Window, x: &[usize]) -> Result<Geometry> {
    window.geometry([x[2], x[3]]).map_err(Error::Runtime)
}

impl Gpu {
    /// Per-channel sums over `[batch, channels, plane]` data (mode as `channel_partials`), in
    /// double: one strided partial per (channel, part), then the parts in order.
    #[allow(clippy::too_many_arguments)]
    fn channel_sums(
        &self,
        mode: i32,
        a: &CudaSlice<f32>,
        b: Option<&CudaSlice<f32>>,
        mean: Option<&CudaSlice<f64>>,
        sh: Option<(&CudaSlice<f32>, &CudaSlice<f32>)>,
        shape: &[usize],
        scale: f64,
    ) -> Result<CudaSlice<f64>> {
        let (batch, channels, plane) = (shape[0], shape[1], shape[2..].iter().product::<usize>());
        let parts = (batch * plane / 256).clamp(1, 256);
        let mut part = self.zeros::<f64>(channels * parts)?;
        // Unused pointer arguments get any valid buffer of their type.
        let dummy64 = self.zeros::<f64>(1)?;
        let (s, h) = sh.unwrap_or((a, a));
        let (batch_i, channels_i, plane_i, parts_i) = (batch as i32, channels as i32, plane as i64, parts as i32);
        let mut l = self.launch("channel_partials");
        l.arg(a).arg(b.unwrap_or(a)).arg(mean.unwrap_or(&dummy64)).arg(s).arg(h).arg(&mut part);
        l.arg(&mode).arg(&batch_i).arg(&channels_i).arg(&plane_i).arg(&parts_i);
        self.go(l, channels * parts, "channel sums")?;
        let mut out = self.zeros::<f64>(channels)?;
        let mut l = self.launch("sum_parts");
        l.arg(&part).arg(&mut out).arg(&scale).arg(&channels_i).arg(&parts_i);
        self.go(l, channels, "channel sums")?;
        Ok(out)
    }

    /// `channel_sums` unscaled, rounded to f32 (what the backward rules use, as the CPU's).
    fn channel_totals(
        &self,
        mode: i32,
        a: &CudaSlice<f32>,
        b: Option<&CudaSlice<f32>>,
        sh: Option<(&CudaSlice<f32>, &CudaSlice<f32>)>,
        shape: &[usize],
    ) -> Result<CudaSlice<f32>> {
        let sums = self.channel_sums(mode, a, b, None, sh, shape, 1.0)?;
        let c = shape[1];
        let mut y = self.zeros::<f32>(c)?;
        let ci = c as i32;
        let mut l = self.launch("to_f32");
        l.arg(&sums).arg(&mut y).arg(&ci);
        self.go(l, c, "to f32")?;
        Ok(y)
    }

    /// `y[i] = c[(i / div) % modulo]` over `n` elements.
    fn broadcast(&self, c: &CudaSlice<f32>, y: &mut CudaSlice<f32>, div: usize, modulo: usize, n: usize) -> Result<()> {
        let (d, m, nn) = (div as i64, modulo as i64, n as i64);
        let mut l = self.launch("broadcast");
        l.arg(c).arg(y).arg(&d).arg(&m).arg(&nn);
        self.go(l, n, "broadcast")
    }

    /// Elementwise kernel `name(x, y, n)` into a new tensor of `shape`.
    fn unary(&self, name: &str, x: &CudaSlice<f32>, shape: &[usize]) -> Result<DTensor> {
        let n = shape.iter().product::<usize>();
        let mut y = self.zeros::<f32>(n)?;
        let nn = n as i64;
        let mut l = self.launch(name);
        l.arg(x).arg(&mut y).arg(&nn);
        self.go(l, n, name)?;
        Ok(self.tensor(shape, y))
    }

    /// `a + b` (same shapes) into a new tensor: gradients add up here.
    pub fn add(&self, a: &DTensor, b: &DTensor) -> Result<DTensor> {
        let n = a.len();
        let mut y = self.zeros::<f32>(n)?;
        let nn = n as i64;
        let mut l = self.launch("add");
        l.arg(&*a.buf).arg(&*b.buf).arg(&mut y).arg(&nn);
        self.go(l, n, "add")?;
        Ok(self.tensor(&a.shape, y))
    }

    /// `name(src, dst, geo, n0, n)` over `n` elements of images from `n0` (im2col, col2im).
    fn chunk_kernel(
        &self,
        name: &str,
        src: &CudaSlice<f32>,
        dst: &mut CudaSlice<f32>,
        geo: Geo,
        n0: usize,
        n: usize,
    ) -> Result<()> {
        let (first, nn) = (n0 as i32, n as i64);
        let mut l = self.launch(name);
        l.arg(src).arg(dst).arg(&geo).arg(&first).arg(&nn);
        self.go(l, n, name)
    }

    fn batchnorm_frozen(
        &self,
        bn: &BatchNorm,
        mean: &DTensor,
        var: &DTensor,
    ) -> Result<(CudaSlice<f32>, CudaSlice<f32>)> {
        let c = mean.len();
        let (mut inv, mut shift) = (self.zeros::<f32>(c)?, self.zeros::<f32>(c)?);
        let ci = c as i32;
        let mut l = self.launch("batchnorm_frozen");
        l.arg(&*mean.buf).arg(&*var.buf).arg(&bn.epsilon).arg(&mut inv).arg(&mut shift).arg(&ci);
        self.go(l, c, "BatchNorm statistics")?;
        Ok((inv, shift))
    }
}

impl GOp {
    /// The forward pass; `training` selects batch statistics for a BatchNorm planned in train mode.
    pub fn forward(&self, gpu: &Gpu, x: &[&DTensor], out_shape: &[usize], training: bool) -> Result<GForward> {
        let plain = |y| Ok(GForward { y, extra: Extra::default(), updates: Vec::new() });
        let n_out = out_shape.iter().product::<usize>();
        match self {
            GOp::Conv { window, bias } => plain(conv_forward(gpu, window, x[0], x[1], bias.then(|| x[2]), out_shape)?),
            GOp::BatchNorm(bn) => batchnorm_forward(gpu, bn, x, training && bn.training),
            GOp::Relu => plain(gpu.unary("relu_forward", &x[0].buf, out_shape)?),
            GOp::Add => {
                if x[0].shape != x[1].shape {
                    return Err(Error::Runtime(format!(
                        "Add of {:?} and {:?} (broadcasting) does not run on the GPU",
                        x[0].shape, x[1].shape
                    )));
                }
                plain(gpu.add(x[0], x[1])?)
            }
            GOp::MaxPool(window) => {
                let geo = geometry(window, &x[0].shape)?;
                let (mut y, mut arg) = (gpu.zeros::<f32>(n_out)?, gpu.zeros::<i32>(n_out)?);
                let nn = n_out as i64;
                let mut l = gpu.launch("maxpool_forward");
                l.arg(&*x[0].buf).arg(&mut y).arg(&mut arg).arg(&geo).arg(&nn);
                gpu.go(l, n_out, "MaxPool")?;
                let extra = Extra { argmax: Some(Arc::new(arg)), ..Extra::default() };
                Ok(GForward { y: gpu.tensor(out_shape, y), extra, updates: Vec::new() })
            }
            GOp::GlobalAveragePool => {
                let plane = x[0].len() / n_out.max(1);
                let mut y = gpu.zeros::<f32>(n_out)?;
                let (p, planes) = (plane as i64, n_out as i64);
                let mut l = gpu.launch("plane_means");
                l.arg(&*x[0].buf).arg(&mut y).arg(&p).arg(&planes);
                gpu.go(l, n_out, "GlobalAveragePool")?;
                plain(gpu.tensor(out_shape, y))
            }
            GOp::View => plain(x[0].view(out_shape)),
            GOp::Gemm(g) => plain(gemm_forward(gpu, g, x, out_shape)?),
            GOp::Transpose(t) => {
                let perm = t.perm(x[0].shape.len()).map_err(Error::Runtime)?;
                plain(gpu.permute(x[0], &perm)?)
            }
            GOp::Pad(p) => {
                let (before, _) = p.amounts(x[0].shape.len()).map_err(Error::Runtime)?;
                let begin: Vec<i64> = before.iter().map(|&b| b as i64).collect(); // negative: a crop
                plain(gpu.gather(x[0], out_shape, &strides(&x[0].shape), &begin, &x[0].shape, p.value())?)
            }
            GOp::Softmax(s) => {
                let (outer, len, inner) = s.split(&x[0].shape).map_err(Error::Runtime)?;
                if inner != 1 {
                    return Err(Error::Runtime("Softmax over a non-last axis does not run on the GPU".into()));
                }
                let mut y = gpu.zeros::<f32>(n_out)?;
                let (rows, k) = (outer as i32, len as i32);
                let mut l = gpu.launch("softmax_rows");
                l.arg(&*x[0].buf).arg(&mut y).arg(&rows).arg(&k);
                gpu.go(l, outer, "Softmax")?;
                plain(gpu.tensor(out_shape, y))
            }
        }
    }

    /// Gradients of the inputs from the output's gradient `dy`; entry i only where `need[i]`.
    pub fn backward(&self, gpu: &Gpu, rec: &GRecord, dy: &DTensor, need: &[bool]) -> Result<Vec<Option<DTensor>>> {
        let in_shape = &rec.shapes[0];
        let n_in = in_shape.iter().product::<usize>();
        match self {
            GOp::Conv { window, .. } => conv_backward(gpu, window, rec, dy, need),
            GOp::BatchNorm(bn) => batchnorm_backward(gpu, bn, rec, dy, need),
            GOp::Relu => {
                let y = rec.output.as_ref().expect("Relu saves its output");
                let mut dx = gpu.zeros::<f32>(n_in)?;
                let nn = n_in as i64;
                let mut l = gpu.launch("relu_backward");
                l.arg(&*dy.buf).arg(&*y.buf).arg(&mut dx).arg(&nn);
                gpu.go(l, n_in, "Relu backward")?;
                Ok(vec![Some(gpu.tensor(in_shape, dx))])
            }
            GOp::Add => Ok(need.iter().map(|&n| n.then(|| dy.clone())).collect()),
            GOp::MaxPool(window) => {
                let geo = geometry(window, in_shape)?;
                let arg = rec.extra.argmax.as_ref().expect("MaxPool keeps its argmax");
                let mut dx = gpu.zeros::<f32>(n_in)?;
                let nn = n_in as i64;
                let mut l = gpu.launch("maxpool_backward");
                l.arg(&*dy.buf).arg(&**arg).arg(&mut dx).arg(&geo).arg(&nn);
                gpu.go(l, n_in, "MaxPool backward")?;
                Ok(vec![Some(gpu.tensor(in_shape, dx))])
            }
            GOp::GlobalAveragePool => {
                let plane = n_in / dy.len().max(1);
                let mut dx = gpu.zeros::<f32>(n_in)?;
                let (p, nn) = (plane as i64, n_in as i64);
                let mut l = gpu.launch("plane_means_backward");
                l.arg(&*dy.buf).arg(&mut dx).arg(&p).arg(&nn);
                gpu.go(l, n_in, "GlobalAveragePool backward")?;
                Ok(vec![Some(gpu.tensor(in_shape, dx))])
            }
            GOp::View => Ok(vec![Some(dy.view(in_shape))]),
            GOp::Gemm(g) => gemm_backward(gpu, g, rec, dy, need),
            GOp::Softmax(_) => Err(Error::Runtime("Softmax inside the network has no GPU backward rule".into())),
            // dx = dy transposed back.
            GOp::Transpose(t) => {
                let inverse = t.inverse(in_shape.len()).map_err(Error::Runtime)?;
                Ok(vec![Some(gpu.permute(dy, &inverse)?)])
            }
            // dx = the unpadded part of dy.
            GOp::Pad(p) => {
                let (before, _) = p.amounts(in_shape.len()).map_err(Error::Runtime)?;
                let begin: Vec<i64> = before.iter().map(|&b| -(b as i64)).collect();
                Ok(vec![Some(gpu.gather(dy, in_shape, &strides(&dy.shape), &begin, &dy.shape, 0.0)?)])
            }
        }
    }
}

fn conv_forward(
    gpu: &Gpu,
    window: &Window,
    x: &DTensor,
    w: &DTensor,
    bias: Option<&DTensor>,
    out_shape: &[usize],
) -> Result<DTensor> {
    let g = window_geometry(window, &x.shape)?;
    let (geo, pointwise) = (Geo::new(x.shape[1], &g), g.is_pointwise());
    let (n, m) = (x.shape[0], w.shape[0]);
    let (k, p) = (w.len() / m, out_shape[2] * out_shape[3]);
    let mut y = gpu.zeros::<f32>(n * m * p)?;
    if let Some(b) = bias {
        gpu.broadcast(&b.buf, &mut y, p, m, n * m * p)?;
    }
    let beta = if bias.is_some() { 1.0 } else { 0.0 };
    let wv = w.buf.slice(..);
    let chunk = chunk_images(pointwise, n, k * p);
    let mut cols = column_buffer(gpu, pointwise, chunk * k * p)?;
    for n0 in (0..n).step_by(chunk) {
        let cnt = chunk.min(n - n0);
        let cv = columns(gpu, x, cols.as_mut(), geo, n0, cnt, k * p)?;
        let mut yv = y.slice_mut(n0 * m * p..(n0 + cnt) * m * p);
        gpu.gemm((false, false), (m, p, k), 1.0, (&wv, k), (&cv, p), beta, &mut yv, cnt, (0, k * p, m * p))?;
    }
    Ok(gpu.tensor(out_shape, y))
}

/// Images per chunk: all for a pointwise window (no columns are made), else as many as fit
/// `COLS_BUDGET` with `per_image` column values each.
fn chunk_images(pointwise: bool, n: usize, per_image: usize) -> usize {
    if pointwise {
        n
    } else {
        (COLS_BUDGET / per_image.max(1)).clamp(1, n)
    }
}

/// A buffer for `len` column values, or none for a pointwise window.
fn column_buffer(gpu: &Gpu, pointwise: bool, len: usize) -> Result<Option<CudaSlice<f32>>> {
    (!pointwise).then(|| gpu.zeros::<f32>(len)).transpose()
}

/// The columns of images `[n0, n0 + cnt)`, `per_image` values each: im2col into `cols`, or the
/// input itself for a pointwise window (`cols` none; then `per_image` is the input's image size).
fn columns<'a>(
    gpu: &Gpu,
    x: &'a DTensor,
    cols: Option<&'a mut CudaSlice<f32>>,
    geo: Geo,
    n0: usize,
    cnt: usize,
    per_image: usize,
) -> Result<CudaView<'a, f32>> {
    match cols {
        Some(cols) => {
            gpu.chunk_kernel("im2col", &x.buf, cols, geo, n0, cnt * per_image)?;
            Ok(cols.slice(..cnt * per_image))
        }
        None => Ok(x.buf.slice(n0 * per_image..(n0 + cnt) * per_image)),
    }
}

/// dW = Σₙ dYₙ·colsₙᵀ, dX = col2im(Wᵀ·dYₙ), db = Σ dy per channel.
fn conv_backward(
    gpu: &Gpu,
    window: &Window,
    rec: &GRecord,
    dy: &DTensor,
    need: &[bool],
) -> Result<Vec<Option<DTensor>>> {
    let (x, w) = (rec.input(0), rec.input(1));
    let g = window_geometry(window, &x.shape)?;
    let (geo, pointwise) = (Geo::new(x.shape[1], &g), g.is_pointwise());
    let (n, c, m) = (x.shape[0], x.shape[1], w.shape[0]);
    let (k, p) = (w.len() / m, dy.shape[2] * dy.shape[3]);
    let hw = x.shape[2] * x.shape[3];
    let wv = w.buf.slice(..);
    let mut dx = if need[0] { Some(gpu.zeros::<f32>(x.len())?) } else { None };
    let mut dw = if need[1] { Some(gpu.zeros::<f32>(w.len())?) } else { None };
    let chunk = chunk_images(pointwise, n, k * p);
    let mut cols = if dw.is_some() { column_buffer(gpu, pointwise, chunk * k * p)? } else { None };
    let mut dcols = if dx.is_some() { column_buffer(gpu, pointwise, chunk * k * p)? } else { None };
    for n0 in (0..n).step_by(chunk) {
        let cnt = chunk.min(n - n0);
        let dyv = dy.buf.slice(n0 * m * p..(n0 + cnt) * m * p);
        if let Some(dw) = dw.as_mut() {
            let colv = columns(gpu, x, cols.as_mut(), geo, n0, cnt, k * p)?;
            for i in 0..cnt {
                let (d, cl) = (dyv.slice(i * m * p..(i + 1) * m * p), colv.slice(i * k * p..(i + 1) * k * p));
                let beta = if n0 + i == 0 { 0.0 } else { 1.0 };
                let mut dwv = dw.slice_mut(..);
                gpu.gemm((false, true), (m, k, p), 1.0, (&d, p), (&cl, p), beta, &mut dwv, 1, (0, 0, 0))?;
            }
        }
        if let Some(dx) = dx.as_mut() {
            // Wᵀ·dYₙ: the columns' gradient, folded back by col2im; dx itself for a pointwise window.
            let mut target = match dcols.as_mut() {
                Some(dcols) => dcols.slice_mut(..cnt * k * p),
                None => dx.slice_mut(n0 * c * hw..(n0 + cnt) * c * hw),
            };
            gpu.gemm((true, false), (k, p, m), 1.0, (&wv, k), (&dyv, p), 0.0, &mut target, cnt, (0, m * p, k * p))?;
            if let Some(dcols) = dcols.as_ref() {
                gpu.chunk_kernel("col2im", dcols, dx, geo, n0, cnt * c * hw)?;
            }
        }
    }
    let mut out = vec![dx.map(|d| gpu.tensor(&x.shape, d)), dw.map(|d| gpu.tensor(&w.shape, d))];
    if rec.shapes.len() > 2 {
        let db =
            if need[2] { Some(gpu.tensor(&[m], gpu.channel_totals(0, &dy.buf, None, None, &dy.shape)?)) } else { None };
        out.push(db);
    }
    Ok(out)
}

fn batchnorm_forward(gpu: &Gpu, bn: &BatchNorm, x: &[&DTensor], batch_stats: bool) -> Result<GForward> {
    let shape = &x[0].shape;
    let (c, n) = (shape[1], x[0].len());
    let (ci, plane, nn) = (c as i32, (n / (shape[0] * c).max(1)) as i64, n as i64);
    let mut y = gpu.zeros::<f32>(n)?;
    if !batch_stats {
        // The running statistics folded into one scale and shift, as the CPU's inference form.
        let (mut scale, mut shift) = (gpu.zeros::<f32>(c)?, gpu.zeros::<f32>(c)?);
        let mut l = gpu.launch("batchnorm_fold");
        l.arg(&*x[1].buf).arg(&*x[2].buf).arg(&*x[3].buf).arg(&*x[4].buf).arg(&bn.epsilon);
        l.arg(&mut scale).arg(&mut shift).arg(&ci);
        gpu.go(l, c, "BatchNorm")?;
        let mut l = gpu.launch("channel_affine");
        l.arg(&*x[0].buf).arg(&mut y).arg(&scale).arg(&shift).arg(&ci).arg(&plane).arg(&nn);
        gpu.go(l, n, "BatchNorm")?;
        return Ok(GForward { y: gpu.tensor(shape, y), extra: Extra::default(), updates: Vec::new() });
    }
    let count = (n / c) as f64;
    let mean = gpu.channel_sums(0, &x[0].buf, None, None, None, shape, 1.0 / count)?;
    let var = gpu.channel_sums(1, &x[0].buf, None, Some(&mean), None, shape, 1.0 / count)?;
    let [mut inv, mut shift, mut new_mean, mut new_var] =
        [gpu.zeros::<f32>(c)?, gpu.zeros::<f32>(c)?, gpu.zeros::<f32>(c)?, gpu.zeros::<f32>(c)?];
    let mut l = gpu.launch("batchnorm_stats");
    l.arg(&mean).arg(&var).arg(&bn.epsilon).arg(&bn.momentum).arg(&count).arg(&*x[3].buf).arg(&*x[4].buf);
    l.arg(&mut inv).arg(&mut shift).arg(&mut new_mean).arg(&mut new_var).arg(&ci);
    gpu.go(l, c, "BatchNorm statistics")?;
    let mut l = gpu.launch("batchnorm_apply");
    l.arg(&*x[0].buf).arg(&mut y).arg(&inv).arg(&shift).arg(&*x[1].buf).arg(&*x[2].buf);
    l.arg(&ci).arg(&plane).arg(&nn);
    gpu.go(l, n, "BatchNorm")?;
    Ok(GForward {
        y: gpu.tensor(shape, y),
        extra: Extra { stats: Some((Arc::new(inv), Arc::new(shift))), argmax: None },
        updates: vec![(3, gpu.tensor(&[c], new_mean)), (4, gpu.tensor(&[c], new_var))],
    })
}

/// dβ = Σdy, dγ = Σdy·x̂ (x̂ recomputed from the saved x), dx as the CPU rule.
fn batchnorm_backward(
    gpu: &Gpu,
    bn: &BatchNorm,
    rec: &GRecord,
    dy: &DTensor,
    need: &[bool],
) -> Result<Vec<Option<DTensor>>> {
    let shape = &dy.shape;
    let (c, n) = (shape[1], dy.len());
    let frozen;
    let (inv, shift): (&CudaSlice<f32>, &CudaSlice<f32>) = match &rec.extra.stats {
        Some((i, s)) => (i, s),
        None => {
            frozen = gpu.batchnorm_frozen(bn, rec.input(3), rec.input(4))?;
            (&frozen.0, &frozen.1)
        }
    };
    let x = rec.input(0);
    let dbeta = gpu.channel_totals(0, &dy.buf, None, None, shape)?;
    let dgamma = gpu.channel_totals(2, &dy.buf, Some(&x.buf), Some((inv, shift)), shape)?;
    let dx = if need[0] {
        let mut dx = gpu.zeros::<f32>(n)?;
        let (count, training) = ((n / c) as f32, rec.extra.stats.is_some() as i32);
        let (ci, plane, nn) = (c as i32, (n / (shape[0] * c).max(1)) as i64, n as i64);
        let mut l = gpu.launch("batchnorm_backward");
        l.arg(&*dy.buf).arg(&*x.buf).arg(&*rec.input(1).buf).arg(inv).arg(shift).arg(&dbeta).arg(&dgamma);
        l.arg(&count).arg(&training).arg(&mut dx).arg(&ci).arg(&plane).arg(&nn);
        gpu.go(l, n, "BatchNorm backward")?;
        Some(gpu.tensor(shape, dx))
    } else {
        None
    };
    Ok(vec![dx, need[1].then(|| gpu.tensor(&[c], dgamma)), need[2].then(|| gpu.tensor(&[c], dbeta)), None, None])
}

/// How Gemm's C covers `[m, n]`: `y[i] = C[(i / div) % modulo]`; and the `matrix_sums` call
/// (rows, cols, rows_mode) that sums dY back onto C.
struct CLayout {
    div: usize,
    modulo: usize,
    sums: (usize, usize, i32),
}

fn gemm_c_layout(c: &[usize], m: usize, n: usize) -> Result<CLayout> {
    let len: usize = c.iter().product();
    let (div, modulo, sums) = match (len, c.len()) {
        (1, _) => (1, 1, (1, m * n, 1)),
        (l, _) if l == m * n && c.last() == Some(&n) => (1, m * n, (m * n, 1, 1)),
        (l, _) if l == n && c.last() == Some(&n) => (1, n, (m, n, 0)),
        (l, 2) if l == m && c[1] == 1 => (n, m, (m, n, 1)),
        _ => return Err(Error::Runtime(format!("Gemm C of shape {c:?} for [{m}, {n}] does not run on the GPU"))),
    };
    Ok(CLayout { div, modulo, sums })
}

fn gemm_forward(gpu: &Gpu, g: &Gemm, x: &[&DTensor], out_shape: &[usize]) -> Result<DTensor> {
    let (m, k, n) = g.dims(&x[0].shape, &x[1].shape).map_err(Error::Runtime)?;
    let mut y = gpu.zeros::<f32>(m * n)?;
    let beta = match x.get(2) {
        Some(c) => {
            let layout = gemm_c_layout(&c.shape, m, n)?;
            gpu.broadcast(&c.buf, &mut y, layout.div, layout.modulo, m * n)?;
            g.beta
        }
        None => 0.0,
    };
    let (av, bv) = (x[0].buf.slice(..), x[1].buf.slice(..));
    let (lda, ldb) = (x[0].shape[1], x[1].shape[1]);
    let mut yv = y.slice_mut(..);
    gpu.gemm((g.trans_a, g.trans_b), (m, n, k), g.alpha, (&av, lda), (&bv, ldb), beta, &mut yv, 1, (0, 0, 0))?;
    Ok(gpu.tensor(out_shape, y))
}

fn gemm_backward(gpu: &Gpu, g: &Gemm, rec: &GRecord, dy: &DTensor, need: &[bool]) -> Result<Vec<Option<DTensor>>> {
    let (a, b) = (rec.input(0), rec.input(1));
    let (m, k, n) = g.dims(&a.shape, &b.shape).map_err(Error::Runtime)?;
    let (av, bv, dyv) = (a.buf.slice(..), b.buf.slice(..), dy.buf.slice(..));
    let (lda, ldb) = (a.shape[1], b.shape[1]);
    type Operand<'a, 'b> = (&'a cudarc::driver::CudaView<'b, f32>, usize);
    let product = |t: (bool, bool), dims: (usize, usize, usize), x: Operand, y: Operand, shape: &[usize]| {
        let mut out = gpu.zeros::<f32>(shape.iter().product())?;
        let mut ov = out.slice_mut(..);
        gpu.gemm(t, dims, g.alpha, x, y, 0.0, &mut ov, 1, (0, 0, 0))?;
        Ok::<_, Error>(gpu.tensor(shape, out))
    };
    let da = if !need[0] {
        None
    } else if g.trans_a {
        // A is k×m: dA = op(B)·dYᵀ
        Some(product((g.trans_b, true), (k, m, n), (&bv, ldb), (&dyv, n), &a.shape)?)
    } else {
        Some(product((false, !g.trans_b), (m, k, n), (&dyv, n), (&bv, ldb), &a.shape)?)
    };
    let db = if !need[1] {
        None
    } else if g.trans_b {
        // B is n×k: dB = dYᵀ·op(A)
        Some(product((true, g.trans_a), (n, k, m), (&dyv, n), (&av, lda), &b.shape)?)
    } else {
        Some(product((!g.trans_a, false), (k, n, m), (&av, lda), (&dyv, n), &b.shape)?)
    };
    let mut out = vec![da, db];
    if rec.shapes.len() > 2 {
        out.push(if need[2] {
            let c_shape = &rec.shapes[2];
            let (rows, cols, rows_mode) = gemm_c_layout(c_shape, m, n)?.sums;
            let len = c_shape.iter().product::<usize>();
            let mut dc = gpu.zeros::<f32>(len)?;
            let (r, cl) = (rows as i32, cols as i32);
            let mut l = gpu.launch("matrix_sums");
            l.arg(&*dy.buf).arg(&mut dc).arg(&r).arg(&cl).arg(&rows_mode).arg(&g.beta);
            gpu.go(l, len, "Gemm bias gradient")?;
            Some(gpu.tensor(c_shape, dc))
        } else {
            None
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::GOp;
    use crate::attrs::{Attr, Attrs};
    use crate::graph::Node;
    use crate::ops::{builder, BuildCtx, InputInfo};

    /// The GPU form of a Pad node (pads as attributes, opset 10) in `mode`.
    fn gpu_pad(mode: &str) -> Result<GOp, String> {
        let attrs = Attrs(vec![("mode".into(), Attr::Str(mode.into())), ("pads".into(), Attr::Ints(vec![0, 1, 1, 0]))]);
        let node = Node { name: "p".into(), op_type: "Pad".into(), inputs: vec![Some(0)], outputs: vec![1], attrs };
        let ctx = BuildCtx { node: &node, opset: 10, inputs: vec![Some(InputInfo { shape: &[2, 3], value: None })] };
        let built = builder("Pad").unwrap()(&ctx)?;
        GOp::of(built.op.as_ref(), 1)
    }

    /// The GPU gathers constant pads (and crops) only; the other modes are refused, not padded
    /// with a constant.
    #[test]
    fn pad_modes_other_than_constant_are_refused() {
        assert!(matches!(gpu_pad("constant"), Ok(GOp::Pad(_))));
        for mode in ["edge", "reflect"] {
            let Err(err) = gpu_pad(mode) else { panic!("Pad mode '{mode}' was given a GPU form") };
            assert!(err.contains(&format!("'{mode}'")) && err.contains("does not run on the GPU"), "{err}");
        }
    }
}
