//! GEMM throughput on ResNet-50's convolution shapes (batch 1): matrixmultiply (through
//! `kernels::gemm`, which packs both operands per call) against edgetune's packed kernel
//! (weights packed once, B packed per call as the convolution does). First, the peak of each
//! micro-kernel this CPU runs: one thread, one A and one B panel slice in L1, no packing.
//!
//!     cargo bench --bench gemm_shapes            (the active kernel: EDGETUNE_KERNEL pins one)
use std::time::Instant;

mod common;
use common::{median, square_conv, time};
use edgetune::kernels::gemm::{gemm, MatRef};
use edgetune::kernels::micro;
use edgetune::kernels::packed::{gemm_packed, BRef, Images, PackedA, PackedB};

/// GFLOP/s of one micro-kernel on L1-resident panels: the ceiling of every GEMM built on it.
fn micro_peak(kern: &'static micro::MicroKernel) -> f64 {
    let (mr, nr, kc) = (kern.mr, kern.nr, kern.kc);
    let a: Vec<f32> = (0..kc * mr).map(|i| (i % 17) as f32 * 0.01).collect();
    let b: Vec<f32> = (0..kc * nr).map(|i| (i % 13) as f32 * 0.01).collect();
    let mut c = vec![0.0f32; mr * nr];
    let reps = 20_000;
    let mut run = || {
        let t = Instant::now();
        for _ in 0..reps {
            // SAFETY: buffers sized for one full tile at depth kc; `available` kernels only.
            let c = c.as_mut_ptr();
            let tile =
                micro::Tile { kc, a: a.as_ptr(), b: b.as_ptr(), ldb: nr, c, ldc: nr, rows: mr, cols: nr, fresh: false };
            unsafe { kern.code()(&tile) };
        }
        t.elapsed().as_secs_f64()
    };
    let t = median((0..5).map(|_| run()).collect());
    2.0 * (mr * nr * kc * reps) as f64 / t / 1e9
}

fn main() {
    for kern in micro::available() {
        println!(
            "micro-kernel {} ({}x{}, kc {}): {:.0} GFLOP/s on 1 thread",
            kern.name,
            kern.mr,
            kern.nr,
            kern.kc,
            micro_peak(kern)
        );
    }
    println!("{}", micro::describe());
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    {
        use edgetune::kernels::conv::{conv2d, im2col, pack_weights, Epilogue};
        let convs = [
            (64, 64, 56, 3, 1),
            (3, 64, 224, 7, 2),
            (256, 64, 56, 1, 1),
            (256, 256, 14, 3, 1),
            (1024, 256, 14, 1, 1),
            (512, 512, 7, 3, 1),
            (2048, 512, 7, 1, 1),
        ];
        for (c, m, hw, k, st) in convs {
            let s = square_conv(1, c, m, hw, k, st);
            let o = s.geo.out_hw[0];
            let x: Vec<f32> = (0..c * hw * hw).map(|i| (i % 7) as f32).collect();
            let w: Vec<f32> = (0..m * c * k * k).map(|i| (i % 5) as f32).collect();
            let pw = pack_weights(micro::active(), &w, &s);
            let mut out = vec![0.0; m * o * o];
            let flops = 2.0 * (m * c * k * k * o * o) as f64;
            let t = pool.install(|| time(9, &mut || conv2d(&x, &pw, &s, Epilogue::default(), &mut out)));
            let mut cols = vec![0.0; c * k * k * o * o];
            let ti = pool.install(|| time(9, &mut || im2col(&x, c, &s.geo, Images::ONE, &mut cols)));
            println!(
                "conv {c}->{m} {k}x{k}/{st} at {hw}: {:.3} ms, {:.0} GFLOP/s (im2col alone {:.3} ms)",
                t * 1e3,
                flops / t / 1e9,
                ti * 1e3
            );
        }
    }
    // (m, k, n): output channels, C·KH·KW, OH·OW
    let shapes = [
        (64, 147, 12544),
        (64, 576, 3136),
        (256, 64, 3136),
        (128, 1152, 784),
        (512, 128, 784),
        (256, 2304, 196),
        (1024, 256, 196),
        (512, 4608, 49),
        (2048, 512, 49),
    ];
    println!("| m | k | n | matrixmultiply GFLOP/s | packed GFLOP/s | packed A, row-major B GFLOP/s |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 13) as f32 * 0.01).collect();
        let mut c = vec![0.0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        let time = |f: &mut dyn FnMut()| time(7, f);
        let t_mm =
            pool.install(|| time(&mut || gemm(m, k, n, MatRef::rows(&a, k), MatRef::rows(&b, n), &mut c, n, false)));
        let pa = PackedA::pack(micro::active(), MatRef::rows(&a, k), m, k);
        let pb = PackedB::pack(pa.kernel(), &b, k, n);
        let t_p = pool.install(|| time(&mut || gemm_packed(&pa, BRef::Packed(&pb), &mut c, n, false, &|_, _, _| {})));
        let t_pb = pool.install(|| {
            time(&mut || {
                gemm_packed(&pa, BRef::Rows { data: &b, k, n, images: Images::ONE }, &mut c, n, false, &|_, _, _| {})
            })
        });
        println!(
            "| {m} | {k} | {n} | {:.0} | {:.0} | {:.0} |",
            flops / t_mm / 1e9,
            flops / t_p / 1e9,
            flops / t_pb / 1e9
        );
    }
}
