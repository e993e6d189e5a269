/* int8 / int4 block-quantized matmul for x86 CPUs with AVX2 + FMA + F16C, with AVX-512 (BW, VNNI)
 * loops chosen at run time where the CPU has them (billion/core/native.py).
 *
 * Decode on a CPU is bound by the bytes of weight read per token, so weights are stored in groups
 * along the input dimension: int8 in groups of 256 with an fp16 scale, 8.06 bits per weight (or 128
 * / 64 where a row is shorter, and llama.cpp's Q8_0 blocks of 32, 8.5 bits, for weights from a GGUF);
 * int4 in groups of 64 with an fp16 scale and minimum (MLX's default 4-bit layout), 4.5 bits per
 * weight, 10% fewer bytes than groups of 32 (Q4_1's 5 bits), or in groups of 32 for weights that
 * come from a GGUF with 32-wide blocks (they lie on that grid already). Activations are quantized
 * on the fly (int8 per block of 32 against int4 weights, int16 per weight group against int8
 * weights), so the inner product is an integer one (maddubs / madd / dpbusd / dpwssd) and one fp32
 * FMA per block (int8 in groups: per group).
 * Threads: OpenMP, in the same libgomp torch loaded (one pool, no two runtimes spinning).
 */
#include <immintrin.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QK 32
/* Weight rows are read this far ahead with software prefetches: a SmolLM2-135M int8 step fell from
 * 15.7 to 12.4 ms on 2 threads (interleaved A/B on the real model, docs/benchmarks/decode.md);
 * 4 and 8 rows measured alike, 2 less. */
#ifndef PREFETCH_ROWS
#define PREFETCH_ROWS 4
#endif

/* Per row of the weight: the row's fp16 scales (int4: one per group, then its fp16 group minimums),
 * then its quantized values (int4: byte j of a block of 32 holds element j low and element j + 16
 * high). Scales apart from the values let eight of them convert in one instruction. A group is
 * 32 << gs values (int4: gs 0 or 1; int8: 0 to 3). int4's activations per row: nb fp32 scales, nb
 * fp32 scaled sums (d * sum(q), for int4's minimums), then nb * 32 int8 values; int8's: one fp32
 * scale per group, then nb * 32 int16 values. */
int billion_block_sizes(int which) {
    return which == 4 ? 4 + QK / 2 : which == 8 ? 2 + QK : 8 + QK;
}

static inline int64_t q4_row_bytes(int64_t nb, int gs) { return nb * (QK / 2) + 4 * (nb >> gs); }
/* int8 rows: one fp16 scale per group of 32 << gs, then the values; int16 activations alike, with an
 * fp32 scale per group */
static inline int64_t q8_row_bytes(int64_t nb, int gs) { return nb * QK + 2 * (nb >> gs); }
static inline int64_t a16_row_bytes(int64_t nb, int gs) { return nb * 2 * QK + 4 * (nb >> gs); }
/* The AVX-512 loops read int8 groups' int16 activations as two int8 planes, a = 256 hi + lo with lo
 * and hi in [-128, 127] (so at most 32639 levels, not 32767), and the weights as unsigned (w + 128:
 * the sign bit flipped), so one dpbusd per plane multiplies 64 weights: 3 instructions per 64
 * weights (a flip, two dpbusd) instead of 4 (two sign extensions, two dpwssd): a TinyLlama-shaped token's int8 calls
 * 1.02-1.03x faster, up to 1.09x while memory is slow (docs/benchmarks/decode.md; the loop leaves
 * memory less time idle). Per group, 16 int32 lanes of 128 * sum(a) over each
 * dpbusd lane's positions take the +128 back out before the lanes turn to floats. Per row: one fp32
 * scale per group, the lanes (64 bytes per group), then the hi plane, then the lo plane. */
static inline int64_t a8g_row_bytes(int64_t nb, int gs) { return 68 * (nb >> gs) + 2 * nb * QK; }
static inline int64_t act8_row_bytes(int planes, int64_t nb, int gs) {
    return planes ? a8g_row_bytes(nb, gs) : a16_row_bytes(nb, gs);
}

