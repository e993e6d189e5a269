/* A whole Llama decoder layer for a few rows (decode steps, speculative verify blocks) in one call
 * (included by qblocks.c, after its linear, RoPE and RMSNorm functions).
 *
 * Why: a decode step streams the weights through the caches, and every small op between two matrix
 * calls then runs from cold memory. In a TinyLlama int8 step the ~15 torch ops a layer between its
 * matrix calls (norms, RoPE, KV-cache writes, SDPA, SiLU * up, residual adds) took ~360 us, 8 ms of
 * a ~55 ms token, each op 3-10x slower than the same op alone; a raw ctypes call into C cost 12 us
 * after a matrix call against 4 alone. Here a layer is one call.
 *
 * Numerics: the norms, RoPE, the matrix calls and the residual adds are the same code (the same
 * bits) as the lean forward's separate calls. Attention and SiLU are ours, in fp32 with an exp
 * polynomial accurate to ~2 ulp, so logits differ from torch's SDPA path at float rounding
 * (tests/test_lean_fused.py bounds it). Every row is computed on its own, in the same order
 * whatever the number of rows, so a verify block of k + 1 rows gives exactly the k + 1 one-row
 * steps' results, and a speculative decode is exactly the plain one. */

/* The model's weights of one layer; lean_fused.py builds one per layer with ctypes. */
struct billion_llama_layer {
    const uint8_t *w[7];           /* q, k, v, o, gate, up, down: int`bits` groups (native.row_bytes) */
    const float *in_norm, *post_norm;
    int64_t hidden, heads, kv_heads, head_dim, inter;
    int32_t bits, gs_in, gs_o, gs_down;  /* group shifts: inputs of hidden, of heads * head_dim, of inter */
    float eps, scale;              /* RMSNorm epsilon; attention's 1 / sqrt(head_dim) or the config's */
    int32_t lanes;                 /* RMSNorm's sum lanes (native.SUM_LANES) */
};

/* exp(x) for 8 floats (Cephes' polynomial, as in avx_mathfun): ~2 ulp; inputs below -87 give
 * about 1e-38 instead of 0, which no softmax or SiLU here can tell from 0. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f)), _mm256_set1_ps(-87.0f));
    const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    const __m256i power = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(power));
}

static inline float exp1(float x) {  /* exp8's value for one float, for the tails */
    float in[8] = {x}, out[8];
    _mm256_storeu_ps(out, exp8(_mm256_loadu_ps(in)));
    return out[0];
}

static inline float dot_f32(const float *a, const float *b, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float sum = hsum(acc);
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

/* out += w * v over n floats */
static inline void axpy_f32(float *out, float w, const float *v, int64_t n) {
    const __m256 wv = _mm256_set1_ps(w);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(wv, _mm256_loadu_ps(v + i), _mm256_loadu_ps(out + i)));
    for (; i < n; i++) out[i] += w * v[i];
}

/* One query head over positions 0..n-1 of its KV head (K, V: room x dim each): softmax(q K^T * scale) V. */
static void attend_head(const float *q, const float *K, const float *V, int64_t n, int64_t dim, float scale,
                        float *scores, float *out) {
    float top = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        scores[j] = dot_f32(q, K + j * dim, dim) * scale;
        top = scores[j] > top ? scores[j] : top;
    }
    float total = 0.0f;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + j), _mm256_set1_ps(top)));
        _mm256_storeu_ps(scores + j, e);
        total += hsum(e);
    }
    for (; j < n; j++) total += scores[j] = exp1(scores[j] - top);
    for (int64_t d = 0; d < dim; d++) out[d] = 0.0f;
    for (j = 0; j < n; j++) axpy_f32(out, scores[j], V + j * dim, dim);
    const float inverse = 1.0f / total;
    for (int64_t d = 0; d < dim; d++) out[d] *= inverse;
}

/* Row t (position start + t) attends positions 0..start + t; heads share KV heads in groups (GQA).
 * Parallel over (row, head) pairs once the work is worth a fork. Returns 1 without memory. */
static int attend(const struct billion_llama_layer *L, const float *qkv, int64_t stride, const float *kbuf,
                  const float *vbuf, int64_t room, int64_t start, int64_t rows, float *out, int threads) {
    const int64_t heads = L->heads, dim = L->head_dim, per = heads / L->kv_heads, pairs = rows * heads;
    const int64_t longest = start + rows;
    int failed = 0;
    #pragma omp parallel num_threads(threads) if (pairs * longest * dim >= 65536)
    {
        float *scores = (float *)malloc((size_t)longest * sizeof(float));
        if (!scores) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t p = 0; p < pairs; p++) {
            if (!scores) continue;
            const int64_t t = p / heads, h = p % heads, kv = h / per;
            attend_head(qkv + t * stride + h * dim, kbuf + kv * room * dim, vbuf + kv * room * dim,
                        start + t + 1, dim, L->scale, scores, out + t * heads * dim + h * dim);
        }
        free(scores);
    }
    return failed;
}

