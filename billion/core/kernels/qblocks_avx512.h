/* AVX-512 (BW + VNNI) loops of qblocks.c, included there after its AVX2 helpers.
 *
 * The two dot products again, chosen at run time where the CPU has AVX-512 BW + VNNI (Ice Lake and
 * later Xeons, Zen 4): twice the lanes per instruction, and VNNI's dpbusd does int4's multiply-add
 * in one step. At 2 threads the AVX2 loops are compute-bound at ~18 GB/s of weights a core (hot in
 * cache), which leaves memory idle; these reach ~23 (benchmarks/quant_kernels.py). Same block
 * layouts; int4 reads its activations four blocks at a time (quantize_act's quad order). */

/* The AVX-512 loops prefetch one cache line per line they read, this far ahead (past a row's end
 * into the next row's, rows being consecutive): 4 KB ahead streamed TinyLlama-shaped int8 weights
 * at 22.9 GB/s against 20.0 with the row-ahead bursts (interleaved A/B of both builds in one process);
 * 2 and 8 KB measured alike. Into L2 (T2), not L1 (likely because the L1's few fill buffers cap the
 * lines in flight per core): a TinyLlama-shaped int8 sweep went from 23.0 to 25.4 GB/s (int4 22.5 to
 * 23.5) with T2 (T1 alike, NTA 17.4; docs/benchmarks/decode.md). */
#ifndef PREFETCH_BYTES
#define PREFETCH_BYTES 4096
#endif
#define T512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

/* The loops' prefetches run PREFETCH_BYTES ahead of the values they read, so a row's span of them
 * skips as many bytes as the row's scales take; this fetches that gap (the scales' span at the
 * row's start plus PREFETCH_BYTES, which no row's values reach). */
T512 static inline void prefetch_head(const uint8_t *row, int64_t scale_bytes) {
    for (int64_t off = 0; off < scale_bytes; off += 64)
        _mm_prefetch((const char *)row + PREFETCH_BYTES + off, _MM_HINT_T2);
}

/* Sixteen blocks' fp16 group values as sixteen floats (groups of 64: eight values each twice). */
T512 static inline __m512 groups16(const uint16_t *g, int gs) {
    if (!gs) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
    const __m128i eight = _mm_loadu_si128((const __m128i *)g);
    return _mm512_cvtph_ps(_mm256_set_m128i(_mm_unpackhi_epi16(eight, eight), _mm_unpacklo_epi16(eight, eight)));
}

/* Four int4 blocks (64 bytes) against their int8 activations laid out as quantize_act's quad:
 * lanes 4i..4i+3 sum block i's products. */
T512 static inline __m512i q4_quad512(const uint8_t *q, const int8_t *a) {
    const __m512i r = _mm512_loadu_si512((const void *)q), mask = _mm512_set1_epi8(0x0F);
    const __m512i lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(r, mask),
                                           _mm512_loadu_si512((const void *)a));
    return _mm512_dpbusd_epi32(lo, _mm512_and_si512(_mm512_srli_epi16(r, 4), mask),
                               _mm512_loadu_si512((const void *)(a + 2 * QK)));
}

/* int4 blocks b.. of a row (fewer than 16: what the 16-block loops leave), four at a time, then
 * one by one. */
T512 static float q4_tail512(const uint8_t *row, const uint8_t *act, int64_t nb, int gs, int64_t b) {
    const uint16_t *wd = (const uint16_t *)row, *wm = wd + (nb >> gs);
    const uint8_t *wq = row + 4 * (nb >> gs);
    const float *ad = (const float *)act, *as = ad + nb;
    const int8_t *aq = (const int8_t *)(act + 8 * nb);
    float tail = 0.0f;
    for (; (b | 3) < nb; b += 4) {
        const __m512i sums = q4_quad512(wq + b * (QK / 2), aq + b * QK);
        for (int i = 0; i < 4; i++)
            tail += _cvtsh_ss(wd[(b + i) >> gs]) * ad[b + i] *
                    (float)_mm512_mask_reduce_add_epi32((__mmask16)(0xF << (4 * i)), sums)
                    + _cvtsh_ss(wm[(b + i) >> gs]) * as[b + i];
    }
    for (; b < nb; b++)
        tail += _cvtsh_ss(wd[b >> gs]) * ad[b] * (float)hsum_i32(q4_block(wq + b * (QK / 2), aq + b * QK))
                + _cvtsh_ss(wm[b >> gs]) * as[b];
    return tail;
}