/* Eight blocks' fp16 group values as eight floats: with groups of 64, four values each repeated. */
static inline __m256 groups8(const uint16_t *g, int gs) {
    if (!gs) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
    const __m128i four = _mm_loadl_epi64((const __m128i *)g);
    return _mm256_cvtph_ps(_mm_unpacklo_epi16(four, four));
}

static inline float hsum(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

static inline int hsum_i32(__m256i v) {
    __m128i x = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0x4E));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0xB1));
    return _mm_cvtsi128_si32(x);
}

/* A block's 32 floats into four registers; returns their largest absolute value. */
static inline float load_block(const float *x, __m256 v[4]) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 amax = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[i]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* One block of 32 floats to int8 with the block's absolute maximum as 127: elements 0-15 to lo,
 * 16-31 to hi (the AVX-512 loop reads four blocks' halves side by side). */
static void quantize_block(const float *x, int8_t *lo, int8_t *hi, float *d_out, float *s_out) {
    __m256 v[4];
    const float top = load_block(x, v);
    const float d = top / 127.0f;
    const __m256 id = _mm256_set1_ps(top > 0.0f ? 127.0f / top : 0.0f);
    __m256i q[4];
    for (int i = 0; i < 4; i++)
        q[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[i], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const int total = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    /* packs interleave the 128-bit lanes: the permute puts the 32 bytes back in order */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm_storeu_si128((__m128i *)lo, _mm256_castsi256_si128(p));
    _mm_storeu_si128((__m128i *)hi, _mm256_extracti128_si256(p, 1));
    *d_out = d;
    *s_out = d * (float)total;
}

/* quad: lay each complete run of four blocks out as their four first halves, then their four
 * second halves (dot_q4_512's order); the rest in order. */
static void quantize_act(const float *x, int64_t rows, int64_t k, uint8_t *out, int quad, int threads) {
    const int64_t nb = k / QK;
    #pragma omp parallel for num_threads(threads) schedule(static) if (rows * k >= 65536)
    for (int64_t i = 0; i < rows * nb; i++) {
        uint8_t *row = out + (i / nb) * nb * (8 + QK);
        const int64_t b = i % nb;
        int8_t *q = (int8_t *)(row + 8 * nb) + b * QK, *lo = q, *hi = q + QK / 2;
        if (quad && (b | 3) < nb) {
            lo = (int8_t *)(row + 8 * nb) + (b & ~3) * QK + (b & 3) * (QK / 2);
            hi = lo + 2 * QK;
        }
        quantize_block(x + i * QK, lo, hi, (float *)row + b, (float *)row + nb + b);
    }
}

/* int8 weights meet int16 activations (a group's maximum as 32767): the int8 path stays as close
 * to fp32 as weight-only int8 (int8 activations flipped SmolLM2's first answer word on a near
 * tie), and its dot product (madd_epi16 / dpwssd) is still cheap next to the weight bytes it waits
 * for. A group is `per` blocks of 32 sharing one scale, the weights' group. */
static void quantize_group16(const float *x, int64_t per, float levels, int16_t *q_out, float *d_out) {
    __m256 v[4];
    float top = 0.0f;
    for (int64_t b = 0; b < per; b++) {
        const float m = load_block(x + b * QK, v);
        top = m > top ? m : top;
    }
    const __m256 id = _mm256_set1_ps(top > 0.0f ? levels / top : 0.0f);
    for (int64_t b = 0; b < per; b++) {
        load_block(x + b * QK, v);
        __m256i q[4];
        for (int i = 0; i < 4; i++)
            q[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[i], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        /* packs interleave the 128-bit lanes: the permute puts the 16 values back in order */
        int16_t *o = q_out + b * QK;
        _mm256_storeu_si256((__m256i *)o, _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xD8));
        _mm256_storeu_si256((__m256i *)(o + 16), _mm256_permute4x64_epi64(_mm256_packs_epi32(q[2], q[3]), 0xD8));
    }
    *d_out = top / levels;
}

/* One group's int16 values (a multiple of 64 of them) as the AVX-512 loops' planes and lanes (see
 * a8g_row_bytes), 32 values per step: lo = ((a + 128) & 255) - 128 and hi = (a - lo) >> 8, both in
 * [-128, 127] for |a| <= 32639; lane l of a 64-value chunk sums a[4l..4l+3] (four of them per chunk,
 * so the group's lanes add its chunks). */
static void split_planes(const int16_t *a, int64_t count, int8_t *hi, int8_t *lo, int32_t *lanes) {
    const __m256i bias = _mm256_set1_epi16(128), byte = _mm256_set1_epi16(255), ones = _mm256_set1_epi16(1);
    __m256i sums[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int64_t p = 0; p < count; p += 32) {
        const __m256i a0 = _mm256_loadu_si256((const __m256i *)(a + p));
        const __m256i a1 = _mm256_loadu_si256((const __m256i *)(a + p + 16));
        const __m256i l0 = _mm256_sub_epi16(_mm256_and_si256(_mm256_add_epi16(a0, bias), byte), bias);
        const __m256i l1 = _mm256_sub_epi16(_mm256_and_si256(_mm256_add_epi16(a1, bias), byte), bias);
        const __m256i h0 = _mm256_srai_epi16(_mm256_sub_epi16(a0, l0), 8), h1 = _mm256_srai_epi16(_mm256_sub_epi16(a1, l1), 8);
        /* packs interleave the 128-bit lanes: the permute puts the 32 bytes back in order */
        _mm256_storeu_si256((__m256i *)(hi + p), _mm256_permute4x64_epi64(_mm256_packs_epi16(h0, h1), 0xD8));
        _mm256_storeu_si256((__m256i *)(lo + p), _mm256_permute4x64_epi64(_mm256_packs_epi16(l0, l1), 0xD8));
        /* pairs (madd), then pairs of pairs (hadd, lane-interleaved like packs): the 8 sums of four */
        const __m256i quads = _mm256_permute4x64_epi64(
            _mm256_hadd_epi32(_mm256_madd_epi16(a0, ones), _mm256_madd_epi16(a1, ones)), 0xD8);
        sums[(p >> 5) & 1] = _mm256_add_epi32(sums[(p >> 5) & 1], quads);  /* values 0-31 of a chunk: lanes 0-7 */
    }
    _mm256_storeu_si256((__m256i *)lanes, _mm256_slli_epi32(sums[0], 7));
    _mm256_storeu_si256((__m256i *)(lanes + 8), _mm256_slli_epi32(sums[1], 7));
}

/* planes: the AVX-512 loops' layout for int8 groups (gs > 0), else int16 values */
static void quantize_act16(const float *x, int64_t rows, int64_t k, uint8_t *out, int gs, int planes, int threads) {
    const int64_t nb = k / QK, ng = nb >> gs, per = (int64_t)1 << gs;
    const float levels = gs ? 32639.0f : 32767.0f;  /* groups: what the planes can hold, on both ISAs alike */
    #pragma omp parallel for num_threads(threads) schedule(static) if (rows * k >= 65536)
    for (int64_t i = 0; i < rows * ng; i++) {
        uint8_t *row = out + (i / ng) * act8_row_bytes(planes, nb, gs);
        const int64_t g = i % ng;
        if (!planes) {
            quantize_group16(x + i * per * QK, per, levels, (int16_t *)(row + 4 * ng) + g * per * QK, (float *)row + g);
            continue;
        }
        int16_t values[8 * QK];  /* groups are at most 256 values */
        int8_t *hi = (int8_t *)(row + 68 * ng) + g * per * QK;
        quantize_group16(x + i * per * QK, per, levels, values, (float *)row + g);
        split_planes(values, per * QK, hi, hi + nb * QK, (int32_t *)(row + 4 * ng) + 16 * g);
    }
}

/* Eight block scales (fp16 weight x fp32 activation) at once, kept in memory for broadcasts. */
static inline void scales8(const uint16_t *wd, const float *ad, float *out) {
    const __m256 w = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)wd));
    _mm256_storeu_ps(out, _mm256_mul_ps(w, _mm256_loadu_ps(ad)));
}

