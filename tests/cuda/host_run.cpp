// Runs src/gpu/kernels.cu on the host, one emulated thread at a time (tests/cuda_kernels.rs
// compiles and runs this): each kernel against a plain loop written from its definition, so
// indexing and formulas are checked where no GPU is. Launches use a small grid (at most 3 blocks
// of 256) so the grid-stride loops wrap. The kernels share no memory and never synchronise,
// which is what makes the serial emulation exact. Exit status 1 on any mismatch.
#include "host_shim.h"
#include "../../src/gpu/kernels.cu"

#include <algorithm>
#include <cstdio>
#include <vector>

static int failures = 0;

static double worst(double a, double b) { return a > b ? a : b; }

template <class F>
static void launch(long long n, F body) {
    blockDim.x = 256;
    gridDim.x = (unsigned)std::max(1LL, std::min((n + 255) / 256, 3LL));
    for (blockIdx.x = 0; blockIdx.x < gridDim.x; blockIdx.x++)
        for (threadIdx.x = 0; threadIdx.x < blockDim.x; threadIdx.x++) body();
}

static void expect(const char* what, double err, double tol) {
    bool ok = err <= tol;
    printf("%-34s max error %.2e (tolerance %.0e) %s\n", what, err, tol, ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

template <class A, class B>
static double max_diff(const A& a, const B& b) {
    double m = a.size() == b.size() ? 0.0 : 1e30;
    for (size_t i = 0; i < a.size() && i < b.size(); i++) m = std::max(m, fabs((double)a[i] - (double)b[i]));
    return m;
}

// Deterministic values in [-1, 1), with a few exact repeats (ties for MaxPool).
static std::vector<float> values(size_t n, unsigned seed) {
    std::vector<float> v(n);
    unsigned s = seed * 2654435761u + 1;
    for (auto& x : v) {
        s = s * 1664525u + 1013904223u;
        x = (float)((s >> 8) % 2000) / 1000.0f - 1.0f;
    }
    return v;
}

static void convolution() {
    Geo s{2, 5, 6, 3, 2, 2, 1, 1, 0, 1, 2, 0, 0};
    s.oh = (s.h + 2 * s.ph - s.dh * (s.kh - 1) - 1) / s.sh + 1;
    s.ow = (s.w + 2 * s.pw - s.dw * (s.kw - 1) - 1) / s.sw + 1;
    const int batch = 3, n0 = 1, count = 2;  // the chunk of images 1 and 2
    long long k = s.channels * s.kh * s.kw, p = s.oh * s.ow, in = (long long)s.channels * s.h * s.w;
    auto x = values(batch * in, 1);
    std::vector<float> cols(count * k * p), want(count * k * p);
    launch(count * k * p, [&] { im2col(x.data(), cols.data(), s, n0, count * k * p); });
    // Every (column entry, input element) pair of the chunk; the input index is −1 for a padded tap.
    auto taps = [&](auto visit) {
        for (int i = 0; i < count; i++)
            for (int c = 0; c < s.channels; c++)
                for (int ky = 0; ky < s.kh; ky++)
                    for (int kx = 0; kx < s.kw; kx++)
                        for (int oy = 0; oy < s.oh; oy++)
                            for (int ox = 0; ox < s.ow; ox++) {
                                int iy = oy * s.sh + ky * s.dh - s.ph, ix = ox * s.sw + kx * s.dw - s.pw;
                                bool inside = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
                                long long r = (c * s.kh + ky) * s.kw + kx;
                                long long at = ((n0 + i) * s.channels + c) * s.h * s.w + iy * s.w + ix;
                                visit((i * k + r) * p + oy * s.ow + ox, inside ? at : -1);
                            }
    };
    taps([&](long long col, long long at) { want[col] = at < 0 ? 0.0f : x[at]; });
    expect("im2col", max_diff(cols, want), 0.0);
    // col2im is im2col's adjoint: scatter-add the columns back.
    auto g = values(count * k * p, 2);
    std::vector<float> dx(batch * in, 0.0f), scatter(batch * in, 0.0f);
    launch(count * in, [&] { col2im(g.data(), dx.data(), s, n0, count * in); });
    taps([&](long long col, long long at) {
        if (at >= 0) scatter[at] += g[col];
    });
    expect("col2im", max_diff(dx, scatter), 1e-6);
}

static void layout() {
    // NHWC [2, 3, 4, 5] -> NCHW [2, 5, 3, 4] (perm 0, 3, 1, 2), then a constant pad and its crop.
    const long long N = 2, H = 3, W = 4, C = 5, n = N * H * W * C;
    auto x = values(n, 20);
    Nd t{4, {N, C, H, W}, {H * W * C, 1, W * C, C}, {0, 0, 0, 0}, {N, C, H, W}};
    std::vector<float> y(n);
    launch(n, [&] { gather_nd(x.data(), y.data(), t, 0.0f, n); });
    double e = 0;
    for (int a = 0; a < N; a++)
        for (int c = 0; c < C; c++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++)
                    e = worst(e, fabs(y[((a * C + c) * H + h) * W + w] - x[((a * H + h) * W + w) * C + c]));
    expect("transpose NHWC -> NCHW", e, 0.0);
    // Pad H by (1, 2) and W by (0, 3) with 7: [2, 5, 6, 7].
    const long long PH = H + 3, PW = W + 3, pn = N * C * PH * PW;
    Nd p{4, {N, C, PH, PW}, {C * H * W, H * W, W, 1}, {0, 0, 1, 0}, {N, C, H, W}};
    std::vector<float> padded(pn), back(n);
    launch(pn, [&] { gather_nd(y.data(), padded.data(), p, 7.0f, pn); });
    double ep = 0;
    for (int a = 0; a < N; a++)
        for (int c = 0; c < C; c++)
            for (int h = 0; h < PH; h++)
                for (int w = 0; w < PW; w++) {
                    bool in = h >= 1 && h < H + 1 && w < W;
                    float want = in ? y[((a * C + c) * H + h - 1) * W + w] : 7.0f;
                    ep = worst(ep, fabs(padded[((a * C + c) * PH + h) * PW + w] - want));
                }
    Nd crop{4, {N, C, H, W}, {C * PH * PW, PH * PW, PW, 1}, {0, 0, -1, 0}, {N, C, PH, PW}};
    launch(n, [&] { gather_nd(padded.data(), back.data(), crop, 0.0f, n); });
    expect("pad, and its adjoint crop", worst(ep, max_diff(back, y)), 0.0);
}

static void pooling() {
    Geo s{0, 7, 6, 3, 3, 2, 2, 1, 1, 1, 1, 4, 3};
    const int planes = 2;
    long long n_out = planes * s.oh * s.ow, n_in = planes * s.h * s.w;
    auto x = values(n_in, 3);
    for (int i = 0; i < 6; i++) x[i] = 0.5f;  // a tie: the first tap in window order wins
    std::vector<float> y(n_out), dy = values(n_out, 4), dx(n_in), want_y(n_out), want_dx(n_in, 0.0f);
    std::vector<int> arg(n_out);
    launch(n_out, [&] { maxpool_forward(x.data(), y.data(), arg.data(), s, n_out); });
    for (int pl = 0; pl < planes; pl++)
        for (int oy = 0; oy < s.oh; oy++)
            for (int ox = 0; ox < s.ow; ox++) {
                int best = -1;
                for (int ky = 0; ky < s.kh; ky++)
                    for (int kx = 0; kx < s.kw; kx++) {
                        int iy = oy * s.sh + ky - s.ph, ix = ox * s.sw + kx - s.pw;
                        if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                        int at = iy * s.w + ix;
                        if (best < 0 || x[pl * s.h * s.w + at] > x[pl * s.h * s.w + best]) best = at;
                    }
                long long o = (pl * s.oh + oy) * s.ow + ox;
                want_y[o] = x[pl * s.h * s.w + best];
                want_dx[pl * s.h * s.w + best] += dy[o];
            }
    launch(n_in, [&] { maxpool_backward(dy.data(), arg.data(), dx.data(), s, n_in); });
    expect("maxpool forward", max_diff(y, want_y), 0.0);
    expect("maxpool backward", max_diff(dx, want_dx), 1e-6);

    std::vector<float> m(planes * 3), dm(planes * 3 * 7);
    auto z = values(planes * 3 * 7, 5);
    launch(planes * 3, [&] { plane_means(z.data(), m.data(), 7, planes * 3); });
    double e = 0;
    for (int i = 0; i < planes * 3; i++) {
        double sum = 0;
        for (int j = 0; j < 7; j++) sum += z[i * 7 + j];
        e = worst(e, fabs(m[i] - sum / 7));
    }
    launch(planes * 3 * 7, [&] { plane_means_backward(m.data(), dm.data(), 7, planes * 3 * 7); });
    for (int i = 0; i < planes * 3 * 7; i++) e = worst(e, fabs(dm[i] - m[i / 7] / 7.0));
    expect("global average pool", e, 1e-6);
}

static void batchnorm() {
    const int batch = 3, channels = 4;
    const long long plane = 10, n = batch * channels * plane, count = batch * plane;
    auto x = values(n, 6);
    for (auto& v : x) v = v * 2.0f + 3.0f;  // a mean far from 0
    auto dy = values(n, 7), gamma = values(channels, 8), beta = values(channels, 9);
    std::vector<float> rm = {0.1f, 0.2f, -0.3f, 0.0f}, rv = {1.0f, 0.5f, 2.0f, 1.5f};
    const int parts = 7;  // fewer parts than elements: each part strides the channel
    std::vector<double> part(channels * parts), mean(channels), var(channels);
    auto sums = [&](int mode, const float* a, const float* b, const double* mu, const float* sc, const float* sh,
                    double scale, std::vector<double>& out) {
        launch(channels * parts, [&] {
            channel_partials(a, b, mu, sc, sh, part.data(), mode, batch, channels, plane, parts);
        });
        launch(channels, [&] { sum_parts(part.data(), out.data(), scale, channels, parts); });
    };
    sums(0, x.data(), x.data(), nullptr, nullptr, nullptr, 1.0 / count, mean);
    sums(1, x.data(), x.data(), mean.data(), nullptr, nullptr, 1.0 / count, var);
    double e_mean = 0, e_var = 0;
    for (int c = 0; c < channels; c++) {
        double s = 0, q = 0;
        for (int b = 0; b < batch; b++)
            for (int j = 0; j < plane; j++) s += x[(b * channels + c) * plane + j];
        s /= count;
        for (int b = 0; b < batch; b++)
            for (int j = 0; j < plane; j++) q += pow(x[(b * channels + c) * plane + j] - s, 2);
        e_mean = worst(e_mean, fabs(mean[c] - s));
        e_var = worst(e_var, fabs(var[c] - q / count));
    }
    expect("batch mean (strided parts)", e_mean, 1e-12);
    expect("batch variance", e_var, 1e-12);

    std::vector<float> inv(channels), shift(channels), nm(channels), nv(channels), y(n), dx(n);
    const float eps = 1e-3f, mom = 0.9f;
    launch(channels, [&] {
        batchnorm_stats(mean.data(), var.data(), eps, mom, (double)count, rm.data(), rv.data(), inv.data(), shift.data(),
                        nm.data(), nv.data(), channels);
    });
    double e_stats = 0;
    for (int c = 0; c < channels; c++) {
        e_stats = worst(e_stats, fabs(inv[c] - 1.0 / sqrt(var[c] + eps)) / inv[c]);
        e_stats = worst(e_stats, fabs(nm[c] - (0.9 * rm[c] + 0.1 * mean[c])));
        e_stats = worst(e_stats, fabs(nv[c] - (0.9 * rv[c] + 0.1 * var[c] * count / (count - 1))));
    }
    expect("batchnorm statistics", e_stats, 1e-6);
    launch(n, [&] {
        batchnorm_apply(x.data(), y.data(), inv.data(), shift.data(), gamma.data(), beta.data(), channels, plane, n);
    });
    // Backward against the closed form in double: dx = γσ⁻¹(dy − mean(dy) − x̂·mean(dy·x̂)).
    std::vector<double> db(channels), dg(channels);
    sums(0, dy.data(), x.data(), nullptr, nullptr, nullptr, 1.0, db);
    sums(2, dy.data(), x.data(), nullptr, inv.data(), shift.data(), 1.0, dg);
    std::vector<float> dbf(db.begin(), db.end()), dgf(dg.begin(), dg.end());
    launch(n, [&] {
        batchnorm_backward(dy.data(), x.data(), gamma.data(), inv.data(), shift.data(), dbf.data(), dgf.data(),
                           (float)count, 1, dx.data(), channels, plane, n);
    });
    double e_y = 0, e_dx = 0;
    for (int c = 0; c < channels; c++) {
        double is = 1.0 / sqrt(var[c] + eps), sdy = 0, sdyx = 0;
        auto at = [&](int b, int j) { return (b * channels + c) * plane + j; };
        for (int b = 0; b < batch; b++)
            for (int j = 0; j < plane; j++) {
                double xh = (x[at(b, j)] - mean[c]) * is;
                e_y = worst(e_y, fabs(y[at(b, j)] - (gamma[c] * xh + beta[c])));
                sdy += dy[at(b, j)];
                sdyx += dy[at(b, j)] * xh;
            }
        for (int b = 0; b < batch; b++)
            for (int j = 0; j < plane; j++) {
                double xh = (x[at(b, j)] - mean[c]) * is;
                double want = gamma[c] * is * (dy[at(b, j)] - sdy / count - xh * sdyx / count);
                e_dx = worst(e_dx, fabs(dx[at(b, j)] - want));
            }
    }
    expect("batchnorm forward", e_y, 1e-5);
    // The inference form: running statistics folded into one scale and shift per channel.
    std::vector<float> scale(channels), fshift(channels), yi(n);
    launch(channels, [&] {
        batchnorm_fold(gamma.data(), beta.data(), rm.data(), rv.data(), eps, scale.data(), fshift.data(), channels);
    });
    launch(n, [&] { channel_affine(x.data(), yi.data(), scale.data(), fshift.data(), channels, plane, n); });
    double e_inf = 0;
    for (long long i = 0; i < n; i++) {
        int c = (int)(i / plane % channels);
        e_inf = worst(e_inf, fabs(yi[i] - ((x[i] - rm[c]) / sqrt((double)rv[c] + eps) * gamma[c] + beta[c])));
    }
    expect("batchnorm inference (folded)", e_inf, 1e-5);
    expect("batchnorm backward", e_dx, 1e-5);
}

static void matrices_and_loss() {
    const int rows = 3, cols = 5;
    auto m = values(rows * cols, 10);
    std::vector<float> colsum(cols), rowsum(rows), b(rows * cols);
    launch(cols, [&] { matrix_sums(m.data(), colsum.data(), rows, cols, 0, 2.0f); });
    launch(rows, [&] { matrix_sums(m.data(), rowsum.data(), rows, cols, 1, 1.0f); });
    launch(rows * cols, [&] { broadcast(colsum.data(), b.data(), 1, cols, rows * cols); });
    double e = 0;
    for (int j = 0; j < cols; j++) {
        double s = 0;
        for (int r = 0; r < rows; r++) s += m[r * cols + j];
        e = worst(e, fabs(colsum[j] - 2 * s));
    }
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int j = 0; j < cols; j++) s += m[r * cols + j];
        e = worst(e, fabs(rowsum[r] - s));
    }
    for (int i = 0; i < rows * cols; i++) e = worst(e, fabs(b[i] - colsum[i % cols]));
    expect("matrix sums, broadcast", e, 1e-6);

    int labels[rows] = {4, 0, 2};
    std::vector<double> loss(rows);
    std::vector<float> grad(rows * cols), soft(rows * cols);
    launch(rows, [&] { cross_entropy(m.data(), labels, loss.data(), grad.data(), rows, cols); });
    launch(rows, [&] { softmax_rows(m.data(), soft.data(), rows, cols); });
    double el = 0;
    for (int r = 0; r < rows; r++) {
        double z = 0;
        for (int j = 0; j < cols; j++) z += exp(m[r * cols + j]);
        el = worst(el, fabs(loss[r] - (log(z) - m[r * cols + labels[r]])));
        for (int j = 0; j < cols; j++) {
            double p = exp(m[r * cols + j]) / z;
            el = worst(el, fabs(soft[r * cols + j] - p));
            el = worst(el, fabs(grad[r * cols + j] - (p - (j == labels[r])) / rows));
        }
    }
    expect("cross-entropy, softmax", el, 1e-6);
}

