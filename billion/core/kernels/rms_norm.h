/* RMSNorm for the lean forward (included by qblocks.c), bit-identical to torch.rms_norm on fp32.
 *
 * Why in C: in a decode step the weight stream evicts the caches, and each of torch.rms_norm's
 * eight tensor ops (pow, sum, div, add, rsqrt, mul, type_as, mul) then dispatches from cold memory:
 * ~50 us a norm in situ against ~10 us alone, 45 norms a TinyLlama token. One call here does it.
 *
 * Why bit-identical: the lean forward promises transformers' logits bit for bit. torch computes
 * x * rsqrt(mean(x^2) + eps) * weight (ATen's rms_norm composite), every step correctly rounded
 * except the sum, whose order is ATen's for a contiguous inner reduction (SumKernel.cpp:
 * vectorized_inner_sum -> row_sum -> multi_row_sum, in vectors of `lanes` floats: 8, as torch does
 * not dispatch its sum to an AVX-512 build). native.py compares these bits with torch.rms_norm once per
 * width and keeps torch's own where they differ (another torch version, another order). */

#define RMS_ILP 4
#define RMS_LEVELS 4

/* x^2 rounded to float, then added: no fused multiply-add, as torch's pow and sum are two ops */
__attribute__((optimize("fp-contract=off")))
static void add_squares(float *acc, const float *x, int lanes) {
    for (int l = 0; l < lanes; l++) {
        const float square = x[l] * x[l];
        acc[l] += square;
    }
}

static void add_lanes(float *into, float *from, int lanes, int clear) {
    for (int l = 0; l < lanes; l++) {
        into[l] += from[l];
        if (clear) from[l] = 0.0f;
    }
}

/* multi_row_sum: RMS_ILP columns of vectors summed down `size` rows in a cascade of RMS_LEVELS
 * levels, each level holding 2^power rows' sums (ATen's bound on rounding error growth). */
static void cascade_rows(const float *x, int64_t size, int lanes, float acc[RMS_LEVELS][RMS_ILP][16]) {
    const int log2 = size <= 2 ? 1 : 64 - __builtin_clzll((unsigned long long)(size - 1));
    const int power = log2 / RMS_LEVELS > 4 ? log2 / RMS_LEVELS : 4;
    const int64_t step = (int64_t)1 << power, mask = step - 1;
    int64_t i = 0;
    while (i + step <= size) {
        for (int64_t j = 0; j < step; j++, i++)
            for (int k = 0; k < RMS_ILP; k++) add_squares(acc[0][k], x + (i * RMS_ILP + k) * lanes, lanes);
        for (int level = 1; level < RMS_LEVELS; level++) {
            for (int k = 0; k < RMS_ILP; k++) add_lanes(acc[level][k], acc[level - 1][k], lanes, 1);
            if (i & (mask << (level * power))) break;
        }
    }
    for (; i < size; i++)
        for (int k = 0; k < RMS_ILP; k++) add_squares(acc[0][k], x + (i * RMS_ILP + k) * lanes, lanes);
    for (int level = 1; level < RMS_LEVELS; level++)
        for (int k = 0; k < RMS_ILP; k++) add_lanes(acc[0][k], acc[level][k], lanes, 0);
}

/* sum(x^2) over n floats as ATen's cascade sum adds them */
__attribute__((optimize("fp-contract=off")))
static float sum_squares(const float *x, int64_t n, int lanes) {
    float acc[RMS_LEVELS][RMS_ILP][16] = {{{0.0f}}};
    const int64_t vectors = n / lanes, rows = vectors / RMS_ILP;
    cascade_rows(x, rows, lanes, acc);
    for (int64_t v = rows * RMS_ILP; v < vectors; v++) add_squares(acc[0][0], x + v * lanes, lanes);  /* row_sum's rest */
    for (int k = 1; k < RMS_ILP; k++) add_lanes(acc[0][0], acc[0][k], lanes, 0);
    float total = 0.0f;  /* vectorized_inner_sum: the scalar tail first, then the lanes in order */
    for (int64_t t = vectors * lanes; t < n; t++) {
        const float square = x[t] * x[t];
        total += square;
    }
    for (int l = 0; l < lanes; l++) total += acc[0][0][l];
    return total;
}

/* y = x * (1 / sqrt(sum(x^2) / n + eps)) * weight, row by row; lanes at most 16. */
__attribute__((optimize("fp-contract=off")))
void billion_rms_norm(const float *x, const float *weight, float *y, int64_t rows, int64_t n, float eps, int lanes) {
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * n;
        const float mean = sum_squares(row, n, lanes) / (float)n;
        const float inverse = 1.0f / sqrtf(mean + eps);
        for (int64_t i = 0; i < n; i++) y[r * n + i] = (row[i] * inverse) * weight[i];
    }
}