static inline __m256i q4_block(const uint8_t *q, const int8_t *a) {
    const __m128i r = _mm_loadu_si128((const __m128i *)q);
    const __m256i w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(r, 4), r), _mm256_set1_epi8(0x0F));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, _mm256_loadu_si256((const __m256i *)a)), _mm256_set1_epi16(1));
}

static inline __m256i q8_block(const int8_t *q, const int16_t *a) {
    const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)q));
    const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(q + 16)));
    return _mm256_add_epi32(_mm256_madd_epi16(w0, _mm256_loadu_si256((const __m256i *)a)),
                            _mm256_madd_epi16(w1, _mm256_loadu_si256((const __m256i *)(a + 16))));
}

static float dot_q4(const uint8_t *row, const uint8_t *act, int64_t nb, int gs) {
    const uint16_t *wd = (const uint16_t *)row, *wm = wd + (nb >> gs);
    const uint8_t *wq = row + 4 * (nb >> gs);
    const float *ad = (const float *)act, *as = ad + nb;
    const int8_t *aq = (const int8_t *)(act + 8 * nb);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 mins = _mm256_setzero_ps();
    float sc[8];
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        _mm256_storeu_ps(sc, _mm256_mul_ps(groups8(wd + (b >> gs), gs), _mm256_loadu_ps(ad + b)));
        mins = _mm256_fmadd_ps(groups8(wm + (b >> gs), gs), _mm256_loadu_ps(as + b), mins);
        for (int i = 0; i < 8; i++)
            acc[i & 3] = _mm256_fmadd_ps(_mm256_broadcast_ss(sc + i),
                                         _mm256_cvtepi32_ps(q4_block(wq + (b + i) * (QK / 2), aq + (b + i) * QK)), acc[i & 3]);
    }
    float tail = 0.0f;
    for (; b < nb; b++) {
        acc[0] = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(wd[b >> gs]) * ad[b]),
                                 _mm256_cvtepi32_ps(q4_block(wq + b * (QK / 2), aq + b * QK)), acc[0]);
        tail += _cvtsh_ss(wm[b >> gs]) * as[b];
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))) + hsum(mins) + tail;
}

