// Runs bertq's CUDA kernels on the CPU emulator against plain double-precision
// references. Built and run by TestKernelsOnCPUEmulator; prints one line per
// check and "ALL OK" at the end, exits non-zero on the first failure.
#include "cuda_emu.h"
#include "kernels_emu.cu" // the embedded kernels, rewritten by the test

#include <algorithm>
#include <random>

static std::mt19937 rng(42);
static float urand(float a) { return std::uniform_real_distribution<float>(-a, a)(rng); }
static std::vector<float> rvec(size_t n, float center, float scale) {
    std::vector<float> v(n);
    for (auto& x : v) x = center + urand(scale);
    return v;
}
static float bf(float v) { return __uint_as_float(((unsigned)f2bf(v)) << 16); }
static int failures = 0;
#define EMU(...)                                   \
    do {                                           \
        if (!emu_launch(__VA_ARGS__)) {            \
            std::printf("FAIL emulator launch\n"); \
            std::exit(1);                          \
        }                                          \
    } while (0)
static void report(const char* what, double diff, double tol) {
    bool ok = diff <= tol && !std::isnan(diff);
    std::printf("%s %s max|diff| = %.3g (tolerance %.3g)\n", ok ? "ok  " : "FAIL", what, diff, tol);
    if (!ok) failures++;
}

