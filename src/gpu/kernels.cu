// edgetune's CUDA kernels, compiled at run time by NVRTC (src/gpu/mod.rs) with contraction
// off (--fmad=false): every fused multiply-add below is written out, where the CPU kernels use
// one too, so both paths round alike. Reductions never share memory between threads: each thread
// sums a fixed, strided part in double, a second kernel adds the parts in order, so results do not
// depend on scheduling (and tests/cuda_kernels.rs can check this file with a host compiler).
//
// Layouts: activations NCHW, row-major; `plane` = H·W; `total` = element count.

#define GRID_STRIDE(i, n) for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
                               i += (long long)blockDim.x * gridDim.x)

// ---------------------------------------------------------------- elementwise

// y[i] = c[(i / div) % mod]: broadcasting a bias (or Gemm's C) over an output.
extern "C" __global__ void broadcast(const float* c, float* y, long long div, long long mod, long long n) {
    GRID_STRIDE(i, n) { y[i] = c[(i / div) % mod]; }
}

extern "C" __global__ void add(const float* a, const float* b, float* y, long long n) {
    GRID_STRIDE(i, n) { y[i] = a[i] + b[i]; }
}

extern "C" __global__ void relu_forward(const float* x, float* y, long long n) {
    GRID_STRIDE(i, n) { y[i] = x[i] > 0.0f ? x[i] : 0.0f; }
}

// dx = dy where y > 0 (PyTorch's threshold_backward).
extern "C" __global__ void relu_backward(const float* dy, const float* y, float* dx, long long n) {
    GRID_STRIDE(i, n) { dx[i] = y[i] > 0.0f ? dy[i] : 0.0f; }
}

// Per-channel y = x·scale[c] + shift[c] over NCHW (inference BatchNorm, conv bias with scale 1).
extern "C" __global__ void channel_affine(const float* x, float* y, const float* scale, const float* shift,
                                          int channels, long long plane, long long n) {
    GRID_STRIDE(i, n) {
        int c = (int)((i / plane) % channels);
        y[i] = fmaf(x[i], scale[c], shift[c]);
    }
}

// ---------------------------------------------------------------- convolution (im2col + cuBLAS)

// A sliding window over NCHW planes (Conv and MaxPool; the pools ignore `channels`). Mirrors
// `gpu::ops::Geo`.
struct Geo {
    int channels, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
};

// cols[n][c·kh·kw + ky·kw + kx][oy·ow + ox] for images [n0, n0 + count).
extern "C" __global__ void im2col(const float* x, float* cols, Geo s, int n0, long long n) {
    long long k = (long long)s.channels * s.kh * s.kw, p = (long long)s.oh * s.ow;
    GRID_STRIDE(i, n) {
        long long img = i / (k * p), r = (i / p) % k, q = i % p;
        int c = (int)(r / (s.kh * s.kw)), ky = (int)(r / s.kw % s.kh), kx = (int)(r % s.kw);
        int iy = (int)(q / s.ow) * s.sh + ky * s.dh - s.ph, ix = (int)(q % s.ow) * s.sw + kx * s.dw - s.pw;
        bool inside = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
        cols[i] = inside ? x[(((n0 + img) * s.channels + c) * s.h + iy) * s.w + ix] : 0.0f;
    }
}

// The adjoint of im2col: each input element gathers the column entries it was copied to, in
// (ky, kx) order, for images [n0, n0 + count); dx is overwritten.
extern "C" __global__ void col2im(const float* cols, float* dx, Geo s, int n0, long long n) {
    long long k = (long long)s.channels * s.kh * s.kw, p = (long long)s.oh * s.ow;
    GRID_STRIDE(i, n) {
        long long img = i / ((long long)s.channels * s.h * s.w);
        int c = (int)(i / ((long long)s.h * s.w) % s.channels), y = (int)(i / s.w % s.h), x = (int)(i % s.w);
        float acc = 0.0f;
        for (int ky = 0; ky < s.kh; ky++) {
            int ty = y + s.ph - ky * s.dh;
            if (ty < 0 || ty % s.sh != 0 || ty / s.sh >= s.oh) continue;
            for (int kx = 0; kx < s.kw; kx++) {
                int tx = x + s.pw - kx * s.dw;
                if (tx < 0 || tx % s.sw != 0 || tx / s.sw >= s.ow) continue;
                long long r = ((long long)c * s.kh + ky) * s.kw + kx;
                acc += cols[(img * k + r) * p + (long long)(ty / s.sh) * s.ow + tx / s.sw];
            }
        }
        dx[(long long)n0 * s.channels * s.h * s.w + i] = acc;
    }
}

