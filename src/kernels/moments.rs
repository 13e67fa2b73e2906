//! Mean and population variance of a tensor in one pass, accurate on tens of millions of
//! elements: f32 SIMD lanes sum 4096-element blocks of the shifted values (x − s, with s the first
//! element, which removes the cancellation of a large mean), and the block sums are added in f64.
//! `moments_scalar` is the twin: the same quantities in plain f64.

use wide::f32x16;

const BLOCK: usize = 4096;

/// Sum of `x - shift` and of `(x - shift)²` over one block, SIMD lanes then a lane sum. Four
/// independent accumulator pairs: one pair would wait on its own add latency every vector and run
/// at a quarter of the core's speed.
fn block_sums(x: &[f32], shift: f32) -> (f64, f64) {
    let s = f32x16::splat(shift);
    let (mut a, mut b) = ([f32x16::ZERO; 4], [f32x16::ZERO; 4]);
    let mut quads = x.chunks_exact(64);
    for q in &mut quads {
        for k in 0..4 {
            let d = f32x16::new(q[16 * k..16 * (k + 1)].try_into().expect("16 lanes")) - s;
            a[k] += d;
            b[k] += d * d;
        }
    }
    let mut chunks = quads.remainder().chunks_exact(16);
    for c in &mut chunks {
        let d = f32x16::new(c.try_into().expect("16 lanes")) - s;
        a[0] += d;
        b[0] += d * d;
    }
    let lanes = |v: [f32x16; 4]| ((v[0] + v[1]) + (v[2] + v[3])).to_array().iter().map(|&e| e as f64).sum::<f64>();
    let (mut sa, mut sb) = (lanes(a), lanes(b));
    for &v in chunks.remainder() {
        let d = (v - shift) as f64;
        sa += d;
        sb += d * d;
    }
    (sa, sb)
}

/// (mean, population variance) of `x` (0, 0 for an empty slice).
pub fn moments(x: &[f32]) -> (f64, f64) {
    let Some(&shift) = x.first() else { return (0.0, 0.0) };
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for block in x.chunks(BLOCK) {
        let (a, b) = block_sums(block, shift);
        s1 += a;
        s2 += b;
    }
    let n = x.len() as f64;
    let m = s1 / n;
    (shift as f64 + m, (s2 / n - m * m).max(0.0))
}

/// `moments` with blocks summed in parallel (for single tensors of millions of elements). The
/// per-chunk sums are added in a fixed order, so the result does not depend on scheduling.
pub fn moments_par(x: &[f32]) -> (f64, f64) {
    use rayon::prelude::*;
    let Some(&shift) = x.first() else { return (0.0, 0.0) };
    let parts: Vec<(f64, f64)> = x
        .par_chunks(BLOCK * 64)
        .map(|c| c.chunks(BLOCK).map(|b| block_sums(b, shift)).fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1)))
        .collect();
    let (s1, s2) = parts.into_iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let n = x.len() as f64;
    let m = s1 / n;
    (shift as f64 + m, (s2 / n - m * m).max(0.0))
}

/// The definition: two passes in f64.
pub fn moments_scalar(x: &[f32]) -> (f64, f64) {
    if x.is_empty() {
        return (0.0, 0.0);
    }
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

/// Σ x² in f64 (for gradient norms), SIMD lanes per block.
pub fn sum_squares(x: &[f32]) -> f64 {
    x.chunks(BLOCK).map(|b| block_sums(b, 0.0).1).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs().max(1e-300)
    }

    #[test]
    fn ten_million_elements_match_f64_to_1e6() {
        // Mean far from zero relative to the spread: the case naive f32 sums get wrong.
        let n = 10_000_000;
        let x: Vec<f32> = (0..n).map(|i| 3.0 + ((i as u64 * 2654435761) % 10007) as f32 * 1e-4).collect();
        let (m, v) = moments(&x);
        let (mr, vr) = moments_scalar(&x);
        assert!(rel(m, mr) < 1e-6 && rel(v, vr) < 1e-6, "mean {m} vs {mr}, var {v} vs {vr}");
        let ss = sum_squares(&x);
        let ssr: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
        assert!(rel(ss, ssr) < 1e-6);
    }

    proptest! {
        #[test]
        fn simd_moments_match_the_f64_twin(x in prop::collection::vec(-1e3f32..1e3, 1..5000)) {
            let (m, v) = moments(&x);
            let (mr, vr) = moments_scalar(&x);
            let scale = x.iter().map(|v| v.abs() as f64).fold(0.0, f64::max).max(1e-6);
            // Block sums in f32 carry ~1e-7 relative error per term of the shifted values.
            prop_assert!((m - mr).abs() <= 1e-6 * scale);
            prop_assert!((v - vr).abs() <= 1e-5 * scale * scale);
        }
    }
}