static void ref_ln(const double* x, int H, const float* g, const float* b, double eps, double* y) {
    double mean = 0, var = 0;
    for (int i = 0; i < H; i++) mean += x[i];
    mean /= H;
    for (int i = 0; i < H; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= H;
    for (int i = 0; i < H; i++) y[i] = (x[i] - mean) / std::sqrt(var + eps) * g[i] + b[i];
}

static void test_layernorm() {
    const int B = 2, S = 5, H = 96, V = 17, n = B * S;
    const float eps = 1e-12f;
    auto word = rvec(V * H, 0, 1), pos = rvec(S * H, 0, 0.5), typ = rvec(2 * H, 0, 0.5);
    auto g = rvec(H, 1, 0.1), b = rvec(H, 0, 0.1);
    std::vector<int> ids(n), types(n);
    for (int i = 0; i < n; i++) ids[i] = rng() % V, types[i] = i % S >= 2;
    std::vector<double> ref(n * H), row(H);
    for (int t = 0; t < n; t++) {
        for (int i = 0; i < H; i++) row[i] = (double)word[ids[t] * H + i] + pos[(t % S) * H + i] + typ[types[t] * H + i];
        ref_ln(row.data(), H, g.data(), b.data(), eps, &ref[t * H]);
    }
    std::vector<float> x32(n * H), out32(n * H);
    std::vector<bf16_t> out16(n * H);
    EMU({n}, {96}, H * 4, [&] { embed_ln_f32(ids.data(), types.data(), word.data(), pos.data(), typ.data(), g.data(), b.data(), x32.data(), x32.data(), S, H, eps); });
    double d = 0;
    for (int i = 0; i < n * H; i++) d = std::max(d, std::fabs(x32[i] - ref[i]));
    report("embed_ln_f32 (aliased x32/out)", d, 1e-5);
    EMU({n}, {64}, H * 4, [&] { embed_ln_bf16(ids.data(), types.data(), word.data(), pos.data(), typ.data(), g.data(), b.data(), x32.data(), out16.data(), S, H, eps); });
    double d32 = 0, d16 = 0;
    for (int i = 0; i < n * H; i++) {
        d32 = std::max(d32, std::fabs(x32[i] - ref[i]));
        d16 = std::max(d16, std::fabs(__uint_as_float(((unsigned)out16[i]) << 16) - ref[i]) / std::max(1.0, std::fabs(ref[i])));
    }
    report("embed_ln_bf16 fp32 stream", d32, 1e-5);
    report("embed_ln_bf16 bf16 copy (relative)", d16, 1.0 / 256);

    // add_ln: x32 = LN(x32 + delta)
    auto x0 = rvec(n * H, 0, 1), delta = rvec(n * H, 0, 1);
    for (int t = 0; t < n; t++) {
        for (int i = 0; i < H; i++) row[i] = (double)x0[t * H + i] + bf(delta[t * H + i]);
        ref_ln(row.data(), H, g.data(), b.data(), eps, &ref[t * H]);
    }
    std::vector<bf16_t> delta16(n * H);
    for (int i = 0; i < n * H; i++) delta16[i] = f2bf(delta[i]);
    x32 = x0;
    EMU({n}, {64}, H * 4, [&] { add_ln_bf16(x32.data(), delta16.data(), g.data(), b.data(), out16.data(), H, eps); });
    d = 0;
    for (int i = 0; i < n * H; i++) d = std::max(d, std::fabs(x32[i] - ref[i]));
    report("add_ln_bf16", d, 1e-5);
    for (int i = 0; i < n * H; i++) delta[i] = bf(delta[i]);
    x32 = x0;
    EMU({n}, {128}, H * 4, [&] { add_ln_f32(x32.data(), delta.data(), g.data(), b.data(), x32.data(), H, eps); });
    d = 0;
    for (int i = 0; i < n * H; i++) d = std::max(d, std::fabs(x32[i] - ref[i]));
    report("add_ln_f32 (aliased, 128 threads > H)", d, 1e-5);
}

static void test_gelu() {
    const long long n = 1000;
    auto x = rvec(n, 0, 6);
    for (int kind = 0; kind < 3; kind++) {
        auto y = x;
        EMU({2}, {64}, 0, [&] { gelu_f32(y.data(), n, kind); }); // grid-stride: 128 threads for 1000
        double d = 0;
        for (long long i = 0; i < n; i++) {
            double v = x[i], r;
            if (kind == 1) r = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
            else if (kind == 2) r = v / (1 + std::exp(-1.702 * v));
            else r = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
            d = std::max(d, std::fabs(y[i] - r));
        }
        char name[64];
        std::snprintf(name, sizeof name, "gelu_f32 kind %d", kind);
        report(name, d, 1e-5);
    }
}

// Attention reference: softmax(q·k over unmasked keys)·v, zeros when every
// key is masked (the Go engine's behaviour).
template <typename T>
static void test_attention(int B, int S, int nh, int d, const char* name, double tol) {
    const int H = nh * d;
    // The Go side's tile choice (kernels.go attentionTile).
    int kt = 64;
    auto smem = [&](int k) { return 4 * (k * (d + 1) + k * d + k + 8 * 4 * d + 8 * k); };
    while (kt >= 8 && smem(kt) > 48 * 1024) kt /= 2;
    auto qkvf = rvec((size_t)B * S * 3 * H, 0, 1.5);
    std::vector<T> qkv(qkvf.size());
    for (size_t i = 0; i < qkv.size(); i++) {
        if constexpr (sizeof(T) == 2) qkv[i] = f2bf(qkvf[i]), qkvf[i] = bf(qkvf[i]);
        else qkv[i] = qkvf[i];
    }
    std::vector<int> mask(B * S, 0);
    for (int b = 0; b < B; b++) {
        int real = b % 4 == 0 ? S : b % 4 == 1 ? 1 + (int)(rng() % S) : b % 4 == 2 ? 1 : 0;
        for (int t = 0; t < real; t++) mask[b * S + t] = 1;
        if (b % 4 == 1 && real > 3) mask[b * S + 1] = 0; // a hole, not only a padded tail
    }
    std::vector<T> ctx((size_t)B * S * H);
    const int qb = (S + 31) / 32;
    EMU({(unsigned)qb, (unsigned)nh, (unsigned)B}, {256}, smem(kt), [&] {
        if constexpr (sizeof(T) == 2) attention_bf16(qkv.data(), mask.data(), ctx.data(), S, H, d, kt);
        else attention_f32(qkv.data(), mask.data(), ctx.data(), S, H, d, kt);
    });
    double worst = 0;
    std::vector<double> p(S);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < S; i++) {
                double mx = -INFINITY;
                for (int j = 0; j < S; j++) {
                    p[j] = -INFINITY;
                    if (!mask[b * S + j]) continue;
                    double dot = 0;
                    for (int t = 0; t < d; t++) dot += (double)qkvf[((size_t)b * S + i) * 3 * H + h * d + t] * qkvf[((size_t)b * S + j) * 3 * H + H + h * d + t];
                    p[j] = dot;
                    mx = std::max(mx, dot);
                }
                double sum = 0;
                for (int j = 0; j < S; j++) {
                    p[j] = std::isinf(p[j]) ? 0 : std::exp(p[j] - mx);
                    sum += p[j];
                }
                for (int t = 0; t < d; t++) {
                    double acc = 0;
                    for (int j = 0; j < S; j++) acc += p[j] * qkvf[((size_t)b * S + j) * 3 * H + 2 * H + h * d + t];
                    double want = sum > 0 ? acc / sum : 0;
                    double got;
                    T v = ctx[((size_t)b * S + i) * H + h * d + t];
                    if constexpr (sizeof(T) == 2) got = __uint_as_float(((unsigned)v) << 16);
                    else got = v;
                    worst = std::max(worst, std::fabs(got - want));
                }
            }
    char what[128];
    std::snprintf(what, sizeof what, "%s B=%d S=%d heads=%d d=%d key tile %d", name, B, S, nh, d, kt);
    report(what, worst, tol);
}

