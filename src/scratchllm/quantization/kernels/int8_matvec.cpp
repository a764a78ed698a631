// int8 weights times a few rows of activations, for decoding on CPUs with AVX-512 VNNI
// (scratchllm/quantization/native.py builds it).
//
// y[m, n] = s_x[m] · s_w[n] · Σ_k xq[m, k] · q[n, k]  (+ bias[n])
//
// q: the int8 weights (N, K), one scale s_w per row, as Int8Linear stores them. Each activation row is rounded to
// 16-bit integers with its own scale (s_x = max|x| / 16383, 15 bits): values within 1/64 of the row's largest keep
// more precision than bf16's 8-bit mantissa gives them; smaller ones keep a fixed step of max|x| / 16383, which adds
// far less to a dot product than the int8 weights' own rounding (step max|w| / 127) does. Why integers: `vpdpwssd`
// multiplies 32 int16 pairs and adds them into 16 int32 sums in one instruction, so the int8 matrix costs one
// sign-extension and one multiply-add per 32 weights, where converting to float costs four instructions per 16
// (torch's _weight_int8pack_mm). Decoding reads every weight once per token; with the conversion this cheap the
// read, not the arithmetic, sets the speed.
// The int32 sums are moved to float every CHUNK values of k: |xq · q| ≤ 16383 · 127, two per lane and instruction,
// so CHUNK / 32 instructions stay far below 2^31. Two more things set the speed (measured on a 2-core AMD EPYC
// Zen 5, matrices read from memory, not cache): the rows are split over torch's OpenMP threads (built with
// -fopenmp; one thread reads about half as fast), and each row is prefetched PREFETCH bytes ahead (16 KiB: 1 KiB
// read GPT-2's head at 34 GB/s, 16 KiB at 41).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <torch/library.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

namespace {
constexpr int ROWS = 4;           // weight rows per pass over one activation row: its loads are shared (8: no faster)
constexpr int64_t CHUNK = 8192;   // ≤ 2^31 / (2 · 16383 · 127) · 32 = 16,513
constexpr float QMAX = 16383.f;
constexpr int64_t PREFETCH = 16384;  // bytes ahead in each row (256 B to 16 KiB tried: 16 KiB read fastest)

inline void rows_dot(const int16_t* xq, const int8_t* w, int64_t K, int nrows, float* out) {
  __m512 sum[ROWS];
  for (int r = 0; r < ROWS; ++r) sum[r] = _mm512_setzero_ps();
  for (int64_t c0 = 0; c0 < K; c0 += CHUNK) {
    const int64_t c1 = std::min(K, c0 + CHUNK);
    __m512i acc[ROWS];
    for (int r = 0; r < ROWS; ++r) acc[r] = _mm512_setzero_si512();
    int64_t k = c0;
    if (nrows == ROWS) {
      for (; k + 32 <= c1; k += 32) {
        const __m512i xv = _mm512_loadu_si512(xq + k);
        for (int r = 0; r < ROWS; ++r) {
          _mm_prefetch(reinterpret_cast<const char*>(w + r * K + k + PREFETCH), _MM_HINT_T0);
          const __m512i wv = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * K + k)));
          acc[r] = _mm512_dpwssd_epi32(acc[r], xv, wv);
        }
      }
    }
    while (k < c1) {  // the last rows of the matrix, and the last < 32 values of k: masked loads
      const int64_t n = std::min<int64_t>(32, c1 - k);
      const __mmask32 mask = n == 32 ? ~__mmask32(0) : __mmask32((1u << n) - 1);
      const __m512i xv = _mm512_maskz_loadu_epi16(mask, xq + k);
      for (int r = 0; r < nrows; ++r) {
        const __m512i wv = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask, w + r * K + k));
        acc[r] = _mm512_dpwssd_epi32(acc[r], xv, wv);
      }
      k += n;
    }
    for (int r = 0; r < ROWS; ++r) sum[r] = _mm512_add_ps(sum[r], _mm512_cvtepi32_ps(acc[r]));
  }
  for (int r = 0; r < nrows; ++r) out[r] = _mm512_reduce_add_ps(sum[r]);
}