T512 static float dot_q4_512(const uint8_t *row, const uint8_t *act, int64_t nb, int gs) {
    const uint16_t *wd = (const uint16_t *)row, *wm = wd + (nb >> gs);
    const uint8_t *wq = row + 4 * (nb >> gs);
    const float *ad = (const float *)act, *as = ad + nb;
    const int8_t *aq = (const int8_t *)(act + 8 * nb);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), mins = _mm512_setzero_ps();
    prefetch_head(row, 4 * (nb >> gs));
    int64_t b = 0;
    for (; b + 16 <= nb; b += 16) {
        const __m512 d = _mm512_mul_ps(groups16(wd + (b >> gs), gs), _mm512_loadu_ps(ad + b));
        mins = _mm512_fmadd_ps(groups16(wm + (b >> gs), gs), _mm512_loadu_ps(as + b), mins);
        /* each block's scale over its four lanes */
        const __m512i quarter = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        for (int i = 0; i < 16; i += 8) {
            _mm_prefetch((const char *)(wq + (b + i) * (QK / 2)) + PREFETCH_BYTES, _MM_HINT_T2);
            _mm_prefetch((const char *)(wq + (b + i + 4) * (QK / 2)) + PREFETCH_BYTES, _MM_HINT_T2);
            const __m512 s0 = _mm512_permutexvar_ps(_mm512_add_epi32(quarter, _mm512_set1_epi32(i)), d);
            const __m512 s1 = _mm512_permutexvar_ps(_mm512_add_epi32(quarter, _mm512_set1_epi32(i + 4)), d);
            acc0 = _mm512_fmadd_ps(s0, _mm512_cvtepi32_ps(q4_quad512(wq + (b + i) * (QK / 2), aq + (b + i) * QK)), acc0);
            acc1 = _mm512_fmadd_ps(s1, _mm512_cvtepi32_ps(q4_quad512(wq + (b + i + 4) * (QK / 2), aq + (b + i + 4) * QK)), acc1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + _mm512_reduce_add_ps(mins) + q4_tail512(row, act, nb, gs, b);
}

T512 static inline __m512i q8_block512(const int8_t *q, const int16_t *a) {
    return _mm512_madd_epi16(_mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)q)),
                             _mm512_loadu_si512((const void *)a));
}

T512 static float dot_q8_512(const uint8_t *row, const uint8_t *act, int64_t nb) {
    const uint16_t *wd = (const uint16_t *)row;
    const int8_t *wq = (const int8_t *)(row + 2 * nb);
    const float *ad = (const float *)act;
    const int16_t *aq = (const int16_t *)(act + 4 * nb);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    prefetch_head(row, 2 * nb);
    float sc[16];
    int64_t b = 0;
    for (; b + 16 <= nb; b += 16) {
        _mm512_storeu_ps(sc, _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(wd + b))),
                                           _mm512_loadu_ps(ad + b)));
        for (int i = 0; i < 16; i += 2) {
            _mm_prefetch((const char *)(wq + (b + i) * QK) + PREFETCH_BYTES, _MM_HINT_T2);
            acc0 = _mm512_fmadd_ps(_mm512_set1_ps(sc[i]), _mm512_cvtepi32_ps(q8_block512(wq + (b + i) * QK, aq + (b + i) * QK)), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_set1_ps(sc[i + 1]), _mm512_cvtepi32_ps(q8_block512(wq + (b + i + 1) * QK, aq + (b + i + 1) * QK)), acc1);
        }
    }
    for (; b < nb; b++)
        acc0 = _mm512_fmadd_ps(_mm512_set1_ps(_cvtsh_ss(wd[b]) * ad[b]),
                               _mm512_cvtepi32_ps(q8_block512(wq + b * QK, aq + b * QK)), acc0);
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* int8 in groups of 32 << gs (gs > 0) against the activations' two int8 planes (qblocks.c's
 * a8g_row_bytes says why): one dpbusd per plane per 64 weights, the integer sums over a whole group
 * (each lane adds 16 products of at most 255 x 128: 2^19), then one conversion and FMA per group
 * instead of per block of 32. Groups of 256 also read 5% fewer bytes than blocks of 32: a
 * TinyLlama-shaped token's int8 calls went from 58.2 to 53.2 ms with dpwssd on int16 activations
 * (benchmarks/int8_groups.py), lower again with the planes. */