// ---------------------------------------------------------------- layout (Transpose, Pad)

#define MAX_RANK 6

// An output of `rank` axes read from a strided source: output coordinate c_k reads the source at
// c_k − begin_k along the source axis with stride `strides[k]` and length `src_dims[k]`. Mirrors
// `gpu::ops::Nd`.
struct Nd {
    int rank;
    long long dims[MAX_RANK], strides[MAX_RANK], begin[MAX_RANK], src_dims[MAX_RANK];
};

// y = x re-laid out by `s`, `value` where the source coordinate falls outside: a transpose
// (permuted strides), a constant pad (begin = the pads before) or the pad's adjoint, a crop
// (begin = minus the pads before).
extern "C" __global__ void gather_nd(const float* x, float* y, Nd s, float value, long long n) {
    GRID_STRIDE(i, n) {
        long long rest = i, at = 0;
        bool inside = true;
        for (int k = s.rank - 1; k >= 0; k--) {
            long long c = rest % s.dims[k] - s.begin[k];
            rest /= s.dims[k];
            inside = inside && c >= 0 && c < s.src_dims[k];
            at += c * s.strides[k];
        }
        y[i] = inside ? x[at] : value;
    }
}

// ---------------------------------------------------------------- per-channel reductions

// Strided partial sums over one channel of NCHW data: part[c·parts + t] = Σ f(x) over the
// channel's elements j ≡ t (mod parts). `mode` 0: Σ x; 1: Σ (x − mean[c])²; 2: Σ a·x̂ with
// x̂ = fma(b, s[c], h[c]) (BatchNorm backward's Σ dy·x̂, a = dy, b = x).
extern "C" __global__ void channel_partials(const float* a, const float* b, const double* mean, const float* s,
                                            const float* h, double* part, int mode, int batch, int channels,
                                            long long plane, int parts) {
    long long n = (long long)channels * parts;
    GRID_STRIDE(i, n) {
        int c = (int)(i / parts), t = (int)(i % parts);
        long long count = (long long)batch * plane;
        double acc = 0.0;
        for (long long j = t; j < count; j += parts) {
            long long at = ((j / plane) * channels + c) * plane + j % plane;
            double v;
            if (mode == 0) {
                v = a[at];
            } else if (mode == 1) {
                double d = a[at] - mean[c];
                v = d * d;
            } else {
                v = (double)a[at] * (double)fmaf(b[at], s[c], h[c]);
            }
            acc += v;
        }
        part[i] = acc;
    }
}

// out[r] = scale · Σ part[r·parts .. (r+1)·parts], in order.
extern "C" __global__ void sum_parts(const double* part, double* out, double scale, int rows, int parts) {
    GRID_STRIDE(r, rows) {
        double acc = 0.0;
        for (int t = 0; t < parts; t++) acc += part[r * (long long)parts + t];
        out[r] = acc * scale;
    }
}

