/*
 * Fused CPU kernels of the local weighted sum (strabench/layers/_local_kernel.py builds and
 * loads this file; _local_ops.py has the same maths as PyTorch ops, the reference for tests).
 *
 *   out[b, c, p] = sum_k a[b, g(c), k, p] * v[b, c, p + off_k]      (stride 1, K x K window)
 *
 * p runs over the flattened H*W pixels and off_k = dy*W + dx. A flat shift wraps across rows
 * at the left/right edges; those are exactly the out-of-image neighbours, whose weight the
 * caller has zeroed ("masked" attention, shape (B, G, K*K, H*W), contiguous). Each pass below
 * reads its inputs and writes its outputs once, instead of once per offset as the op-per-pass
 * version does, which is what bounds that version by memory traffic.
 *
 * Two layouts of value / out / grad tensors:
 *   nchw: (B, C, H*W) contiguous; work item = one (b, g), its C/G channel rows stay in cache;
 *   nhwc: (B, H*W, C) contiguous (torch.channels_last); work item = one (b, pixel).
 * Work items are spread over OpenMP threads (the process's own runtime: torch's libgomp).
 * The hot loops are compiled for x86-64-v4/v3 and baseline, picked at load time (target_clones;
 * LWS_ONE_TARGET builds the baseline only: the sanitizer build).
 *
 * The rest of the LocalAttention block, NCHW only (the strabench:: operators of
 * strabench/layers/ops.py): its grouped 1x1 convolutions as a register-blocked GEMM (gpw_*; a
 * channels_last copy, nchw_to_nhwc), and the attention from the logit branch's output (la_*):
 * omega + nu, the softmax over the window and the weighting above, per (b, g), forward and
 * backward. Every work item sums in a fixed order, so results do not depend on the thread count.
 *
 * Inference, NCHW, every batch norm on its running statistics: the whole LocalAttention block per
 * (b, g) in one call (la_infer), and StRA's mode attention in one call (ma_forward).
 *
 * The kernels are written once for a type T and instantiated for float and double: this file
 * includes itself with LWS_BODY defined.
 */
#ifndef LWS_BODY

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !defined(LWS_ONE_TARGET)
#define HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define HOT
#endif

/* Below this many multiply-adds a call runs on one thread: waking the team costs more. With one
 * thread (torch's setting in DataLoader workers) no OpenMP team is formed at all. */
#define PARALLEL_MIN_WORK 65536
/* Channels of one group whose attention gradient is accumulated together (one pass over GA). */
#define CBLOCK 4

static inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

/* flat offsets of the K*K neighbours, row-major over the window */
static inline void offsets(int K, int64_t W, int64_t *offs) {
    const int pad = K / 2;
    for (int k = 0; k < K * K; k++) offs[k] = (int64_t)(k / K - pad) * W + (k % K - pad);
}

/* is neighbour k of pixel (y, x) inside the H x W image */
static inline int inside(int k, int K, int64_t y, int64_t x, int64_t H, int64_t W) {
    const int pad = K / 2;
    y += k / K - pad;
    x += k % K - pad;
    return y >= 0 && y < H && x >= 0 && x < W;
}

#define INLINE static inline __attribute__((always_inline))

/* The explicitly blocked loops (the GEMM, the attention gradient) come in two vector widths:
 * "w", 64-byte vectors (one AVX-512 register), and "n", 32-byte ones (one AVX2 register), so
 * that their accumulators fit the register file either way. One is picked per process: wide
 * where the CPU has AVX-512 (lws_vector_bytes). */
static int vector_bytes = 0;

static int cpu_has_avx512(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
#else
    return 0;
#endif
}

/* The width of the blocked loops' vectors: 64 or 32 bytes; `force` 32 or 64 sets it (tests run
 * both on one machine), 0 keeps it (picked from the CPU on first call). */
int lws_vector_bytes(int force) {
    if (force == 32 || force == 64)
        vector_bytes = force;
    else if (vector_bytes == 0)
        vector_bytes = cpu_has_avx512() ? 64 : 32;
    return vector_bytes;
}

static inline int wide(void) { return (vector_bytes ? vector_bytes : lws_vector_bytes(0)) == 64; }

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)

/* exp's constants per type (F(name) picks the type's): the clamp (2^n stays normal), the Taylor
 * degree on |r| <= ln2/2 (error below half an ulp; 8 and 13 are the degrees F(expo) writes out),
 * ln2 in two parts (Cephes), the exponent's bits and bias */
#define EXP_LO_f32 (-87.0f)
#define EXP_LO_f64 (-708.0)
#define EXP_DEG_f32 8
#define EXP_DEG_f64 13
#define LN2_HI_f32 0.693359375f
#define LN2_HI_f64 6.93145751953125e-1
#define LN2_LO_f32 (-2.12194440e-4f)
#define LN2_LO_f64 1.42860682030941723212e-6
#define MANT_f32 23
#define MANT_f64 52
#define BIAS_f32 127
#define BIAS_f64 1023

#define LWS_BODY
#define T float
#define S f32
#define I int32_t /* the integer of T's size */
#include "_local_kernel.c" /* this file, with LWS_BODY defined */
#undef T
#undef S
#undef I
#define T double
#define S f64
#define I int64_t
#include "_local_kernel.c" /* this file, with LWS_BODY defined */
#undef T
#undef S
#undef I

/* lets the loader check that it talks to the kernels it expects */
int lws_abi_version(void) { return 4; }

#else /* LWS_BODY: the kernels for type T, names suffixed with S */

#define F(name) CAT(name, S)

