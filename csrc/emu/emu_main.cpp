// Runs every csrc launcher under the CPU emulation (cuda_emu.h) and compares with a float64 reference
// computed from the same (dtype-rounded) inputs. Built and run by tests/test_csrc_build.py:
//
//   g++ -std=c++20 -O1 -fno-strict-aliasing -DTTKERNELS_CPU_EMULATION -Icsrc -I$CUDA_HOME/include
//       -x c++ csrc/tt_linear_fwd.cu csrc/tt_linear_bwd.cu csrc/emu/emu_main.cpp -o emu   (then ./emu)
//
// Each case prints PASS/FAIL with its worst error; the last line is "N passed, M failed"; exit status 1 on
// any failure. The cases cover both the 16-byte vector path and the scalar path (odd widths, a misaligned
// base pointer), rank chunking (R > 64 for the projection, > 32 ranks in the expansion, > 64 in the
// reduction), row and column tails, the split-K decode path (T = 1, long K), multi-split reductions, the
// transposed (dA) output layout, fp32 outputs from 16-bit inputs, and T = 0.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "tt_common.cuh"

using ttkernels::DType;

namespace {

int g_passed = 0;
int g_failed = 0;

uint64_t g_rng = 0x9E3779B97F4A7C15ull;
float uniform() {  // deterministic, in [-1, 1)
  g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
  return static_cast<float>((g_rng >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

const char* dtype_name(DType d) { return d == DType::kFloat32 ? "fp32" : d == DType::kFloat16 ? "fp16" : "bf16"; }

double dtype_eps(DType d) { return d == DType::kFloat32 ? 1.2e-7 : d == DType::kFloat16 ? 9.8e-4 : 7.9e-3; }

// A buffer of `n` elements of dtype `d`, stored as raw bytes, with a float view for the reference.
struct Buf {
  DType dtype;
  std::vector<unsigned char> bytes;
  size_t pad;  // leading elements before data() (to misalign on purpose)
  Buf(DType d, size_t n, size_t pad_elems = 0) : dtype(d), bytes((n + pad_elems + 16) * 4 + 64, 0), pad(pad_elems) {}
  size_t esize() const { return dtype == DType::kFloat32 ? 4 : 2; }
  void* data() {
    auto base = reinterpret_cast<uintptr_t>(bytes.data());
    base = (base + 63) / 64 * 64;  // 64-byte aligned like the CUDA caching allocator, then the pad
    return reinterpret_cast<void*>(base + pad * esize());
  }
  float get(size_t i) {
    void* p = data();
    if (dtype == DType::kFloat32) return static_cast<float*>(p)[i];
    if (dtype == DType::kFloat16) return __half2float(static_cast<__half*>(p)[i]);
    return __bfloat162float(static_cast<__nv_bfloat16*>(p)[i]);
  }
  void set(size_t i, float v) {
    void* p = data();
    if (dtype == DType::kFloat32) static_cast<float*>(p)[i] = v;
    else if (dtype == DType::kFloat16) static_cast<__half*>(p)[i] = __float2half_rn(v);
    else static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  }
  void randomize(size_t n, float scale = 1.f) {
    for (size_t i = 0; i < n; ++i) set(i, scale * uniform());
  }
};

// |got - ref| <= eps_out * |ref| + 1e-5 * sum|terms| + 1e-6: the output rounding plus fp32 accumulation.
struct Checker {
  double worst = 0.0;  // worst error / tolerance
  int bad = 0;
  void check(double got, double ref, double abs_sum, double eps_out) {
    const double tol = eps_out * std::fabs(ref) + 1e-5 * abs_sum + 1e-6;
    const double ratio = std::fabs(got - ref) / tol;
    if (!(ratio <= 1.0)) ++bad;  // also catches NaN
    if (ratio > worst || std::isnan(ratio)) worst = ratio;
  }
  void report(const std::string& name) {
    if (bad == 0) {
      ++g_passed;
      std::printf("PASS %s (worst error %.3f of tolerance)\n", name.c_str(), worst);
    } else {
      ++g_failed;
      std::printf("FAIL %s: %d elements off, worst error %.3g x tolerance\n", name.c_str(), bad, worst);
    }
  }
};

bool expect_ok(cudaError_t err, const std::string& name) {
  if (err == cudaSuccess) return true;
  ++g_failed;
  std::printf("FAIL %s: launcher returned error %d\n", name.c_str(), static_cast<int>(err));
  return false;
}

void test_proj(DType d, int64_t T, int64_t K, int64_t R, int num_sms, size_t x_pad = 0) {
  const std::string name = std::string("proj ") + dtype_name(d) + " T=" + std::to_string(T) + " K=" +
                           std::to_string(K) + " R=" + std::to_string(R) + " sms=" + std::to_string(num_sms) +
                           (x_pad ? " misaligned" : "");
  Buf X(d, T * K, x_pad), W(d, R * K);
  X.randomize(T * K);
  W.randomize(R * K);
  std::vector<float> P(T * R + 1, NAN);
  if (!expect_ok(ttkernels::launch_rank_proj(d, X.data(), W.data(), P.data(), T, K, R, num_sms, nullptr), name)) return;
  Checker c;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t r = 0; r < R; ++r) {
      double ref = 0, abs_sum = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double term = double(X.get(t * K + k)) * W.get(r * K + k);
        ref += term;
        abs_sum += std::fabs(term);
      }
      c.check(P[t * R + r], ref, abs_sum, 0.0);  // P is fp32: only accumulation error
    }
  }
  c.report(name);
}

void test_expand(DType d, int64_t T, int64_t N, int64_t R, bool has_in, bool in_place, float alpha = 0.75f) {
  const std::string name = std::string("expand ") + dtype_name(d) + " T=" + std::to_string(T) + " N=" +
                           std::to_string(N) + " R=" + std::to_string(R) +
                           (has_in ? (in_place ? " in-place" : " with-in") : " no-in");
  Buf In(d, T * N), Out(d, T * N), Vt(d, R * N);
  In.randomize(T * N, 2.f);
  Vt.randomize(R * N);
  std::vector<float> P(T * R);
  for (auto& p : P) p = uniform();
  std::vector<double> base(T * N);
  for (int64_t i = 0; i < T * N; ++i) base[i] = has_in ? In.get(i) : 0.0;
  if (in_place) {
    for (int64_t i = 0; i < T * N; ++i) Out.set(i, In.get(i));
  } else {
    for (int64_t i = 0; i < T * N; ++i) Out.set(i, -77.f);  // must be overwritten
  }
  const void* in_ptr = has_in ? (in_place ? Out.data() : In.data()) : nullptr;
  if (!expect_ok(ttkernels::launch_rank_expand(d, in_ptr, Out.data(), P.data(), Vt.data(), T, N, R, alpha, nullptr),
                 name)) {
    return;
  }
  Checker c;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0, abs_sum = 0;
      for (int64_t r = 0; r < R; ++r) {
        const double term = double(P[t * R + r]) * Vt.get(r * N + j);
        acc += term;
        abs_sum += std::fabs(term);
      }
      const double ref = base[t * N + j] + alpha * acc;
      c.check(Out.get(t * N + j), ref, std::fabs(base[t * N + j]) + std::fabs(alpha) * abs_sum, dtype_eps(d));
    }
  }
  c.report(name);
}