// From the batch mean and biased variance: inv_std, shift = −mean·inv_std, and the new running
// statistics (momentum = ONNX's weight of the old value; unbiased variance, as PyTorch).
extern "C" __global__ void batchnorm_stats(const double* mean, const double* var, float eps, float momentum,
                                           double count, const float* run_mean, const float* run_var,
                                           float* inv_std, float* shift, float* new_mean, float* new_var,
                                           int channels) {
    GRID_STRIDE(c, channels) {
        float is = (float)(1.0 / sqrt(var[c] + (double)eps));
        inv_std[c] = is;
        shift[c] = -(float)mean[c] * is;
        double mom = momentum, unbiased = count / fmax(count - 1.0, 1.0);
        new_mean[c] = (float)(mom * run_mean[c] + (1.0 - mom) * mean[c]);
        new_var[c] = (float)(mom * run_var[c] + (1.0 - mom) * var[c] * unbiased);
    }
}

// The inference form (`BatchNorm::folded`): scale = γ/√(var + ε), shift = β − mean·scale.
extern "C" __global__ void batchnorm_fold(const float* gamma, const float* beta, const float* mean, const float* var,
                                          float eps, float* scale, float* shift, int channels) {
    GRID_STRIDE(c, channels) {
        float s = gamma[c] / sqrtf(var[c] + eps);
        scale[c] = s;
        shift[c] = beta[c] - mean[c] * s;
    }
}

// Frozen statistics: inv_std = 1/√(var + ε), shift = −mean·inv_std (f32, as the CPU).
extern "C" __global__ void batchnorm_frozen(const float* run_mean, const float* run_var, float eps, float* inv_std,
                                            float* shift, int channels) {
    GRID_STRIDE(c, channels) {
        float is = 1.0f / sqrtf(run_var[c] + eps);
        inv_std[c] = is;
        shift[c] = -run_mean[c] * is;
    }
}

// y = γ·x̂ + β with x̂ = fma(x, inv_std, shift): the CPU's two fused multiply-adds.
extern "C" __global__ void batchnorm_apply(const float* x, float* y, const float* inv_std, const float* shift,
                                           const float* gamma, const float* beta, int channels, long long plane,
                                           long long n) {
    GRID_STRIDE(i, n) {
        int c = (int)((i / plane) % channels);
        y[i] = fmaf(fmaf(x[i], inv_std[c], shift[c]), gamma[c], beta[c]);
    }
}

// Training: dx = γ·σ⁻¹ · (dy − Σdy/M − x̂·Σdy·x̂/M); frozen: dx = γ·σ⁻¹·dy. `sums` holds Σdy
// then Σdy·x̂ per channel (as f32, the CPU rounds them before use).
extern "C" __global__ void batchnorm_backward(const float* dy, const float* x, const float* gamma,
                                              const float* inv_std, const float* shift, const float* dbeta,
                                              const float* dgamma, float count, int training, float* dx,
                                              int channels, long long plane, long long n) {
    GRID_STRIDE(i, n) {
        int c = (int)((i / plane) % channels);
        float k = gamma[c] * inv_std[c];
        if (training) {
            float mb = dbeta[c] / count, mg = dgamma[c] / count;
            dx[i] = k * (dy[i] - mb - fmaf(x[i], inv_std[c], shift[c]) * mg);
        } else {
            dx[i] = k * dy[i];
        }
    }
}

extern "C" __global__ void to_f32(const double* a, float* y, int n) {
    GRID_STRIDE(i, n) { y[i] = (float)a[i]; }
}

// ---------------------------------------------------------------- pooling

// Max over each window; `arg` keeps the first largest tap's index in the plane (−1: empty).
extern "C" __global__ void maxpool_forward(const float* x, float* y, int* arg, Geo s, long long n) {
    GRID_STRIDE(i, n) {
        long long plane = i / ((long long)s.oh * s.ow);
        int oy = (int)(i / s.ow % s.oh), ox = (int)(i % s.ow);
        const float* p = x + plane * s.h * s.w;
        float best = -3.402823466e38f;
        int at = -1;
        for (int ky = 0; ky < s.kh; ky++) {
            int iy = oy * s.sh + ky * s.dh - s.ph;
            if (iy < 0 || iy >= s.h) continue;
            for (int kx = 0; kx < s.kw; kx++) {
                int ix = ox * s.sw + kx * s.dw - s.pw;
                if (ix < 0 || ix >= s.w) continue;
                float v = p[iy * s.w + ix];
                if (at < 0 || v > best) {
                    best = v;
                    at = iy * s.w + ix;
                }
            }
        }
        y[i] = at < 0 ? -3.402823466e38f : best;
        arg[i] = at;
    }
}