/* vectors of T for the explicitly blocked loops (GCC/clang vector extensions), per width X */
#define VECTORS(X, BYTES)                                                                                \
    typedef T F(vec_##X) __attribute__((vector_size(BYTES)));                                         \
    INLINE F(vec_##X) F(vload_##X)(const T *p) {                                                      \
        F(vec_##X) v;                                                                                  \
        memcpy(&v, p, sizeof v);                                                                       \
        return v;                                                                                      \
    }                                                                                                  \
    INLINE void F(vstore_##X)(T *p, F(vec_##X) v) { memcpy(p, &v, sizeof v); }
VECTORS(w, 64)
VECTORS(n, 32)
#undef VECTORS
#define VL_w ((int64_t)(64 / sizeof(T)))
#define VL_n ((int64_t)(32 / sizeof(T)))

/* zero the (K*K, H*W) map m where the neighbour is outside the image (the row wraps) */
static void F(zero_outside)(T *m, int K, int64_t H, int64_t W) {
    for (int k = 0; k < K * K; k++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++)
                if (!inside(k, K, y, x, H, W)) m[(int64_t)k * H * W + y * W + x] = 0;
}

/* The NCHW rows. Row reads go through zero-padded scratch copies (R = (K/2)*(W+1) zeros on each
 * side, the farthest a flat shift reaches), so every loop runs over the whole row with no
 * bounds checks and vectorises without scalar edges; K = 3 sums its 9 terms in one pass.
 * Reads that wrap to the neighbouring image row meet a zero weight (forward, value gradient)
 * or are zeroed afterwards (attention gradient). */

/* r[p] = sum_k a[k][p] * xp[p + off_k]: a pixel's weighted neighbours; xp is a padded row */
HOT static void F(row_gather)(const T *restrict a, const T *restrict xp, T *restrict r, int64_t N,
                              int KK, const int64_t *restrict offs) {
    if (KK == 9) {
        const T *restrict a0 = a, *restrict a1 = a + N, *restrict a2 = a + 2 * N, *restrict a3 = a + 3 * N,
                *restrict a4 = a + 4 * N, *restrict a5 = a + 5 * N, *restrict a6 = a + 6 * N,
                *restrict a7 = a + 7 * N, *restrict a8 = a + 8 * N;
        const T *restrict x0 = xp + offs[0], *restrict x1 = xp + offs[1], *restrict x2 = xp + offs[2],
                *restrict x3 = xp + offs[3], *restrict x4 = xp + offs[4], *restrict x5 = xp + offs[5],
                *restrict x6 = xp + offs[6], *restrict x7 = xp + offs[7], *restrict x8 = xp + offs[8];
#pragma omp simd
        for (int64_t p = 0; p < N; p++)
            r[p] = a0[p] * x0[p] + a1[p] * x1[p] + a2[p] * x2[p] + a3[p] * x3[p] + a4[p] * x4[p] +
                   a5[p] * x5[p] + a6[p] * x6[p] + a7[p] * x7[p] + a8[p] * x8[p];
        return;
    }
    memset(r, 0, sizeof(T) * (size_t)N);
    for (int k = 0; k < KK; k++) {
        const T *restrict ak = a + (int64_t)k * N, *restrict xk = xp + offs[k];
#pragma omp simd
        for (int64_t p = 0; p < N; p++) r[p] += ak[p] * xk[p];
    }
}

/* gk[p] += sum_{j < cb} go[j][p] * vp[j][p + off] over cb channel rows (go stride N, padded
 * value rows vp stride P) */
HOT static void F(attn_grad_rows)(const T *restrict go, const T *restrict vp, int cb, T *restrict gk,
                                  int64_t N, int64_t P, int64_t off) {
    if (cb == CBLOCK) { /* the common case: one pass over gk for CBLOCK channels */
        const T *restrict g0 = go, *restrict g1 = go + N, *restrict g2 = go + 2 * N, *restrict g3 = go + 3 * N;
        const T *restrict v0 = vp + off, *restrict v1 = vp + P + off, *restrict v2 = vp + 2 * P + off,
                *restrict v3 = vp + 3 * P + off;
#pragma omp simd
        for (int64_t p = 0; p < N; p++) gk[p] += g0[p] * v0[p] + g1[p] * v1[p] + g2[p] * v2[p] + g3[p] * v3[p];
        return;
    }
    for (int j = 0; j < cb; j++) {
        const T *restrict gj = go + j * N, *restrict vj = vp + j * P + off;
#pragma omp simd
        for (int64_t p = 0; p < N; p++) gk[p] += gj[p] * vj[p];
    }
}

/* rows scratch rows of N + 2R, zero padded; NULL when out of memory */
static T *F(padded_rows)(int64_t rows, int64_t N, int64_t R) {
    return (T *)calloc((size_t)(rows * (N + 2 * R)), sizeof(T));
}

/* NCHW, one (b, g): A (KK, N) its masked attention, V/O/GO/GV its Cg channel rows, GA (KK, N).
 * Returns 0, or -1 when scratch memory ran out. */
static int F(forward_nchw)(const T *A, const T *V, T *O, int64_t Cg, int64_t N, int K, int64_t W) {
    const int64_t R = (int64_t)(K / 2) * (W + 1);
    int64_t offs[K * K];
    offsets(K, W, offs);
    T *xp = F(padded_rows)(1, N, R);
    if (!xp) return -1;
    for (int64_t c = 0; c < Cg; c++) {
        memcpy(xp + R, V + c * N, sizeof(T) * (size_t)N);
        F(row_gather)(A, xp + R, O + c * N, N, K * K, offs);
    }
    free(xp);
    return 0;
}

/* GA[k][p] = sum_c GO[c][p] * Vp[c][p + off_k] for K = 3, Vp the Cg zero-padded value rows (stride
 * P): the 9 sums of a run of pixels (one vector) stay in registers over all the group's channels */
#define ATTN_GRAD9(X)                                                                                     \
    HOT static void F(attn_grad9_##X)(const T *restrict GO, const T *restrict Vp, T *restrict GA, int64_t Cg, \
                                      int64_t N, int64_t P, const int64_t *offs) {                        \
        const int64_t o0 = offs[0], o1 = offs[1], o2 = offs[2], o3 = offs[3], o4 = offs[4], o5 = offs[5],   \
                      o6 = offs[6], o7 = offs[7], o8 = offs[8];                                           \
        int64_t p = 0;                                                                                    \
        for (; p + VL_##X <= N; p += VL_##X) {                                                            \
            F(vec_##X) s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, s4 = {0}, s5 = {0}, s6 = {0}, s7 = {0}, s8 = {0}; \
            for (int64_t c = 0; c < Cg; c++) {                                                            \
                const F(vec_##X) g = F(vload_##X)(GO + c * N + p);                                        \
                const T *v = Vp + c * P + p;                                                              \
                s0 += g * F(vload_##X)(v + o0); s1 += g * F(vload_##X)(v + o1);                           \
                s2 += g * F(vload_##X)(v + o2); s3 += g * F(vload_##X)(v + o3);                           \
                s4 += g * F(vload_##X)(v + o4); s5 += g * F(vload_##X)(v + o5);                           \
                s6 += g * F(vload_##X)(v + o6); s7 += g * F(vload_##X)(v + o7);                           \
                s8 += g * F(vload_##X)(v + o8);                                                           \
            }                                                                                             \
            const F(vec_##X) sums[9] = {s0, s1, s2, s3, s4, s5, s6, s7, s8};                              \
            for (int k = 0; k < 9; k++) F(vstore_##X)(GA + (int64_t)k * N + p, sums[k]);                  \
        }                                                                                                 \
        for (; p < N; p++) /* the pixels past the last full vector */                                     \
            for (int k = 0; k < 9; k++) {                                                                 \
                T sum = 0;                                                                                \
                for (int64_t c = 0; c < Cg; c++) sum += GO[c * N + p] * Vp[c * P + p + offs[k]];          \
                GA[(int64_t)k * N + p] = sum;                                                             \
            }                                                                                             \
    }
ATTN_GRAD9(w)
ATTN_GRAD9(n)
#undef ATTN_GRAD9

static int F(backward_nchw)(const T *A, const T *V, const T *GO, T *GA, T *GV, int64_t Cg, int64_t H,
                            int64_t W, int K) {
    const int KK = K * K;
    const int64_t N = H * W, R = (int64_t)(K / 2) * (W + 1), P = N + 2 * R;
    int64_t offs[KK], back[KK];
    offsets(K, W, offs);
    for (int k = 0; k < KK; k++) back[k] = -offs[KK - 1 - k]; /* the mirrored window */
    T *scratch = F(padded_rows)(CBLOCK + 1, N, R), *at = (T *)calloc((size_t)(KK * N), sizeof(T));
    if (!scratch || !at) {
        free(scratch);
        free(at);
        return -1;
    }
    if (GV) {
        /* d value[q] = sum_k a[k][q - off_k] * go[q - off_k]: the forward's gather with the mirrored
         * window, over the weights moved to the pixel they read (at, zero where none does) */
        for (int k = 0; k < KK; k++) {
            const int64_t off = offs[k], from = imax(0, -off), to = imin(N, N - off);
            for (int64_t p = from; p < to; p++) at[(int64_t)(KK - 1 - k) * N + p + off] = A[(int64_t)k * N + p];
        }
        T *gp = scratch + CBLOCK * P;
        for (int64_t c = 0; c < Cg; c++) {
            memcpy(gp + R, GO + c * N, sizeof(T) * (size_t)N);
            F(row_gather)(at, gp + R, GV + c * N, N, KK, back);
        }
    }
    if (GA && KK == 9) {
        T *vp = F(padded_rows)(Cg, N, R);
        if (!vp) {
            free(scratch);
            free(at);
            return -1;
        }
        for (int64_t c = 0; c < Cg; c++) memcpy(vp + c * P + R, V + c * N, sizeof(T) * (size_t)N);
        (wide() ? F(attn_grad9_w) : F(attn_grad9_n))(GO, vp + R, GA, Cg, N, P, offs);
        F(zero_outside)(GA, K, H, W);
        free(vp);
    } else if (GA) {
        memset(GA, 0, sizeof(T) * (size_t)(KK * N));
        for (int64_t c = 0; c < Cg; c += CBLOCK) {
            const int cb = (int)imin(CBLOCK, Cg - c);
            for (int j = 0; j < cb; j++) memcpy(scratch + j * P + R, V + (c + j) * N, sizeof(T) * (size_t)N);
            for (int k = 0; k < KK; k++)
                F(attn_grad_rows)(GO + c * N, scratch + R, cb, GA + (int64_t)k * N, N, P, offs[k]);
        }
        F(zero_outside)(GA, K, H, W);
    }
    free(scratch);
    free(at);
    return 0;
}

/* NHWC, one (b, p): A (G, KK, N) the image's masked attention, V/GO (N, C) its maps, o / gv the
 * C channels of pixel p, GA (G, KK, N) the image's attention gradient (pixel p's entries).
 * For K = 3 each group's channels sum their 9 terms in one vectorised pass (an outside
 * neighbour gets weight 0 and reads pixel p itself); other K accumulate offset by offset. */

/* r[c] = sum_{k < 9} w[k] * x[k][c] */
static inline void F(sum9)(const T *w, const T *const *x, T *restrict r, int64_t n) {
    const T w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
    const T *restrict x0 = x[0], *restrict x1 = x[1], *restrict x2 = x[2], *restrict x3 = x[3],
            *restrict x4 = x[4], *restrict x5 = x[5], *restrict x6 = x[6], *restrict x7 = x[7], *restrict x8 = x[8];
#pragma omp simd
    for (int64_t c = 0; c < n; c++)
        r[c] = w0 * x0[c] + w1 * x1[c] + w2 * x2[c] + w3 * x3[c] + w4 * x4[c] + w5 * x5[c] + w6 * x6[c] +
               w7 * x7[c] + w8 * x8[c];
}

HOT static void F(forward_nhwc)(const T *restrict A, const T *restrict V, T *restrict o, int64_t p,
                                int64_t G, int64_t Cg, int64_t H, int64_t W, int K) {
    const int KK = K * K, pad = K / 2;
    const int64_t N = H * W, C = G * Cg, y = p / W, x = p % W;
    if (KK == 9) {
        int64_t q[9];
        int in[9];
        for (int k = 0; k < 9; k++) {
            in[k] = inside(k, K, y, x, H, W);
            q[k] = in[k] ? p + (int64_t)(k / K - pad) * W + (k % K - pad) : p;
        }
        for (int64_t g = 0; g < G; g++) {
            T w[9];
            const T *xs[9];
            for (int k = 0; k < 9; k++) {
                w[k] = in[k] ? A[(g * 9 + k) * N + p] : 0;
                xs[k] = V + q[k] * C + g * Cg;
            }
            F(sum9)(w, xs, o + g * Cg, Cg);
        }
        return;
    }
    memset(o, 0, sizeof(T) * (size_t)C);
    for (int k = 0; k < KK; k++) {
        if (!inside(k, K, y, x, H, W)) continue;
        const int64_t q = p + (int64_t)(k / K - pad) * W + (k % K - pad);
        for (int64_t g = 0; g < G; g++) {
            const T w = A[(g * KK + k) * N + p];
            const T *restrict v = V + q * C + g * Cg;
            T *restrict og = o + g * Cg;
#pragma omp simd
            for (int64_t c = 0; c < Cg; c++) og[c] += w * v[c];
        }
    }
}

HOT static void F(backward_nhwc)(const T *restrict A, const T *restrict V, const T *restrict GO,
                                 T *restrict GA, T *restrict gv, int64_t p, int64_t G, int64_t Cg,
                                 int64_t H, int64_t W, int K) {
    const int KK = K * K, pad = K / 2;
    const int64_t N = H * W, C = G * Cg, y = p / W, x = p % W;
    /* src[k]: the pixel whose k-th neighbour p is (for the value's gradient), or -1;
     * nb[k]: p's k-th neighbour (for the attention's gradient), or -1 */
    int64_t src[KK], nb[KK];
    for (int k = 0; k < KK; k++) {
        const int64_t dy = k / K - pad, dx = k % K - pad;
        src[k] = (y - dy >= 0 && y - dy < H && x - dx >= 0 && x - dx < W) ? (y - dy) * W + x - dx : -1;
        nb[k] = inside(k, K, y, x, H, W) ? p + dy * W + dx : -1;
    }
    if (gv && KK == 9) {
        for (int64_t g = 0; g < G; g++) {
            T w[9];
            const T *xs[9];
            for (int k = 0; k < 9; k++) {
                w[k] = src[k] >= 0 ? A[(g * 9 + k) * N + src[k]] : 0;
                xs[k] = GO + (src[k] >= 0 ? src[k] : p) * C + g * Cg;
            }
            F(sum9)(w, xs, gv + g * Cg, Cg);
        }
    } else if (gv) {
        memset(gv, 0, sizeof(T) * (size_t)C);
        for (int k = 0; k < KK; k++) {
            if (src[k] < 0) continue;
            for (int64_t g = 0; g < G; g++) {
                const T w = A[(g * KK + k) * N + src[k]];
                const T *restrict go = GO + src[k] * C + g * Cg;
                T *restrict gvg = gv + g * Cg;
#pragma omp simd
                for (int64_t c = 0; c < Cg; c++) gvg[c] += w * go[c];
            }
        }
    }
    if (GA && KK == 9) {
        for (int64_t g = 0; g < G; g++) {
            const T *restrict go = GO + p * C + g * Cg;
            const T *restrict v0 = V + (nb[0] >= 0 ? nb[0] : p) * C + g * Cg,
                    *restrict v1 = V + (nb[1] >= 0 ? nb[1] : p) * C + g * Cg,
                    *restrict v2 = V + (nb[2] >= 0 ? nb[2] : p) * C + g * Cg,
                    *restrict v3 = V + (nb[3] >= 0 ? nb[3] : p) * C + g * Cg,
                    *restrict v4 = V + (nb[4] >= 0 ? nb[4] : p) * C + g * Cg,
                    *restrict v5 = V + (nb[5] >= 0 ? nb[5] : p) * C + g * Cg,
                    *restrict v6 = V + (nb[6] >= 0 ? nb[6] : p) * C + g * Cg,
                    *restrict v7 = V + (nb[7] >= 0 ? nb[7] : p) * C + g * Cg,
                    *restrict v8 = V + (nb[8] >= 0 ? nb[8] : p) * C + g * Cg;
            T s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0, s8 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3, s4, s5, s6, s7, s8)
            for (int64_t c = 0; c < Cg; c++) {
                const T gc = go[c];
                s0 += gc * v0[c]; s1 += gc * v1[c]; s2 += gc * v2[c];
                s3 += gc * v3[c]; s4 += gc * v4[c]; s5 += gc * v5[c];
                s6 += gc * v6[c]; s7 += gc * v7[c]; s8 += gc * v8[c];
            }
            const T s[9] = {s0, s1, s2, s3, s4, s5, s6, s7, s8};
            for (int k = 0; k < 9; k++) GA[(g * 9 + k) * N + p] = nb[k] >= 0 ? s[k] : 0;
        }
    } else if (GA) {
        for (int k = 0; k < KK; k++) {
            for (int64_t g = 0; g < G; g++) {
                T s = 0;
                if (nb[k] >= 0) {
                    const T *restrict go = GO + p * C + g * Cg;
                    const T *restrict v = V + nb[k] * C + g * Cg;
#pragma omp simd reduction(+ : s)
                    for (int64_t c = 0; c < Cg; c++) s += go[c] * v[c];
                }
                GA[(g * KK + k) * N + p] = s;
            }
        }
    }
}

/* Returns 0, or -1 when scratch memory ran out (the output is then incomplete). */
int F(lws_forward)(const T *A, const T *V, T *O, int64_t B, int64_t G, int64_t Cg, int64_t H,
                   int64_t W, int K, int nhwc, int threads) {
    const int64_t N = H * W, KK = (int64_t)K * K, C = G * Cg;
    const int par = threads > 1 && B * C * N * KK >= PARALLEL_MIN_WORK;
    int failed = 0;
    if (!nhwc) {
#pragma omp parallel for num_threads(threads) schedule(static) if (par) reduction(| : failed)
        for (int64_t i = 0; i < B * G; i++)
            failed |= F(forward_nchw)(A + i * KK * N, V + i * Cg * N, O + i * Cg * N, Cg, N, K, W) != 0;
    } else {
#pragma omp parallel for num_threads(threads) schedule(static) if (par)
        for (int64_t i = 0; i < B * N; i++)
            F(forward_nhwc)(A + (i / N) * G * KK * N, V + (i / N) * N * C, O + i * C, i % N, G, Cg, H, W, K);
    }
    return failed ? -1 : 0;
}

/* GA (may be NULL) gets the grad of the masked attention, zero where a neighbour is outside the
 * image; GV (may be NULL) the grad of the value. GO has V's layout. Returns as lws_forward. */
int F(lws_backward)(const T *A, const T *V, const T *GO, T *GA, T *GV, int64_t B, int64_t G,
                    int64_t Cg, int64_t H, int64_t W, int K, int nhwc, int threads) {
    const int64_t N = H * W, KK = (int64_t)K * K, C = G * Cg;
    const int par = threads > 1 && B * C * N * KK >= PARALLEL_MIN_WORK / 2;
    int failed = 0;
    if (!nhwc) {
#pragma omp parallel for num_threads(threads) schedule(static) if (par) reduction(| : failed)
        for (int64_t i = 0; i < B * G; i++)
            failed |= F(backward_nchw)(A + i * KK * N, V + i * Cg * N, GO + i * Cg * N, GA ? GA + i * KK * N : 0,
                                       GV ? GV + i * Cg * N : 0, Cg, H, W, K) != 0;
    } else {
        /* two passes (value, then attention gradient): each keeps fewer streams in cache */
        for (int pass = 0; pass < 2; pass++) {
            T *ga = pass == 1 ? GA : 0, *gv = pass == 0 ? GV : 0;
            if (!ga && !gv) continue;
#pragma omp parallel for num_threads(threads) schedule(static) if (par)
            for (int64_t i = 0; i < B * N; i++) {
                const int64_t b = i / N;
                F(backward_nhwc)(A + b * G * KK * N, V + b * N * C, GO + b * N * C, ga ? ga + b * G * KK * N : 0,
                                 gv ? gv + i * C : 0, i % N, G, Cg, H, W, K);
            }
        }
    }
    return failed ? -1 : 0;
}

/* ---- StRA's grouped 1x1 convolutions: a register-blocked GEMM ----------------------------
 *
 * Every product below is C (M x Nc) = A (M x R) @ B (R x Nc) with B's and C's rows contiguous
 * and A read through strides (so W and W^T are the same call). A tile of MR rows x NV vectors
 * keeps its MR*NV accumulators in registers over the whole reduction: per reduction step it
 * loads NV vectors of B's row and broadcasts MR entries of A (MR = 6; NV = 4 64-byte vectors, 24
 * FMAs per 4 loads, or NV = 2 32-byte ones). Columns past the last full vector take a scalar loop. */

/* init: 0 zero, 1 accumulate into C, 2 start from bias[i]; X the vector width */
#define MICRO(X, MR, NV)                                                                                  \
    INLINE void F(micro_##X##_##MR##_##NV)(T *C, int64_t ldc, int init, const T *bias, const T *A,           \
                                           int64_t sai, int64_t sak, const T *B, int64_t sbk, int64_t R) { \
        F(vec_##X) acc[MR][NV];                                                                           \
        _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++) \
            acc[i][v] = init == 1 ? F(vload_##X)(C + i * ldc + v * VL_##X)                               \
                                  : (F(vec_##X)){} + (init == 2 ? bias[i] : (T)0);                        \
        for (int64_t r = 0; r < R; r++) {                                                                 \
            F(vec_##X) b[NV];                                                                             \
            _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++) b[v] = F(vload_##X)(B + r * sbk + v * VL_##X); \
            _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) {                                        \
                const T a = A[i * sai + r * sak];                                                         \
                _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++) acc[i][v] += a * b[v];               \
            }                                                                                             \
        }                                                                                                 \
        _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++) \
            F(vstore_##X)(C + i * ldc + v * VL_##X, acc[i][v]);                                           \
    }

/* the MR-row tiles of columns [j, j + NV vectors) for rows [0, M) */
#define ROWS(X, NV)                                                                                       \
    MICRO(X, 6, NV)                                                                                       \
    MICRO(X, 4, NV)                                                                                       \
    MICRO(X, 2, NV)                                                                                       \
    MICRO(X, 1, NV)                                                                                       \
    INLINE void F(rows_##X##_##NV)(T *C, int64_t ldc, int64_t M, int init, const T *bias, const T *A,        \
                                   int64_t sai, int64_t sak, const T *B, int64_t sbk, int64_t R) {         \
        int64_t i = 0;                                                                                    \
        for (; i + 6 <= M; i += 6)                                                                        \
            F(micro_##X##_6_##NV)(C + i * ldc, ldc, init, bias ? bias + i : 0, A + i * sai, sai, sak, B, sbk, R); \
        if (i + 4 <= M) {                                                                                 \
            F(micro_##X##_4_##NV)(C + i * ldc, ldc, init, bias ? bias + i : 0, A + i * sai, sai, sak, B, sbk, R); \
            i += 4;                                                                                       \
        }                                                                                                 \
        if (i + 2 <= M) {                                                                                 \
            F(micro_##X##_2_##NV)(C + i * ldc, ldc, init, bias ? bias + i : 0, A + i * sai, sai, sak, B, sbk, R); \
            i += 2;                                                                                       \
        }                                                                                                 \
        if (i < M)                                                                                        \
            F(micro_##X##_1_##NV)(C + i * ldc, ldc, init, bias ? bias + i : 0, A + i * sai, sai, sak, B, sbk, R); \
    }

/* tiles of NV vectors (6 x NV accumulators), then of one vector, then a scalar loop */
#define GEMM(X, NV)                                                                                       \
    ROWS(X, NV)                                                                                           \
    ROWS(X, 1)                                                                                            \
    HOT static void F(gemm_##X)(T *C, int64_t ldc, int64_t M, int64_t Nc, int init, const T *bias, const T *A, \
                                int64_t sai, int64_t sak, const T *B, int64_t sbk, int64_t R) {           \
        int64_t j = 0;                                                                                    \
        for (; j + NV * VL_##X <= Nc; j += NV * VL_##X)                                                   \
            F(rows_##X##_##NV)(C + j, ldc, M, init, bias, A, sai, sak, B + j, sbk, R);                    \
        for (; j + VL_##X <= Nc; j += VL_##X) F(rows_##X##_1)(C + j, ldc, M, init, bias, A, sai, sak, B + j, sbk, R); \
        for (int64_t i = 0; i < M && j < Nc; i++)                                                         \
            for (int64_t jj = j; jj < Nc; jj++) {                                                         \
                T s = init == 1 ? C[i * ldc + jj] : init == 2 ? bias[i] : 0;                              \
                for (int64_t r = 0; r < R; r++) s += A[i * sai + r * sak] * B[r * sbk + jj];              \
                C[i * ldc + jj] = s;                                                                      \
            }                                                                                             \
    }
GEMM(w, 4) /* AVX-512: 24 of 32 registers accumulate */
GEMM(n, 2) /* AVX2: 12 of 16 */
#undef GEMM
#undef ROWS
#undef MICRO

static void F(gemm)(T *C, int64_t ldc, int64_t M, int64_t Nc, int init, const T *bias, const T *A, int64_t sai,
                    int64_t sak, const T *B, int64_t sbk, int64_t R) {
    (wide() ? F(gemm_w) : F(gemm_n))(C, ldc, M, Nc, init, bias, A, sai, sak, B, sbk, R);
}

/* Y[b, g*M + i, n] = bias[g*M + i] + sum_k W[g, i, k] X[b, g*K + k, n]   (bias may be NULL);
 * X (B, G*K, N), Y (B, G*M, N), W (G, M, K), all contiguous */
void F(gpw_forward)(const T *W, const T *bias, const T *X, T *Y, int64_t B, int64_t G, int64_t M, int64_t K,
                    int64_t N, int threads) {
    const int par = threads > 1 && B * G * M * K * N >= PARALLEL_MIN_WORK;
#pragma omp parallel for num_threads(threads) schedule(static) if (par)
    for (int64_t t = 0; t < B * G; t++) {
        const int64_t g = t % G;
        F(gemm)(Y + t * M * N, N, M, N, bias ? 2 : 0, bias ? bias + g * M : 0, W + g * M * K, K, 1,
                X + t * K * N, N, K);
    }
}

/* GX[b, g*K + k, n] = sum_i W1[g, i, k] GY1[b, g*M1 + i, n] (+ the same for W2, GY2 when W2) */
void F(gpw_backward_input)(const T *W1, const T *GY1, int64_t M1, const T *W2, const T *GY2, int64_t M2, T *GX,
                           int64_t B, int64_t G, int64_t K, int64_t N, int threads) {
    const int par = threads > 1 && B * G * (M1 + M2) * K * N >= PARALLEL_MIN_WORK;
#pragma omp parallel for num_threads(threads) schedule(static) if (par)
    for (int64_t t = 0; t < B * G; t++) {
        const int64_t g = t % G;
        F(gemm)(GX + t * K * N, N, K, N, 0, 0, W1 + g * M1 * K, 1, K, GY1 + t * M1 * N, N, M1);
        if (W2) F(gemm)(GX + t * K * N, N, K, N, 1, 0, W2 + g * M2 * K, 1, K, GY2 + t * M2 * N, N, M2);
    }
}

/* XT (B, N, C) = X (B, C, N) transposed per image (channels_last): 16 x 16 blocks go through a
 * local buffer, so both the reads and the writes are rows */
HOT void F(nchw_to_nhwc)(const T *X, T *XT, int64_t B, int64_t C, int64_t N, int threads) {
    const int64_t tiles = (C + 15) / 16;
    const int par = threads > 1 && B * C * N >= PARALLEL_MIN_WORK;
#pragma omp parallel for num_threads(threads) schedule(static) if (par)
    for (int64_t t = 0; t < B * tiles; t++) {
        const int64_t b = t / tiles, c0 = (t % tiles) * 16, nc = imin(16, C - c0);
        const T *x = X + b * C * N + c0 * N;
        T *xt = XT + b * N * C + c0;
        T buf[16][16];
        for (int64_t n0 = 0; n0 < N; n0 += 16) {
            const int64_t nn = imin(16, N - n0);
            if (nc == 16 && nn == 16) {
                for (int i = 0; i < 16; i++)
                    for (int j = 0; j < 16; j++) buf[i][j] = x[i * N + n0 + j];
                for (int j = 0; j < 16; j++)
                    for (int i = 0; i < 16; i++) xt[(n0 + j) * C + i] = buf[i][j];
            } else {
                for (int64_t i = 0; i < nc; i++)
                    for (int64_t j = 0; j < nn; j++) xt[(n0 + j) * C + i] = x[i * N + n0 + j];
            }
        }
    }
}

/* xt (N, K) = x (K, N) transposed, x's rows ldx apart: 16 x 16 blocks through a local buffer */
HOT static void F(transpose)(const T *x, int64_t ldx, T *xt, int64_t K, int64_t N) {
    T buf[16][16];
    for (int64_t k0 = 0; k0 < K; k0 += 16) {
        const int64_t nk = imin(16, K - k0);
        for (int64_t n0 = 0; n0 < N; n0 += 16) {
            const int64_t nn = imin(16, N - n0);
            if (nk == 16 && nn == 16) {
                for (int i = 0; i < 16; i++)
                    for (int j = 0; j < 16; j++) buf[i][j] = x[(k0 + i) * ldx + n0 + j];
                for (int j = 0; j < 16; j++)
                    for (int i = 0; i < 16; i++) xt[(n0 + j) * K + k0 + i] = buf[i][j];
            } else {
                for (int64_t i = 0; i < nk; i++)
                    for (int64_t j = 0; j < nn; j++) xt[(n0 + j) * K + k0 + i] = x[(k0 + i) * ldx + n0 + j];
            }
        }
    }
}

/* GW[g, i, k] = sum_b sum_n GY[b, g*M + i, n] X[b, g*K + k, n]; X (B, G*K, N) contiguous (NCHW).
 * The GEMM wants X's slice transposed (rows of K): each work item transposes its group's slice, one
 * image at a time, into a buffer of its own (N x K, cache-resident), instead of the whole
 * activation being copied to channels_last first. Work items: (group, block of rows), as few row
 * blocks as give every thread work (each block transposes the slices again); each sums over the
 * batch in order (deterministic). Returns 0, or -1 when the buffer could not be allocated. */
int F(gpw_backward_weight)(const T *GY, const T *X, T *GW, int64_t B, int64_t G, int64_t M, int64_t K, int64_t N,
                           int threads) {
    const int par = threads > 1 && B * G * M * K * N >= PARALLEL_MIN_WORK;
    if (B == 0) {
        memset(GW, 0, sizeof(T) * (size_t)(G * M * K));
        return 0;
    }
    int64_t blocks = par ? imax(1, (2 * (int64_t)threads + G - 1) / G) : 1;
    blocks = imin(blocks, imax(1, M / 6)); /* at least a 6-row micro tile per block */
    const int64_t RB = (M + blocks - 1) / blocks;
    blocks = (M + RB - 1) / RB;
    int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) if (par) reduction(| : failed)
    for (int64_t t = 0; t < G * blocks; t++) {
        const int64_t g = t / blocks, i0 = (t % blocks) * RB, rows = imin(RB, M - i0);
        T *xt = (T *)malloc(sizeof(T) * (size_t)(N * K));
        if (!xt) {
            failed = 1;
            continue;
        }
        for (int64_t b = 0; b < B; b++) {
            F(transpose)(X + (b * G + g) * K * N, N, xt, K, N);
            F(gemm)(GW + (g * M + i0) * K, K, rows, K, b > 0, 0, GY + ((b * G + g) * M + i0) * N, N, 1, xt, K, N);
        }
        free(xt);
    }
    return failed ? -1 : 0;
}

/* ---- the attention of one (b, g) from its logits, and its backward ------------------------
 *
 * L (KK + 1, N): omega_0..omega_{KK-1} and nu, as the logit branch writes them; valid (KK, N):
 * 1 where neighbour k of pixel p is inside the image. logit_k(p) = omega_k(p) + nu(p + off_k)
 * inside; outside, omega_k(p) (border "zero": nu's zero padding) or left out (border "mask").
 * A (KK, N) = softmax over k. */

/* exp(x) for F(EXP_LO) <= x <= 0, in plain arithmetic so that loops over it vectorise: x = n ln2 + r,
 * exp(r) by its Taylor polynomial, 2^n from the exponent bits. (The caller clamps x at F(EXP_LO)
 * in a loop of its own, which GCC vectorises where it would not with the clamp in here:
 * exp(F(EXP_LO)), ~1e-38 / 1e-308, instead of a subnormal or 0 is rounded away by a softmax sum
 * whose largest term is 1.) */
INLINE T F(expo)(T x) {
    const T t = x * (T)1.44269504088896341 + (T)0.5;
    I n = (I)t;
    n -= (T)n > t; /* floor */
    const T r = x - (T)n * F(LN2_HI) - (T)n * F(LN2_LO);
    T p = 1; /* Horner: 1 + r (1 + r/2 (1 + r/3 (...))), written out so the caller's loop vectorises */
#define TERM(k) p = (T)1 + r * p * (T)(1.0 / k)
#if F(EXP_DEG) > 8
    TERM(13); TERM(12); TERM(11); TERM(10); TERM(9);
#endif
    TERM(8); TERM(7); TERM(6); TERM(5); TERM(4); TERM(3); TERM(2); TERM(1);
#undef TERM
    const I bits = (I)((n + F(BIAS)) << F(MANT));
    T scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* A (KK, N) = the softmax over k of one (b, g)'s logits; m (N) scratch */
HOT static void F(softmax_fwd)(const T *restrict L, const T *restrict valid, T *restrict A, T *restrict m, int KK,
                               int64_t N, const int64_t *offs, int mask) {
    const T *nu = L + (int64_t)KK * N;
    for (int k = 0; k < KK; k++) {
        const int64_t off = offs[k], from = imax(0, -off), to = imin(N, N - off);
        const T *restrict om = L + (int64_t)k * N, *restrict vk = valid + (int64_t)k * N;
        T *restrict a = A + (int64_t)k * N;
        for (int64_t p = 0; p < N; p++) a[p] = om[p];
        for (int64_t p = from; p < to; p++) a[p] += vk[p] * nu[p + off];
        if (mask) /* an outside neighbour's weight is 0: exp(-inf) */
            for (int64_t p = 0; p < N; p++) a[p] = vk[p] != 0 ? a[p] : -INFINITY;
        if (k == 0)
            for (int64_t p = 0; p < N; p++) m[p] = a[p];
        else
            for (int64_t p = 0; p < N; p++) m[p] = a[p] > m[p] ? a[p] : m[p];
    }
    for (int k = 0; k < KK; k++) {
        T *restrict a = A + (int64_t)k * N;
        for (int64_t p = 0; p < N; p++) a[p] = a[p] - m[p] < F(EXP_LO) ? F(EXP_LO) : a[p] - m[p];
        for (int64_t p = 0; p < N; p++) a[p] = F(expo)(a[p]);
        if (mask) {
            const T *restrict vk = valid + (int64_t)k * N;
            for (int64_t p = 0; p < N; p++) a[p] *= vk[p];
        }
    }
    T *restrict s = m; /* m is done with: it holds the sums, then their inverses */
    for (int64_t p = 0; p < N; p++) s[p] = A[p];
    for (int k = 1; k < KK; k++) {
        const T *restrict a = A + (int64_t)k * N;
        for (int64_t p = 0; p < N; p++) s[p] += a[p];
    }
    for (int64_t p = 0; p < N; p++) s[p] = (T)1 / s[p];
    for (int k = 0; k < KK; k++) {
        T *restrict a = A + (int64_t)k * N;
        for (int64_t p = 0; p < N; p++) a[p] *= s[p];
    }
}

/* GL (KK + 1, N) from GA (KK, N), the gradient of the masked weights (zero outside); s (N) scratch */
HOT static void F(softmax_bwd)(const T *restrict A, const T *restrict GA, const T *restrict valid, T *restrict GL,
                               T *restrict s, int KK, int64_t N, const int64_t *offs) {
    T *restrict gnu = GL + (int64_t)KK * N;
    for (int64_t p = 0; p < N; p++) s[p] = 0;
    for (int k = 0; k < KK; k++) {
        const T *restrict a = A + (int64_t)k * N, *restrict ga = GA + (int64_t)k * N;
        for (int64_t p = 0; p < N; p++) s[p] += a[p] * ga[p];
    }
    for (int k = 0; k < KK; k++) {
        const T *restrict a = A + (int64_t)k * N, *restrict ga = GA + (int64_t)k * N;
        T *restrict gl = GL + (int64_t)k * N;
        for (int64_t p = 0; p < N; p++) gl[p] = a[p] * (ga[p] - s[p]);
    }
    for (int64_t p = 0; p < N; p++) gnu[p] = 0;
    for (int k = 0; k < KK; k++) {
        const int64_t off = offs[k], from = imax(0, -off), to = imin(N, N - off);
        const T *restrict gk = GL + (int64_t)k * N, *restrict vk = valid + (int64_t)k * N;
        for (int64_t p = from; p < to; p++) gnu[p + off] += vk[p] * gk[p];
    }
}

/* One (b, g): A (KK, N) = the softmax of its logits L (KK + 1, N), then O (Cg, N) = the weighted sum
 * of V (Cg, N) by A, masked outside the image; am: scratch of (KK + 1) * N. 0, or -1 out of memory. */
static int F(attend)(const T *L, const T *valid, const T *V, T *A, T *O, T *am, int64_t Cg, int64_t N, int K,
                     int64_t W, const int64_t *offs, int mask) {
    const int KK = K * K;
    F(softmax_fwd)(L, valid, A, am + KK * N, KK, N, offs, mask);
    for (int64_t i = 0; i < KK * N; i++) am[i] = A[i] * valid[i];
    return F(forward_nchw)(am, V, O, Cg, N, K, W);
}

/* Per (b, g): A from the logits L (B, G*(KK+1), N), then O = the weighted sum of V (B, G*Cg, N).
 * A (B, G, KK, N) is kept for the backward. Returns 0, or -1 when scratch memory ran out. */
int F(la_forward)(const T *L, const T *valid, const T *V, T *A, T *O, int64_t B, int64_t G, int64_t Cg, int64_t H,
                  int64_t W, int K, int mask, int threads) {
    const int KK = K * K;
    const int64_t N = H * W;
    const int par = threads > 1 && B * G * Cg * N * KK >= PARALLEL_MIN_WORK;
    int64_t offs[KK];
    offsets(K, W, offs);
    int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) if (par) reduction(| : failed)
    for (int64_t t = 0; t < B * G; t++) {
        T *a = A + t * KK * N, *am = (T *)malloc(sizeof(T) * (size_t)((KK + 1) * N));
        if (!am) {
            failed = 1;
            continue;
        }
        failed |= F(attend)(L + t * (KK + 1) * N, valid, V + t * Cg * N, a, O + t * Cg * N, am, Cg, N, K, W, offs,
                            mask) != 0;
        free(am);
    }
    return failed ? -1 : 0;
}

/* GL (B, G*(KK+1), N) and GV (B, G*Cg, N), either may be NULL, from GO and the forward's A */
int F(la_backward)(const T *A, const T *valid, const T *V, const T *GO, T *GL, T *GV, int64_t B, int64_t G,
                   int64_t Cg, int64_t H, int64_t W, int K, int threads) {
    const int KK = K * K;
    const int64_t N = H * W;
    const int par = threads > 1 && B * G * Cg * N * KK >= PARALLEL_MIN_WORK / 2;
    int64_t offs[KK];
    offsets(K, W, offs);
    int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) if (par) reduction(| : failed)
    for (int64_t t = 0; t < B * G; t++) {
        const T *a = A + t * KK * N;
        T *am = (T *)malloc(sizeof(T) * (size_t)((2 * KK + 1) * N)), *ga = am + KK * N;
        if (!am) {
            failed = 1;
            continue;
        }
        for (int64_t i = 0; i < KK * N; i++) am[i] = a[i] * valid[i];
        failed |= F(backward_nchw)(am, V + t * Cg * N, GO + t * Cg * N, GL ? ga : 0, GV ? GV + t * Cg * N : 0, Cg, H,
                                   W, K) != 0;
        if (GL) F(softmax_bwd)(a, ga, valid, GL + t * (KK + 1) * N, ga + KK * N, KK, N, offs);
        free(am);
    }
    return failed ? -1 : 0;
}

/* ---- inference: eval-mode batch norms, tanh, sigmoid -----------------------------------------
 *
 * Both inference kernels below take a batch norm as its weight, bias (either NULL: 1, 0), running
 * mean and variance, and eps, and apply it as x * scale + shift with scale = weight /
 * sqrt(var + eps), shift = bias - mean * scale, as torch's CPU eval-mode kernel does. */

typedef struct {
    const T *weight, *bias, *mean, *var;
    double eps;
} F(bn_t);

INLINE void F(bn_fold)(const F(bn_t) *bn, int64_t i, T *scale, T *shift) {
    const T s = (bn->weight ? bn->weight[i] : (T)1) / (T)sqrt((double)bn->var[i] + bn->eps);
    *scale = s;
    *shift = (bn->bias ? bn->bias[i] : (T)0) - bn->mean[i] * s;
}

static void F(bn_unpack)(F(bn_t) *out, int count, const T *const *bn, const double *eps) {
    for (int i = 0; i < count; i++)
        out[i] = (F(bn_t)){bn[4 * i], bn[4 * i + 1], bn[4 * i + 2], bn[4 * i + 3], eps[i]};
}

/* e[p] = exp(-factor |u[p]|) (clamped at exp's lower limit), the one exp sigmoid and tanh need */
INLINE void F(exp_neg_abs)(const T *restrict u, T *restrict e, int64_t n, T factor) {
    for (int64_t p = 0; p < n; p++) {
        const T a = u[p] < 0 ? u[p] * factor : -u[p] * factor;
        e[p] = a < F(EXP_LO) ? F(EXP_LO) : a;
    }
    for (int64_t p = 0; p < n; p++) e[p] = F(expo)(e[p]);
}

/* y[p] = sigmoid(u[p]): 1 / (1 + e) for u >= 0, e / (1 + e) below, e = exp(-|u|); e scratch */
HOT static void F(sigmoid)(const T *restrict u, T *restrict y, T *restrict e, int64_t n) {
    F(exp_neg_abs)(u, e, n, 1);
    for (int64_t p = 0; p < n; p++) y[p] = (u[p] >= 0 ? (T)1 : e[p]) / ((T)1 + e[p]);
}

/* rows [0, M) of Y (M x N): y = BN(y) with the norm's channels c0 + i, then tanh when act:
 * sign(y) (1 - e) / (1 + e), e = exp(-2|y|), within a few ulp of 1 of tanh in absolute terms
 * (a grouped conv, a BN and a softmax follow). e: scratch of N. */
HOT static void F(bn_rows)(T *restrict Y, int64_t M, int64_t N, const F(bn_t) *bn, int64_t c0, int act,
                           T *restrict e) {
    for (int64_t i = 0; i < M; i++) {
        T scale, shift;
        F(bn_fold)(bn, c0 + i, &scale, &shift);
        T *restrict y = Y + i * N;
        for (int64_t p = 0; p < N; p++) y[p] = y[p] * scale + shift;
        if (!act) continue;
        F(exp_neg_abs)(y, e, N, 2);
        for (int64_t p = 0; p < N; p++) {
            const T t = ((T)1 - e[p]) / ((T)1 + e[p]);
            y[p] = y[p] < 0 ? -t : t;
        }
    }
}

INLINE T F(dot)(const T *restrict a, const T *restrict b, int64_t n) {
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t p = 0; p < n; p++) s += a[p] * b[p];
    return s;
}

/* ---- LocalAttention in inference (strabench/layers/_local_fast.py) -------------------------------
 *
 * Per (b, g), everything of one group at once: u = Wv_g x_g (+ bias), h = tanh(BN(W1_g x_g (+ bias))),
 * L = BN(W2_g h (+ bias)) (omega_0..omega_{KK-1}, nu), then the softmax and the weighting (attend).
 * X, O (B, G*Cg, N); Wv (G, Cg, Cg), W1 (G, M1, Cg), W2 (G, KK + 1, M1), biases per output channel or
 * NULL; bn: the branch's two BNs as 4 pointers each (weight, bias, mean, var), eps theirs. Returns 0,
 * or -1 when scratch memory ran out. */
int F(la_infer)(const T *X, const T *valid, T *O, int64_t B, int64_t G, int64_t Cg, int64_t H, int64_t W, int K,
                int mask, const T *Wv, const T *bv, const T *W1, const T *b1, int64_t M1, const T *W2, const T *b2,
                const T *const *bn, const double *eps, int threads) {
    const int KK = K * K;
    const int64_t N = H * W, M2 = KK + 1;
    const int par = threads > 1 && B * G * Cg * N * (Cg + M1) >= PARALLEL_MIN_WORK;
    F(bn_t) norms[2];
    F(bn_unpack)(norms, 2, bn, eps);
    int64_t offs[KK];
    offsets(K, W, offs);
    int failed = 0;
#pragma omp parallel num_threads(threads) if (par) reduction(| : failed)
    {
        T *u = (T *)malloc(sizeof(T) * (size_t)((Cg + M1 + M2 + 2 * KK + 2) * N));
        T *h = u + Cg * N, *L = h + M1 * N, *A = L + M2 * N, *am = A + KK * N, *e = am + (KK + 1) * N;
        failed = !u;
#pragma omp for schedule(static)
        for (int64_t t = 0; t < B * G; t++) {
            const int64_t g = t % G;
            const T *x = X + t * Cg * N;
            if (!u) continue;
            F(gemm)(u, N, Cg, N, bv ? 2 : 0, bv ? bv + g * Cg : 0, Wv + g * Cg * Cg, Cg, 1, x, N, Cg);
            F(gemm)(h, N, M1, N, b1 ? 2 : 0, b1 ? b1 + g * M1 : 0, W1 + g * M1 * Cg, Cg, 1, x, N, Cg);
            F(bn_rows)(h, M1, N, &norms[0], g * M1, 1, e);
            F(gemm)(L, N, M2, N, b2 ? 2 : 0, b2 ? b2 + g * M2 : 0, W2 + g * M2 * M1, M1, 1, h, N, M1);
            F(bn_rows)(L, M2, N, &norms[1], g * M2, 0, e);
            failed |= F(attend)(L, valid, u, A, O + t * Cg * N, am, Cg, N, K, W, offs, mask) != 0;
        }
        free(u);
    }
    return failed ? -1 : 0;
}

/* ---- mode attention in inference (strabench/layers/_mode_fast.py) -----------------------------
 *
 * One call per batch, NCHW X (B, G*Cg, N), every batch norm in eval mode (running statistics):
 *
 *   phase 1, per (b, g): h = tanh(BN(W1_g x_g)) (Mh x N), l = BN(w2_g . h), M = softmax over the
 *            N pixels, z = x_g M (Cg), r(p) = sigmoid(BN(<z, x_g(p)>)); without interaction
 *            out_g = x_g + r z^T here;
 *   phase 2, per b: S = Z Z^T (G x G), rows L2-normalised, P = softmax_j(sqrt(G) S), z2 = P Z;
 *   phase 3, per (b, g): s(p) = sigmoid(BN(<z2, x_g(p)> + r(p) <z2, z>)), which is <z2, y_g(p)>
 *            for y = x + r z^T, and out_g = x_g + r z^T + s z2^T.
 *
 * Each work item sums in a fixed order. */

/* phase 1 for one (b, g): z (Cg) and r (N); out (Cg, N) too when out. buf: (Mh + 2) * N. */
HOT static void F(ma_mode)(const T *restrict x, int64_t g, int64_t Cg, int64_t N, const T *W1, const T *b1,
                           int64_t Mh, const T *W2, const T *b2, const F(bn_t) *norms, T *restrict z,
                           T *restrict r, T *restrict out, T *restrict buf) {
    T *restrict h = buf, *restrict l = buf + Mh * N, *restrict e = l + N;
    F(gemm)(h, N, Mh, N, b1 ? 2 : 0, b1 ? b1 + g * Mh : 0, W1 + g * Mh * Cg, Cg, 1, x, N, Cg);
    F(bn_rows)(h, Mh, N, &norms[0], g * Mh, 1, e);
    /* the mask's logits and their BN, then the softmax over pixels (max subtracted, as torch does) */
    F(gemm)(l, N, 1, N, b2 ? 2 : 0, b2 ? b2 + g : 0, W2 + g * Mh, Mh, 1, h, N, Mh);
    F(bn_rows)(l, 1, N, &norms[1], g, 0, e);
    T m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t p = 0; p < N; p++) m = l[p] > m ? l[p] : m;
    for (int64_t p = 0; p < N; p++) l[p] = l[p] - m < F(EXP_LO) ? F(EXP_LO) : l[p] - m;
    for (int64_t p = 0; p < N; p++) l[p] = F(expo)(l[p]);
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t p = 0; p < N; p++) sum += l[p];
    const T inv = (T)1 / sum;
    for (int64_t p = 0; p < N; p++) l[p] *= inv;
    for (int64_t c = 0; c < Cg; c++) z[c] = F(dot)(x + c * N, l, N);
    /* the first gate */
    F(gemm)(l, N, 1, N, 0, 0, z, Cg, 1, x, N, Cg);
    F(bn_rows)(l, 1, N, &norms[2], g, 0, e);
    F(sigmoid)(l, r, e, N);
    if (out)
        for (int64_t c = 0; c < Cg; c++) {
            const T zc = z[c];
            const T *restrict xc = x + c * N;
            T *restrict oc = out + c * N;
            for (int64_t p = 0; p < N; p++) oc[p] = xc[p] + r[p] * zc;
        }
}

/* phase 2 for one image: z2 (G, Cg) from z (G, Cg); s scratch (G) */
static void F(ma_mix)(const T *z, T *z2, int64_t G, int64_t Cg, T *s) {
    const T root = (T)sqrt((double)G);
    for (int64_t g = 0; g < G; g++) {
        T norm = 0, m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < G; j++) {
            s[j] = F(dot)(z + g * Cg, z + j * Cg, Cg);
            norm += s[j] * s[j];
        }
        norm = (T)sqrt((double)norm);
        norm = norm < (T)1e-12 ? (T)1e-12 : norm;
        for (int64_t j = 0; j < G; j++) {
            s[j] = root * (s[j] / norm);
            m = s[j] > m ? s[j] : m;
        }
        for (int64_t j = 0; j < G; j++) sum += s[j] = (T)exp((double)(s[j] - m));
        T *restrict out = z2 + g * Cg;
        for (int64_t c = 0; c < Cg; c++) out[c] = 0;
        for (int64_t j = 0; j < G; j++) {
            const T w = s[j] / sum;
            const T *restrict zj = z + j * Cg;
            for (int64_t c = 0; c < Cg; c++) out[c] += w * zj[c];
        }
    }
}

/* phase 3 for one (b, g); buf: 3 * N */
HOT static void F(ma_interact)(const T *restrict x, int64_t g, int64_t Cg, int64_t N, const T *restrict z,
                               const T *restrict z2, const T *restrict r, const F(bn_t) *gate, T *restrict out,
                               T *restrict buf) {
    T *restrict u = buf, *restrict s = buf + N, *restrict e = buf + 2 * N;
    F(gemm)(u, N, 1, N, 0, 0, z2, Cg, 1, x, N, Cg);
    const T zz = F(dot)(z2, z, Cg);
    for (int64_t p = 0; p < N; p++) u[p] += r[p] * zz;
    F(bn_rows)(u, 1, N, gate, g, 0, e);
    F(sigmoid)(u, s, e, N);
    for (int64_t c = 0; c < Cg; c++) {
        const T zc = z[c], z2c = z2[c];
        const T *restrict xc = x + c * N;
        T *restrict oc = out + c * N;
        for (int64_t p = 0; p < N; p++) oc[p] = xc[p] + r[p] * zc + s[p] * z2c;
    }
}

/* O = mode attention of X (B, G*Cg, N); W1 (G, Mh, Cg) and b1 (G*Mh) or NULL, the mask branch's
 * first conv; W2 (G, Mh) and b2 (G) or NULL its second; the BNs as 4 pointers each (weight, bias,
 * mean, var) in `bn`: the branch's two, the first gate's, the second gate's (only read when
 * interaction), their eps in `eps`. Returns 0, or -1 when scratch memory ran out. */
int F(ma_forward)(const T *X, T *O, int64_t B, int64_t G, int64_t Cg, int64_t N, const T *W1, const T *b1,
                  int64_t Mh, const T *W2, const T *b2, const T *const *bn, const double *eps, int interaction,
                  int threads) {
    F(bn_t) norms[4];
    F(bn_unpack)(norms, interaction ? 4 : 3, bn, eps);
    const int64_t C = G * Cg;
    const int par = threads > 1 && B * C * N * (Mh + 3) >= PARALLEL_MIN_WORK;
    if (B * C * N == 0) return 0;
    T *shared = (T *)malloc(sizeof(T) * (size_t)(B * G * (2 * Cg + N)));
    if (!shared) return -1;
    T *z = shared, *z2 = z + B * C, *r = z2 + B * C;
    int failed = 0;
#pragma omp parallel num_threads(threads) if (par) reduction(| : failed)
    {
        T *buf = (T *)malloc(sizeof(T) * (size_t)(imax(Mh + 2, 3) * N + G));
        failed = !buf; /* the others still pass every barrier below */
#pragma omp for schedule(static)
        for (int64_t t = 0; t < B * G; t++)
            if (buf)
                F(ma_mode)(X + t * Cg * N, t % G, Cg, N, W1, b1, Mh, W2, b2, norms, z + t * Cg, r + t * N,
                           interaction ? 0 : O + t * Cg * N, buf);
        if (interaction) {
#pragma omp for schedule(static)
            for (int64_t b = 0; b < B; b++)
                if (buf) F(ma_mix)(z + b * C, z2 + b * C, G, Cg, buf);
#pragma omp for schedule(static)
            for (int64_t t = 0; t < B * G; t++)
                if (buf)
                    F(ma_interact)(X + t * Cg * N, t % G, Cg, N, z + t * Cg, z2 + t * Cg, r + t * N, &norms[3],
                                   O + t * Cg * N, buf);
        }
        free(buf);
    }
    free(shared);
    return failed ? -1 : 0;
}


#undef VL_w
#undef VL_n
#undef F
#endif
