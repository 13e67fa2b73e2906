//! Timing for the benchmarks (`edgetune bench`, the GPU's `bench znorm`): medians of repeated
//! runs after a warm-up, and two workloads timed alternately so that their ratio is fair.

use std::time::Instant;

use crate::error::Result;

/// The median (NaN for no values).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Milliseconds one run of `f` takes.
fn run_ms(f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// Median milliseconds of `iters` runs of `f` (after one warm-up run).
pub fn time_ms(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    Ok(median((0..iters.max(1)).map(|_| run_ms(&mut f)).collect::<Result<_>>()?))
}

/// Median milliseconds of `a` and of `b` run alternately, `iters` times each after one warm-up
/// run of each: both see the same machine (frequency, neighbours), so their ratio is fair.
pub fn time_pair_ms(
    iters: usize,
    mut a: impl FnMut() -> Result<()>,
    mut b: impl FnMut() -> Result<()>,
) -> Result<(f64, f64)> {
    a()?;
    b()?;
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..iters.max(1) {
        ta.push(run_ms(&mut a)?);
        tb.push(run_ms(&mut b)?);
    }
    Ok((median(ta), median(tb)))
}