static void test_classifier() {
    const int B = 3, S = 4, H = 160, L = 3;
    auto x = rvec(B * S * H, 0, 1), W = rvec(H * H, 0, 0.15), bias = rvec(H, 0, 0.1);
    auto Wc = rvec(H * L, 0, 0.15), bc = rvec(L, 0, 0.1);
    std::vector<float> pooled(B * H), logits(B * L);
    EMU({(H + 127) / 128, B}, {128}, H * 4, [&] { pooler(x.data(), W.data(), bias.data(), pooled.data(), S, H); });
    EMU({B}, {64}, 0, [&] { classifier(pooled.data(), Wc.data(), bc.data(), logits.data(), H, L); }); // 2 warps for 3 labels
    double dp = 0, dl = 0;
    for (int b = 0; b < B; b++) {
        std::vector<double> pr(H);
        for (int j = 0; j < H; j++) {
            double acc = bias[j];
            for (int k = 0; k < H; k++) acc += (double)x[b * S * H + k] * W[k * H + j];
            pr[j] = std::tanh(acc);
            dp = std::max(dp, std::fabs(pooled[b * H + j] - pr[j]));
        }
        for (int l = 0; l < L; l++) {
            double acc = bc[l];
            for (int k = 0; k < H; k++) acc += pr[k] * Wc[k * L + l];
            dl = std::max(dl, std::fabs(logits[b * L + l] - acc));
        }
    }
    report("pooler", dp, 1e-5);
    report("classifier", dl, 1e-5);
}

int main() {
    // f2bf: round to nearest even, like artifact.ToBF16.
    float cases[] = {1.0f, 1.00390625f /* tie, to even */, 1.01171875f /* tie, up */, -3.14159f, 1e-30f};
    unsigned short want[] = {0x3f80, 0x3f80, 0x3f82, 0xc049, 0x0da2};
    for (int i = 0; i < 5; i++)
        if (f2bf(cases[i]) != want[i]) {
            std::printf("FAIL f2bf(%g) = %#x, want %#x\n", cases[i], f2bf(cases[i]), want[i]);
            failures++;
        }
    test_layernorm();
    test_gelu();
    test_attention<float>(4, 40, 2, 16, "attention_f32", 1e-5);
    test_attention<float>(4, 130, 2, 64, "attention_f32", 1e-5);
    test_attention<float>(2, 37, 1, 128, "attention_f32", 1e-5);
    test_attention<bf16_t>(4, 70, 2, 64, "attention_bf16", 2e-2);
    test_classifier();
    if (failures) {
        std::printf("%d FAILED\n", failures);
        return 1;
    }
    std::printf("ALL OK\n");
    return 0;
}