/* The new rows' keys and values (after RoPE) into the cache buffers at positions start.. */
static void store_kv(const struct billion_llama_layer *L, const float *qkv, int64_t stride, float *kbuf,
                     float *vbuf, int64_t room, int64_t start, int64_t rows) {
    const int64_t dim = L->head_dim, q_end = L->heads * dim, kv_width = L->kv_heads * dim;
    for (int64_t t = 0; t < rows; t++)
        for (int64_t h = 0; h < L->kv_heads; h++) {
            const float *k = qkv + t * stride + q_end + h * dim;
            memcpy(kbuf + (h * room + start + t) * dim, k, (size_t)dim * sizeof(float));
            memcpy(vbuf + (h * room + start + t) * dim, k + kv_width, (size_t)dim * sizeof(float));
        }
}

static void add_into(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] + y[i];
}

/* silu(gate) * up, row by row, from gate|up side by side (rows x 2 inter); exported for its test */
void billion_swiglu(const float *gu, int64_t rows, int64_t inter, float *out) {
    for (int64_t t = 0; t < rows; t++) {
        const float *g = gu + t * 2 * inter, *u = g + inter;
        float *o = out + t * inter;
        int64_t i = 0;
        for (; i + 8 <= inter; i += 8) {
            const __m256 gv = _mm256_loadu_ps(g + i);
            const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv));
            _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(_mm256_set1_ps(1.0f), e)),
                                                  _mm256_loadu_ps(u + i)));
        }
        for (; i < inter; i++) o[i] = g[i] / (1.0f + exp1(-g[i])) * u[i];
    }
}

/* x (rows x hidden, positions start..) through one layer, in place; kbuf / vbuf: the layer's cache
 * (kv_heads x room x head_dim each), written at the new positions; cos / sin: rows x head_dim.
 * Returns 1 without memory: x is then partly updated (the caller drops it) and the cache's
 * filled part is as it was (only positions from start on were written). */
int billion_llama_layer(const struct billion_llama_layer *L, float *x, int64_t rows, int64_t start,
                        const float *cos, const float *sin, float *kbuf, float *vbuf, int64_t room, int threads) {
    const int64_t hidden = L->hidden, inter = L->inter, q_width = L->heads * L->head_dim;
    const int64_t kv_width = L->kv_heads * L->head_dim, width = q_width + 2 * kv_width;
    float *h = (float *)malloc((size_t)(rows * (2 * hidden + width + q_width + 3 * inter)) * sizeof(float));
    if (!h) return 1;
    float *qkv = h + rows * hidden, *att = qkv + rows * width, *y = att + rows * q_width;
    float *gu = y + rows * hidden, *m = gu + rows * 2 * inter;
    const uint8_t *const qkv_w[3] = {L->w[0], L->w[1], L->w[2]}, *const gu_w[2] = {L->w[4], L->w[5]};
    const int64_t qkv_n[3] = {q_width, kv_width, kv_width}, gu_n[2] = {inter, inter};
    int failed = 1;
    billion_rms_norm(x, L->in_norm, h, rows, hidden, L->eps, L->lanes);
    if (billion_linear_cat(L->bits, L->gs_in, 3, qkv_w, qkv_n, hidden, h, rows, qkv, threads)) goto done;
    billion_rope(qkv, rows, width, L->heads + L->kv_heads, L->head_dim, L->head_dim, cos, sin);
    store_kv(L, qkv, width, kbuf, vbuf, room, start, rows);
    if (attend(L, qkv, width, kbuf, vbuf, room, start, rows, att, threads)) goto done;
    if (billion_linear(L->bits, L->gs_o, L->w[3], hidden, q_width, att, rows, y, threads)) goto done;
    add_into(x, y, rows * hidden);
    billion_rms_norm(x, L->post_norm, h, rows, hidden, L->eps, L->lanes);
    if (billion_linear_cat(L->bits, L->gs_in, 2, gu_w, gu_n, hidden, h, rows, gu, threads)) goto done;
    billion_swiglu(gu, rows, inter, m);
    if (billion_linear(L->bits, L->gs_down, L->w[6], hidden, inter, m, rows, y, threads)) goto done;
    add_into(x, y, rows * hidden);
    failed = 0;
done:
    free(h);
    return failed;
}