T512 static float dot_q8g_512(const uint8_t *row, const uint8_t *act, int64_t nb, int gs) {
    const int64_t ng = nb >> gs, span = ((int64_t)1 << gs) * QK;
    const uint16_t *wd = (const uint16_t *)row;
    const int8_t *wq = (const int8_t *)(row + 2 * ng);
    const float *ad = (const float *)act;
    const int32_t *lanes = (const int32_t *)(act + 4 * ng);
    const int8_t *hi = (const int8_t *)(act + 68 * ng), *lo = hi + nb * QK;
    const __m512i sign = _mm512_set1_epi8((char)0x80);
    __m512 acc = _mm512_setzero_ps();
    prefetch_head(row, 2 * ng);
    for (int64_t g = 0; g < ng; g++) {
        __m512i sh = _mm512_setzero_si512(), sl = _mm512_setzero_si512();
        for (int64_t i = g * span; i < (g + 1) * span; i += 64) {
            _mm_prefetch((const char *)(wq + i) + PREFETCH_BYTES, _MM_HINT_T2);
            const __m512i w = _mm512_xor_si512(_mm512_loadu_si512((const void *)(wq + i)), sign);  /* w + 128 */
            sh = _mm512_dpbusd_epi32(sh, w, _mm512_loadu_si512((const void *)(hi + i)));
            sl = _mm512_dpbusd_epi32(sl, w, _mm512_loadu_si512((const void *)(lo + i)));
        }
        const __m512i sum = _mm512_sub_epi32(_mm512_add_epi32(_mm512_slli_epi32(sh, 8), sl),
                                             _mm512_loadu_si512((const void *)(lanes + 16 * g)));
        acc = _mm512_fmadd_ps(_mm512_set1_ps(_cvtsh_ss(wd[g]) * ad[g]), _mm512_cvtepi32_ps(sum), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* Four activation rows (a prompt's) against one int4 weight row: each weight block is loaded and
 * unpacked once for the four. A 64-token prompt through a 5632 x 2048 layer took 5.5-7.9 ms against
 * 7.2-10.0 one row at a time (int8's conversion is cheaper and it measured no faster, so it has
 * none). The sums run in dot_q4_512's order, so each row's result is bit-identical to its.
 * Row r's activations start at act + r * arow; its sum goes to out[r * ostride]. */
T512 static void dot_q4_512_x4(const uint8_t *row, const uint8_t *act, int64_t arow, int64_t nb, int gs,
                               float *out, int64_t ostride) {
    const uint16_t *wd = (const uint16_t *)row, *wm = wd + (nb >> gs);
    const uint8_t *wq = row + 4 * (nb >> gs);
    const __m512i quarter = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i mask = _mm512_set1_epi8(0x0F);
    __m512 acc[4][2], mins[4];
    for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = mins[r] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 16 <= nb; b += 16) {
        const __m512 g = groups16(wd + (b >> gs), gs), m = groups16(wm + (b >> gs), gs);
        __m512 d[4];
        for (int r = 0; r < 4; r++) {
            const float *ad = (const float *)(act + r * arow);
            d[r] = _mm512_mul_ps(g, _mm512_loadu_ps(ad + b));
            mins[r] = _mm512_fmadd_ps(m, _mm512_loadu_ps(ad + nb + b), mins[r]);
        }
        for (int i = 0; i < 16; i += 4) {
            const __m512i w = _mm512_loadu_si512((const void *)(wq + (b + i) * (QK / 2)));
            const __m512i lo = _mm512_and_si512(w, mask), hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), mask);
            const __m512i at = _mm512_add_epi32(quarter, _mm512_set1_epi32(i));
            for (int r = 0; r < 4; r++) {
                const int8_t *aq = (const int8_t *)(act + r * arow + 8 * nb) + (b + i) * QK;
                const __m512i p = _mm512_dpbusd_epi32(
                    _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512((const void *)aq)),
                    hi, _mm512_loadu_si512((const void *)(aq + 2 * QK)));
                acc[r][(i >> 2) & 1] = _mm512_fmadd_ps(_mm512_permutexvar_ps(at, d[r]), _mm512_cvtepi32_ps(p),
                                                       acc[r][(i >> 2) & 1]);
            }
        }
    }
    for (int r = 0; r < 4; r++)
        out[r * ostride] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1])) + _mm512_reduce_add_ps(mins[r])
                           + q4_tail512(row, act + r * arow, nb, gs, b);
}