// transposed: write G (K, R) into an (R, K) tensor (the dA layout), else into (K, R) (the dB layout).
void test_reduce(DType d, DType out_d, int64_t T, int64_t K, int64_t R, int num_sms, bool transposed,
                 float alpha = -1.25f) {
  const int splits = ttkernels::rank_reduce_splits(T, K, R, num_sms);
  const std::string name = std::string("reduce ") + dtype_name(d) + "->" + dtype_name(out_d) + " T=" +
                           std::to_string(T) + " K=" + std::to_string(K) + " R=" + std::to_string(R) +
                           " splits=" + std::to_string(splits) + (transposed ? " (R,K) out" : " (K,R) out");
  Buf X(d, T * K), Out(out_d, K * R);
  X.randomize(T * K);
  for (int64_t i = 0; i < K * R; ++i) Out.set(i, -77.f);
  std::vector<float> P(T * R);
  for (auto& p : P) p = uniform();
  std::vector<float> ws(ttkernels::rank_reduce_workspace_floats(K, R, splits) + 1, NAN);
  const int64_t sk = transposed ? 1 : R;
  const int64_t sr = transposed ? K : 1;
  if (!expect_ok(ttkernels::launch_rank_reduce(d, out_d, X.data(), P.data(), Out.data(), sk, sr, T, K, R, alpha,
                                               splits, ws.data(), nullptr),
                 name)) {
    return;
  }
  Checker c;
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t r = 0; r < R; ++r) {
      double acc = 0, abs_sum = 0;
      for (int64_t t = 0; t < T; ++t) {
        const double term = double(X.get(t * K + k)) * P[t * R + r];
        acc += term;
        abs_sum += std::fabs(term);
      }
      c.check(Out.get(k * sk + r * sr), alpha * acc, std::fabs(alpha) * abs_sum, dtype_eps(out_d));
    }
  }
  c.report(name);
}

}  // namespace

int main() {
  const DType dtypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};
  for (DType d : dtypes) {
    // projection: rank configs (<=8, <=16, <=32, chunked > 64), vector and scalar paths, split-K decode
    test_proj(d, 1, 8, 1, 4);
    test_proj(d, 5, 33, 3, 4);            // odd K: scalar path
    test_proj(d, 37, 264, 16, 4);         // vector path, row tail
    test_proj(d, 37, 264, 16, 4, 1);      // misaligned base pointer: scalar path
    test_proj(d, 19, 72, 17, 4);
    test_proj(d, 9, 72, 70, 4);           // 2 rank chunks of 64
    test_proj(d, 1, 2048, 16, 132);       // decode: warps split K
    test_proj(d, 3, 1030, 5, 132);        // odd K with split warps
    // expansion: rank chunks of 32, row/column tails, with/without/in-place base
    test_expand(d, 1, 8, 1, true, false);
    test_expand(d, 5, 33, 3, true, false);   // scalar path
    test_expand(d, 70, 264, 40, true, false);
    test_expand(d, 70, 264, 40, true, true);
    test_expand(d, 66, 136, 16, false, false);
    // reduction over tokens: both output layouts, splits, chunked ranks, fp32 output
    test_reduce(d, d, 1, 8, 1, 4, false);
    test_reduce(d, d, 37, 33, 3, 4, true);     // scalar path
    test_reduce(d, d, 300, 264, 16, 132, false);  // 3 splits
    test_reduce(d, d, 300, 264, 16, 132, true);
    test_reduce(d, DType::kFloat32, 45, 40, 70, 4, true);  // 2 rank chunks of 64, fp32 out
    test_reduce(d, d, 0, 16, 4, 4, false);      // no tokens: zeros
  }
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
