//! Finetune and export through the library, from a program that brings its own global
//! allocator (edgetune sets none). Run by tools/test_embed.sh as a crate outside this repository
//! that depends on edgetune with `default-features = false`; the README shows this file.
//!
//!     cargo run --release --example embed -- MODEL.onnx DATA_SPEC OUT.onnx

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use edgetune::train::finetune::{self, Control, Event, Finetune};
use edgetune::train::transform::GradNorm;

/// This program's allocator: the system's, counting what it hands out.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator with the caller's layout.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() -> Result<(), edgetune::Error> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, data, out] = &args[..] else {
        eprintln!("usage: embed MODEL.onnx DATA_SPEC OUT.onnx");
        std::process::exit(2);
    };
    let mut run = Finetune::new(model, data, out);
    run.steps = Some(6);
    run.grad_norm = GradNorm::ZNorm { eps: 1e-8, matrices_only: false };
    let done = finetune::run(&run, &mut |e: Event| {
        if let Event::Step(s) = e {
            println!("step {}/{} loss {:.4}", s.step, s.total, s.loss.unwrap_or(f32::NAN));
        }
        Control::Continue
    })?;
    println!("wrote {out}: {} images, reloaded with max difference {:.1e}", done.images, done.max_diff);

    let tuned = edgetune::onnx::load(out.as_ref())?;
    let session = edgetune::Session::new(tuned.graph, 0)?;
    let y = &session.run(vec![edgetune::Tensor::zeros([1, 3, 32, 32])])?[0];
    println!(
        "output {:?}; this program's allocator handed out {} MiB",
        y.shape(),
        ALLOCATED.load(Ordering::Relaxed) >> 20
    );
    Ok(())
}
