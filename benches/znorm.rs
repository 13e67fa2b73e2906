//! Criterion benchmark of ZNorm's kernels: the one-pass statistics and the in-place
//! normalisation, SIMD against the scalar twins, on a 1M- and a 16M-value gradient.
//!
//!     cargo bench --bench znorm
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgetune::train::transform::znorm_inplace;

fn gradient(n: usize) -> Vec<f32> {
    edgetune::tensor::lcg_values(n, 7)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("znorm");
    group.sample_size(20);
    for n in [1 << 20, 1 << 24] {
        // ZNorm reads every value twice and writes it once.
        group.throughput(Throughput::Bytes(12 * n as u64));
        for (name, simd) in [("simd", true), ("scalar", false)] {
            let mut g = vec![gradient(n)];
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| b.iter(|| znorm_inplace(&mut g, 1e-8, simd)));
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
