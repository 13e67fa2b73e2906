//! The convolutions of a training step, one at a time: forward, dx and dW of ResNet-18's 3×3
//! and 1×1 layers at batch 32 and 112×112 input (`tools/bench_grad.py`'s ResNet-18 case), in
//! GFLOP/s on 2 threads, with the kernel `micro::active` picks (EDGETUNE_KERNEL pins one).
//!
//!     cargo bench --bench conv_train
mod common;
use common::{square_conv, time};
use edgetune::kernels::conv::{conv2d, conv2d_backward, pack_weights, Epilogue};
use edgetune::kernels::micro;

fn main() {
    println!("{}", micro::describe());
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let batch = 32;
    // (in channels, out channels, input size, kernel, stride): ResNet-18's layers at 112×112.
    let layers = [
        (64, 64, 28, 3, 1),
        (64, 128, 28, 3, 2),
        (128, 128, 14, 3, 1),
        (256, 256, 7, 3, 1),
        (512, 512, 4, 3, 1),
        (256, 512, 7, 1, 2),
    ];
    println!("| layer | forward GFLOP/s | dx GFLOP/s | dW GFLOP/s |");
    println!("|---|---:|---:|---:|");
    for (c, m, hw, k, st) in layers {
        let s = square_conv(batch, c, m, hw, k, st);
        let o = s.geo.out_hw[0];
        let x: Vec<f32> = (0..batch * c * hw * hw).map(|i| (i % 17) as f32 * 0.01).collect();
        let w: Vec<f32> = (0..m * c * k * k).map(|i| (i % 13) as f32 * 0.01).collect();
        let dy: Vec<f32> = (0..batch * m * o * o).map(|i| (i % 11) as f32 * 0.01).collect();
        let (mut out, mut dx, mut dw) = (vec![0.0; dy.len()], vec![0.0; x.len()], vec![0.0; w.len()]);
        let kern = micro::active();
        let flops = 2.0 * (batch * m * c * k * k * o * o) as f64 / 1e9;
        let pw = pack_weights(kern, &w, &s);
        let tf = pool.install(|| time(5, &mut || conv2d(&x, &pw, &s, Epilogue::default(), &mut out)));
        let tx = pool.install(|| time(5, &mut || conv2d_backward(kern, &x, &w, &s, &dy, Some(&mut dx), None)));
        let tw = pool.install(|| time(5, &mut || conv2d_backward(kern, &x, &w, &s, &dy, None, Some(&mut dw))));
        println!("| {c}->{m} {k}x{k}/{st} at {hw} | {:.0} | {:.0} | {:.0} |", flops / tf, flops / tx, flops / tw);
    }
}