// Each input element gathers the gradient of the outputs whose maximum it was (deterministic,
// no atomics); dx is overwritten.
extern "C" __global__ void maxpool_backward(const float* dy, const int* arg, float* dx, Geo s, long long n) {
    GRID_STRIDE(i, n) {
        long long plane = i / ((long long)s.h * s.w);
        int at = (int)(i % ((long long)s.h * s.w)), y = at / s.w, x = at % s.w;
        float acc = 0.0f;
        // Taps from last to first: the outputs in ascending order, as the CPU adds them.
        for (int ky = s.kh - 1; ky >= 0; ky--) {
            int ty = y + s.ph - ky * s.dh;
            if (ty < 0 || ty % s.sh != 0 || ty / s.sh >= s.oh) continue;
            for (int kx = s.kw - 1; kx >= 0; kx--) {
                int tx = x + s.pw - kx * s.dw;
                if (tx < 0 || tx % s.sw != 0 || tx / s.sw >= s.ow) continue;
                long long o = (plane * s.oh + ty / s.sh) * s.ow + tx / s.sw;
                if (arg[o] == at) acc += dy[o];
            }
        }
        dx[i] = acc;
    }
}

// Mean of each plane, summed in double.
extern "C" __global__ void plane_means(const float* x, float* y, long long plane, long long planes) {
    GRID_STRIDE(i, planes) {
        double acc = 0.0;
        for (long long j = 0; j < plane; j++) acc += x[i * plane + j];
        y[i] = (float)(acc / (double)plane);
    }
}

extern "C" __global__ void plane_means_backward(const float* dy, float* dx, long long plane, long long n) {
    GRID_STRIDE(i, n) { dx[i] = dy[i / plane] / (float)plane; }
}

// ---------------------------------------------------------------- matrices

// out[j] = scale · Σ_r m[r·cols + j] (column sums) or, with `rows_mode`, Σ_j m[j·cols + r].
extern "C" __global__ void matrix_sums(const float* m, float* out, int rows, int cols, int rows_mode, float scale) {
    int outs = rows_mode ? rows : cols;
    GRID_STRIDE(j, outs) {
        double acc = 0.0;
        if (rows_mode) {
            for (int c = 0; c < cols; c++) acc += m[j * (long long)cols + c];
        } else {
            for (int r = 0; r < rows; r++) acc += m[r * (long long)cols + j];
        }
        out[j] = (float)acc * scale;
    }
}

// Softmax of each row of [rows, k], max-subtracted.
extern "C" __global__ void softmax_rows(const float* x, float* y, int rows, int k) {
    GRID_STRIDE(r, rows) {
        const float* z = x + r * (long long)k;
        float m = z[0];
        for (int j = 1; j < k; j++) m = fmaxf(m, z[j]);
        double sum = 0.0;
        for (int j = 0; j < k; j++) sum += exp((double)z[j] - m);
        for (int j = 0; j < k; j++) y[r * (long long)k + j] = (float)(exp((double)z[j] - m) / sum);
    }
}

// Mean softmax cross-entropy (design.md): per row, loss_i = logsumexp(z_i) − z_i[y_i] (summed
// on the host) and ∂/∂z_i = (softmax(z_i) − onehot(y_i)) / rows, in double as the CPU.
extern "C" __global__ void cross_entropy(const float* logits, const int* labels, double* loss, float* grad, int rows,
                                         int k) {
    GRID_STRIDE(r, rows) {
        const float* z = logits + r * (long long)k;
        float m = z[0];
        for (int j = 1; j < k; j++) m = fmaxf(m, z[j]);
        double sum = 0.0;
        for (int j = 0; j < k; j++) sum += exp((double)z[j] - (double)m);
        double lse = (double)m + log(sum);
        loss[r] = lse - (double)z[labels[r]];
        for (int j = 0; j < k; j++) {
            double p = exp((double)z[j] - lse);
            grad[r * (long long)k + j] = (float)((p - (j == labels[r] ? 1.0 : 0.0)) / (double)rows);
        }
    }
}