static float dot_q8(const uint8_t *row, const uint8_t *act, int64_t nb) {
    const uint16_t *wd = (const uint16_t *)row;
    const int8_t *wq = (const int8_t *)(row + 2 * nb);
    const float *ad = (const float *)act;
    const int16_t *aq = (const int16_t *)(act + 4 * nb);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    float sc[8];
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        scales8(wd + b, ad + b, sc);
        for (int i = 0; i < 8; i++)
            acc[i & 3] = _mm256_fmadd_ps(_mm256_broadcast_ss(sc + i),
                                         _mm256_cvtepi32_ps(q8_block(wq + (b + i) * QK, aq + (b + i) * QK)), acc[i & 3]);
    }
    for (; b < nb; b++)
        acc[0] = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(wd[b]) * ad[b]),
                                 _mm256_cvtepi32_ps(q8_block(wq + b * QK, aq + b * QK)), acc[0]);
    return hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

/* int8 in groups of 32 << gs (gs > 0): the integer sums run over a whole group, then one
 * conversion and FMA per group instead of per block. */
static float dot_q8g(const uint8_t *row, const uint8_t *act, int64_t nb, int gs) {
    const int64_t ng = nb >> gs, per = (int64_t)1 << gs;
    const uint16_t *wd = (const uint16_t *)row;
    const int8_t *wq = (const int8_t *)(row + 2 * ng);
    const float *ad = (const float *)act;
    const int16_t *aq = (const int16_t *)(act + 4 * ng);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t g = 0; g < ng; g++) {
        const int8_t *q = wq + g * per * QK;
        const int16_t *a = aq + g * per * QK;
        __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
        for (int64_t i = 0; i < per; i += 2) {
            s0 = _mm256_add_epi32(s0, q8_block(q + i * QK, a + i * QK));
            s1 = _mm256_add_epi32(s1, q8_block(q + (i + 1) * QK, a + (i + 1) * QK));
        }
        acc[g & 1] = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(wd[g]) * ad[g]),
                                     _mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), acc[g & 1]);
    }
    return hsum(_mm256_add_ps(acc[0], acc[1]));
}

/* 1 where the AVX-512 loops run, 0 for AVX2; billion_set_isa(0) forces AVX2 (tests compare both). */
static int use512 = -1;

/* A compiler that cannot target AVX-512 VNNI builds without those loops (native.build retries with
 * BILLION_NO_AVX512), rather than leaving the machine without any kernels. */
