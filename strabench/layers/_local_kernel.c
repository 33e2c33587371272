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
 * The hot loops are compiled for x86-64-v4/v3 and baseline, picked at load time (target_clones).
 *
 * The kernels are written once for a type T and instantiated for float and double: this file
 * includes itself with LWS_BODY defined.
 */
#ifndef LWS_BODY

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
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

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)

#define LWS_BODY
#define T float
#define S f32
#include "_local_kernel.c" /* this file, with LWS_BODY defined */
#undef T
#undef S
#define T double
#define S f64
#include "_local_kernel.c" /* this file, with LWS_BODY defined */
#undef T
#undef S

/* lets the loader check that it talks to the kernels it expects */
int lws_abi_version(void) { return 1; }

#else /* LWS_BODY: the kernels for type T, names suffixed with S */

#define F(name) CAT(name, S)

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
    if (GA) {
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

#undef F
#endif