// ---------------------------------------------------------------- gradient transforms

// Strided partial sums over a whole tensor: mode 0 Σ g, 1 Σ (g − mean[0])², 2 Σ g²; `bad` is set
// when an element is NaN or infinite.
extern "C" __global__ void tensor_partials(const float* g, long long n, const double* mean, int mode, double* part,
                                           int parts, int* bad) {
    GRID_STRIDE(t, parts) {
        double acc = 0.0;
        for (long long j = t; j < n; j += parts) {
            float v = g[j];
            if (!(fabsf(v) <= 3.402823466e38f)) *bad = 1;
            double d = mode == 1 ? (double)v - mean[0] : (double)v;
            acc += mode == 0 ? d : d * d;
        }
        part[t] = acc;
    }
}

// ZNorm's affine map from the tensor's mean and population variance (as `transform::znorm_map`):
// μ and σ rounded to f32, scale = 1/(σ + ε), shift = −μ·scale. `aff` = [scale, shift].
extern "C" __global__ void znorm_map(const double* mean, const double* var, float eps, float* aff) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        float mu = (float)mean[0], sigma = (float)sqrt(var[0]);
        float scale = 1.0f / (sigma + eps);
        aff[0] = scale;
        aff[1] = -mu * scale;
    }
}

// Gradient Centralization's map: aff = [1, −mean(row 0), −mean(row 1), ...] (row means in double,
// rounded to f32 as the CPU).
extern "C" __global__ void gc_map(const float* g, float* aff, int rows, long long cols) {
    GRID_STRIDE(r, rows) {
        double acc = 0.0;
        for (long long j = 0; j < cols; j++) acc += g[r * cols + j];
        aff[1 + r] = -(float)(acc / (double)cols);
        if (r == 0) aff[0] = 1.0f;
    }
}

// ---------------------------------------------------------------- optimizers
// torch.optim's single-tensor op order in f32, as src/kernels/optim.rs; ĝ = g·aff[0] +
// aff[1 + i / cols] (one shift per row for GC, one per tensor otherwise).

extern "C" __global__ void sgd_step(float* p, const float* g, float* buf, const float* aff, long long cols, float lr,
                                    float momentum, float weight_decay, int nesterov, int first, long long n) {
    GRID_STRIDE(i, n) {
        float d = g[i] * aff[0] + aff[1 + i / cols];
        if (weight_decay != 0.0f) d += p[i] * weight_decay;
        if (momentum != 0.0f) {
            float b = first ? d : buf[i] * momentum + d;
            buf[i] = b;
            d = nesterov ? d + b * momentum : b;
        }
        p[i] += d * -lr;
    }
}

// Adam/AdamW with the step's float32 coefficients from `kernels::optim::adam_step`; op order as
// torch's lerp_, addcmul_ and addcdiv_.
extern "C" __global__ void adam_step(float* p, const float* g, float* m, float* v, const float* aff, long long cols,
                                     float eps, float weight_decay, int decoupled, float w1, float b2, float w2,
                                     float step_size, float bc2_sqrt, float decay, long long n) {
    GRID_STRIDE(i, n) {
        float x = p[i];
        float d = g[i] * aff[0] + aff[1 + i / cols];
        if (weight_decay != 0.0f) {
            if (decoupled) {
                x *= decay;
            } else {
                d += x * weight_decay;
            }
        }
        m[i] += w1 * (d - m[i]);
        v[i] = v[i] * b2 + w2 * d * d;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] = x + -step_size * m[i] / denom;
    }
}