#ifndef BILLION_NO_AVX512
#include "qblocks_avx512.h"
#endif

int billion_set_isa(int avx512) {
#ifdef BILLION_NO_AVX512
    (void)avx512;
    use512 = 0;
#else
    __builtin_cpu_init();
    const int has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                    __builtin_cpu_supports("avx512vnni");
    use512 = avx512 && has;
#endif
    return use512;
}

int billion_get_isa(void) {
    if (use512 < 0) billion_set_isa(1);
    return use512;
}

static inline float dot_row(int wide, int bits, const uint8_t *row, const uint8_t *act, int64_t nb, int gs) {
#ifndef BILLION_NO_AVX512
    if (wide) return bits == 4 ? dot_q4_512(row, act, nb, gs) : gs ? dot_q8g_512(row, act, nb, gs) : dot_q8_512(row, act, nb);
#endif
    return bits == 4 ? dot_q4(row, act, nb, gs) : gs ? dot_q8g(row, act, nb, gs) : dot_q8(row, act, nb);
}

/* The float weight back, for a long prompt's BLAS GEMM and for checks (8 values per instruction). */
static inline void store_scaled(const __m128i bytes8, __m256 d, __m256 m, float *out) {
    _mm256_storeu_ps(out, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes8)), d, m));
}

void billion_q4_dequantize(const uint8_t *w, int64_t n, int64_t k, int gs, float *out, int threads) {
    const int64_t nb = k / QK, wrow = q4_row_bytes(nb, gs);
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t j = 0; j < n; j++) {
        const uint16_t *wd = (const uint16_t *)(w + j * wrow), *wm = wd + (nb >> gs);
        const uint8_t *wq = w + j * wrow + 4 * (nb >> gs);
        for (int64_t b = 0; b < nb; b++) {
            const __m256 d = _mm256_set1_ps(_cvtsh_ss(wd[b >> gs])), m = _mm256_set1_ps(_cvtsh_ss(wm[b >> gs]));
            const __m128i r = _mm_loadu_si128((const __m128i *)(wq + b * QK / 2));
            const __m128i lo = _mm_and_si128(r, _mm_set1_epi8(0x0F));
            const __m128i hi = _mm_and_si128(_mm_srli_epi16(r, 4), _mm_set1_epi8(0x0F));
            float *o = out + j * k + b * QK;
            store_scaled(lo, d, m, o);
            store_scaled(_mm_srli_si128(lo, 8), d, m, o + 8);
            store_scaled(hi, d, m, o + 16);
            store_scaled(_mm_srli_si128(hi, 8), d, m, o + 24);
        }
    }
}

void billion_q8_dequantize(const uint8_t *w, int64_t n, int64_t k, int gs, float *out, int threads) {
    const int64_t nb = k / QK, wrow = q8_row_bytes(nb, gs);
    const __m256 zero = _mm256_setzero_ps();
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t j = 0; j < n; j++) {
        const uint16_t *wd = (const uint16_t *)(w + j * wrow);
        const uint8_t *wq = w + j * wrow + 2 * (nb >> gs);
        for (int64_t b = 0; b < nb; b++) {
            const __m256 d = _mm256_set1_ps(_cvtsh_ss(wd[b >> gs]));
            for (int i = 0; i < QK; i += 8)
                store_scaled(_mm_loadl_epi64((const __m128i *)(wq + b * QK + i)), d, zero, out + j * k + b * QK + i);
        }
    }
}

/* Several weights that read the same input (q|k|v, gate|up), side by side in one output: the input
 * is quantized once, and one parallel loop covers all their rows (one fork/join, not one per weight).
 * Weight i writes columns [sum(ns[:i]), sum(ns[:i+1])) of y (rows x sum(ns)). wide: the AVX-512 loops. */