static void transforms_and_optimizers() {
    const long long n = 2000;
    const int parts = 300;
    auto g = values(n, 11);
    for (auto& v : g) v = v * 0.01f + 0.003f;
    std::vector<double> part(parts), mean(1), var(1), sq(1);
    int bad = 0;
    auto total = [&](int mode, std::vector<double>& out, double scale) {
        launch(parts, [&] { tensor_partials(g.data(), n, mean.data(), mode, part.data(), parts, &bad); });
        launch(1, [&] { sum_parts(part.data(), out.data(), scale, 1, parts); });
    };
    total(0, mean, 1.0 / n);
    total(1, var, 1.0 / n);
    total(2, sq, 1.0);
    double s = 0, q = 0, s2 = 0;
    for (float v : g) s += v, s2 += (double)v * v;
    for (float v : g) q += pow(v - s / n, 2);
    expect("tensor mean, variance, squares",
           std::max({fabs(mean[0] - s / n), fabs(var[0] - q / n) / (q / n), fabs(sq[0] - s2) / s2}), 1e-12);
    expect("finite gradients: no flag", bad, 0);
    std::vector<float> aff(2);
    launch(1, [&] { znorm_map(mean.data(), var.data(), 1e-8f, aff.data()); });
    double ez = 0;
    for (float v : g) ez = worst(ez, fabs(v * aff[0] + aff[1] - (v - s / n) / (sqrt(q / n) + 1e-8)));
    expect("znorm map", ez, 1e-4);
    g[777] = NAN;
    launch(parts, [&] { tensor_partials(g.data(), n, mean.data(), 0, part.data(), parts, &bad); });
    expect("NaN raises the flag", bad == 1 ? 0 : 1, 0);
    g[777] = 0.0f;

    const int rows = 4, cols = 500;
    std::vector<float> gc(1 + rows);
    launch(rows, [&] { gc_map(g.data(), gc.data(), rows, cols); });
    double eg = fabs(gc[0] - 1.0f);
    for (int r = 0; r < rows; r++) {
        double m = 0;
        for (int j = 0; j < cols; j++) m += g[r * cols + j];
        eg = worst(eg, fabs(gc[1 + r] + m / cols));
    }
    expect("gradient centralization map", eg, 1e-9);

    // The optimizers against torch.optim's update written out in double (as kernels/optim.rs).
    auto p0 = values(n, 12), buf0 = values(n, 13), m0 = values(n, 14), v0 = values(n, 15);
    for (auto& v : v0) v = fabsf(v) * 1e-4f;
    const float lr = 0.01f, mom = 0.9f, wd = 1e-2f;
    for (int nesterov = 0; nesterov < 2; nesterov++) {
        auto p = p0, buf = buf0;
        launch(n, [&] { sgd_step(p.data(), g.data(), buf.data(), gc.data(), cols, lr, mom, wd, nesterov, 0, n); });
        double e = 0;
        for (long long i = 0; i < n; i++) {
            double d = g[i] + gc[1 + i / cols] + (double)p0[i] * wd;
            double b = buf0[i] * (double)mom + d;
            double step = nesterov ? d + b * mom : b;
            e = worst(e, fabs(p[i] - (p0[i] - lr * step)));
        }
        expect(nesterov ? "sgd nesterov (GC rows)" : "sgd momentum (GC rows)", e, 1e-6);
    }
    for (int decoupled = 0; decoupled < 2; decoupled++) {
        auto p = p0, m = m0, v = v0;
        const int t = 3;
        double bc1 = 1 - pow(0.9, t), bc2 = 1 - pow(0.999, t);
        launch(n, [&] {
            adam_step(p.data(), g.data(), m.data(), v.data(), aff.data(), n, 1e-8f, wd, decoupled, 0.1f, 0.999f, 0.001f,
                      (float)(lr / bc1), (float)sqrt(bc2), (float)(1 - (double)lr * wd), n);
        });
        double e = 0;
        for (long long i = 0; i < n; i++) {
            double x = p0[i], d = (double)g[i] * aff[0] + aff[1];
            if (decoupled) x *= 1 - (double)lr * wd;
            else d += x * wd;
            double mm = 0.9 * m0[i] + 0.1 * d, vv = 0.999 * v0[i] + 0.001 * d * d;
            double want = x - lr / bc1 * mm / (sqrt(vv) / sqrt(bc2) + 1e-8);
            e = worst(e, fabs(p[i] - want));
        }
        expect(decoupled ? "adamw" : "adam (ZNorm map)", e, 1e-6);
    }
}

int main() {
    convolution();
    layout();
    pooling();
    batchnorm();
    matrices_and_loss();
    transforms_and_optimizers();
    if (failures) printf("%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