// The row's scale; NaN when the row holds a NaN or an infinity (its outputs are then NaN, as the reference's are).
template <typename T>
float quantize_row(const T* x, int64_t K, int16_t* q) {
  float amax = 0.f;
  bool finite = true;
  for (int64_t k = 0; k < K; ++k) {
    const float v = static_cast<float>(x[k]);
    finite = finite && std::isfinite(v);
    amax = std::max(amax, std::fabs(v));
  }
  if (!finite || !(amax >= 1e-30f)) {  // not finite, or (all but) zero: no scale to divide by
    std::fill(q, q + K, int16_t(0));
    return finite ? 1.f : std::numeric_limits<float>::quiet_NaN();
  }
  const float inv = QMAX / amax;
  for (int64_t k = 0; k < K; ++k) q[k] = static_cast<int16_t>(std::nearbyint(static_cast<float>(x[k]) * inv));
  return amax / QMAX;
}

// T: the activations' and output's type; S: the scales' and bias's (float or bf16: read as they are stored, no copy).
template <typename T, typename S>
void run(const at::Tensor& x, const at::Tensor& w, const at::Tensor& scales, const at::Tensor& bias, at::Tensor& y) {
  const int64_t N = w.size(0), K = w.size(1), M = x.numel() / K;
  std::vector<int16_t> xq(M * K);
  std::vector<float> xs(M);
  const T* xp = x.data_ptr<T>();
  for (int64_t m = 0; m < M; ++m) xs[m] = quantize_row(xp + m * K, K, xq.data() + m * K);
  const S* sp = scales.data_ptr<S>();
  const S* bp = bias.defined() ? bias.data_ptr<S>() : nullptr;
  const int8_t* wp = w.data_ptr<int8_t>();
  T* yp = y.data_ptr<T>();
  const int64_t blocks = (N + ROWS - 1) / ROWS;
  at::parallel_for(0, blocks, 16, [&](int64_t b0, int64_t b1) {
    float dots[ROWS];
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t n0 = blk * ROWS;
      const int nrows = static_cast<int>(std::min<int64_t>(ROWS, N - n0));
      for (int64_t m = 0; m < M; ++m) {
        rows_dot(xq.data() + m * K, wp + n0 * K, K, nrows, dots);
        for (int r = 0; r < nrows; ++r) {
          const int64_t n = n0 + r;
          const float v = dots[r] * xs[m] * static_cast<float>(sp[n]) + (bp ? static_cast<float>(bp[n]) : 0.f);
          yp[m * N + n] = static_cast<T>(v);
        }
      }
    }
  });
}

template <typename T>
void dispatch_scales(const at::Tensor& x, const at::Tensor& w, const at::Tensor& scales,
                     const std::optional<at::Tensor>& bias, at::Tensor& y) {
  const bool bf16 = scales.scalar_type() == at::kBFloat16;
  const at::Tensor s = bf16 ? scales.contiguous() : scales.to(at::kFloat).contiguous();
  const at::Tensor b = bias.has_value() ? bias->to(s.scalar_type()).contiguous() : at::Tensor();
  if (bf16) {
    run<T, c10::BFloat16>(x, w, s, b, y);
  } else {
    run<T, float>(x, w, s, b, y);
  }
}

at::Tensor int8_matvec(const at::Tensor& x, const at::Tensor& w, const at::Tensor& scales,
                       const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(w.device().is_cpu() && x.device().is_cpu(), "int8 matvec: CPU tensors");
  TORCH_CHECK(w.scalar_type() == at::kChar && w.dim() == 2 && w.is_contiguous(),
              "int8 matvec: contiguous int8 (N, K) weights");
  TORCH_CHECK(x.size(-1) == w.size(1), "int8 matvec: x's last dimension must equal the weights' columns");
  TORCH_CHECK(scales.numel() == w.size(0), "int8 matvec: one scale per weight row");
  TORCH_CHECK(!bias.has_value() || bias->numel() == w.size(0), "int8 matvec: one bias per weight row");
  const at::Tensor xc = x.contiguous();
  auto shape = x.sizes().vec();
  shape.back() = w.size(0);
  at::Tensor y = at::empty(shape, x.options());
  if (x.scalar_type() == at::kBFloat16) {
    dispatch_scales<c10::BFloat16>(xc, w, scales, bias, y);
  } else {
    TORCH_CHECK(x.scalar_type() == at::kFloat, "int8 matvec: float32 or bfloat16 activations");
    dispatch_scales<float>(xc, w, scales, bias, y);
  }
  return y;
}
}  // namespace

TORCH_LIBRARY(scratchllm_int8, m) { m.def("matvec(Tensor x, Tensor w, Tensor scales, Tensor? bias) -> Tensor"); }
TORCH_LIBRARY_IMPL(scratchllm_int8, CPU, m) { m.impl("matvec", &int8_matvec); }