static void matmul_cat(int wide, int bits, int gs, int count, const uint8_t *const *ws, const int64_t *ns, int64_t k,
                       const uint8_t *a, int64_t rows, float *y, int threads) {
    const int64_t nb = k / QK;
    const int64_t wrow = bits == 4 ? q4_row_bytes(nb, gs) : q8_row_bytes(nb, gs);
    const int64_t arow = bits == 4 ? nb * (8 + QK) : act8_row_bytes(wide && gs, nb, gs);
    int64_t total = 0;
    for (int i = 0; i < count; i++) total += ns[i];
    /* about eight chunks a thread: long runs of consecutive rows keep each thread's prefetch stream
     * on its own rows (64-row chunks streamed 8% slower), and a few chunks still balance a thread
     * the host slows down */
    const int64_t chunk = total / (8 * threads) < 16 ? 16 : total / (8 * threads) > 256 ? 256 : total / (8 * threads);
    #pragma omp parallel for num_threads(threads) schedule(dynamic, chunk)
    for (int64_t j = 0; j < total; j++) {
        int i = 0;
        int64_t r = j;
        while (r >= ns[i]) r -= ns[i++];
        const uint8_t *row = ws[i] + r * wrow;
        if (!wide && r + PREFETCH_ROWS < ns[i]) {  /* the hardware prefetcher alone left ~20% of a step waiting */
            const char *ahead = (const char *)(row + PREFETCH_ROWS * wrow);
            for (int64_t off = 0; off < wrow; off += 64) _mm_prefetch(ahead + off, _MM_HINT_T0);
        }
        int64_t m = 0;
#ifndef BILLION_NO_AVX512
        for (; wide && bits == 4 && m + 4 <= rows; m += 4)  /* a prompt: four of its rows per weight load */
            dot_q4_512_x4(row, a + m * arow, arow, nb, gs, y + m * total + j, total);
#endif
        for (; m < rows; m++)
            y[m * total + j] = dot_row(wide, bits, row, a + m * arow, nb, gs);
    }
}

/* Quantize the activations and multiply, in one call from Python (no tensor allocation for the
 * int8 activations). bits: 8, or 4 with groups of 32 << gs. Returns 1 when there is no memory for
 * the activations. */
int billion_linear_cat(int bits, int gs, int count, const uint8_t *const *ws, const int64_t *ns, int64_t k,
                       const float *x, int64_t rows, float *y, int threads) {
    const int wide = billion_get_isa();  /* once per call: the activations' layout and the loops agree */
    uint8_t *acts = (uint8_t *)malloc((size_t)(rows * (bits == 4 ? (k / QK) * (8 + QK) : act8_row_bytes(wide && gs, k / QK, gs))));
    if (!acts) return 1;
    if (bits == 4)
        quantize_act(x, rows, k, acts, wide, threads);
    else
        quantize_act16(x, rows, k, acts, gs, wide && gs, threads);
    matmul_cat(wide, bits, gs, count, ws, ns, k, acts, rows, y, threads);
    free(acts);
    return 0;
}

int billion_linear(int bits, int gs, const uint8_t *w, int64_t n, int64_t k, const float *x, int64_t rows,
                   float *y, int threads) {
    return billion_linear_cat(bits, gs, 1, &w, &n, k, x, rows, y, threads);
}

/* Rotary embedding in place on `heads` heads of each row of x (rows x stride floats), head h
 * starting at h * head_stride (q then k heads side by side as the fused q|k|v projection writes
 * them: head_stride = dim; GPT-NeoX's per-head q,k,v: 3 * head size), on each head's first dim
 * values (partial rotary leaves the rest), with cos/sin rows (rows x dim). The same roundings as
 * transformers' q * cos + rotate_half(q) * sin: a multiply, a multiply, an add (so no FMA
 * contraction here), so the result is bit-identical. */
__attribute__((optimize("fp-contract=off")))
void billion_rope(float *x, int64_t rows, int64_t stride, int64_t heads, int64_t head_stride, int64_t dim,
                  const float *cos, const float *sin) {
    const int64_t half = dim / 2;
    for (int64_t t = 0; t < rows; t++) {
        const float *c = cos + t * dim, *s = sin + t * dim;
        for (int64_t h = 0; h < heads; h++) {
            float *v = x + t * stride + h * head_stride;
            for (int64_t i = 0; i < half; i++) {
                const float a = v[i], b = v[i + half];
                const float lo = a * c[i] - b * s[i];
                const float hi = b * c[i + half] + a * s[i + half];
                v[i] = lo;
                v[i + half] = hi;
            }
        }
    }
}

#include "rms_norm.h"
#include "llama_layer.h"
