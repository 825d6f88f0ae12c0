// Forward kernels of the adapter term y = base + α (x Aᵀ) Bᵀ. The backward reuses both: dy·B is a
// rank projection (W = Bᵀ) and dx's adapter term is a rank expansion (Vt = A).
//
// rank_proj_kernel   P = X Wᵀ      (T, K) x (R, K) -> (T, R) fp32. Memory-bound on X, which is read once for
//                                  R <= 64 (ranks beyond 64 re-read X once per 64).
// rank_expand_kernel Out = In + α P Vt   (T, R) x (R, N) -> (T, N). Memory-bound on In/Out; the fp32 P tile
//                                  and the Vt tile sit in shared memory.
// Both run the rank dimension on CUDA cores: R is small (TT-LoRA boundary ranks are ~4-64), so the work per
// byte is low and the tensor cores would gain little; design limit R <= 256 (see ops/cuda.py).

#include "static_switch.h"
#include "tt_common.cuh"

namespace ttkernels {
namespace {

// Each warp owns ROWS rows and RC ranks and walks its share of K with 16-byte loads of X (coalesced across
// the warp) and of W (through the read-only cache: all warps of a block read the same W vectors). With few
// rows (decode, T = 1) the launcher sets warps_k > 1 so that the warps of a block split K and more of the
// chip streams the factor; their partial sums meet in shared memory.
template <typename T, int VEC, int ROWS, int RC>
__global__ void __launch_bounds__(kThreads)
    rank_proj_kernel(const T* __restrict__ X, const T* __restrict__ W, float* __restrict__ P, int64_t n_rows,
                     int K, int R, int warps_k) {
  constexpr int kVals = ROWS * RC;
  __shared__ float partial[kWarps][kVals];

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int wk = warp % warps_k;
  const int wr = warp / warps_k;
  const int warps_r = kWarps / warps_k;
  const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * warps_r + wr) * ROWS;
  const int r0 = blockIdx.y * RC;
  const int nvec = K / VEC;  // the launcher picks VEC > 1 only when VEC divides K

  float acc[kVals];
#pragma unroll
  for (int e = 0; e < kVals; ++e) acc[e] = 0.f;

  for (int i = wk * 32 + lane; i < nvec; i += 32 * warps_k) {
    const int64_t col = static_cast<int64_t>(i) * VEC;
    float xv[ROWS][VEC];
#pragma unroll
    for (int row = 0; row < ROWS; ++row) {
      if (row0 + row < n_rows) {
        load_vec<T, VEC>(X + (row0 + row) * K + col, xv[row]);
      } else {
#pragma unroll
        for (int v = 0; v < VEC; ++v) xv[row][v] = 0.f;
      }
    }
#pragma unroll
    for (int r = 0; r < RC; ++r) {
      if (r0 + r < R) {  // uniform across the block
        float wv[VEC];
        load_vec_ldg<T, VEC>(W + static_cast<int64_t>(r0 + r) * K + col, wv);
#pragma unroll
        for (int row = 0; row < ROWS; ++row) {
#pragma unroll
          for (int v = 0; v < VEC; ++v) acc[row * RC + r] = fmaf(xv[row][v], wv[v], acc[row * RC + r]);
        }
      }
    }
  }

  warp_reduce_scatter(acc, lane);
  constexpr int kPerLane = kVals / 32;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) partial[warp][lane * kPerLane + j] = acc[j];
  __syncthreads();

  for (int idx = threadIdx.x; idx < warps_r * kVals; idx += kThreads) {
    const int g = idx / kVals;
    const int e = idx % kVals;
    float sum = 0.f;
    for (int w = 0; w < warps_k; ++w) sum += partial[g * warps_k + w][e];  // fixed order: deterministic
    const int64_t t = (static_cast<int64_t>(blockIdx.x) * warps_r + g) * ROWS + e / RC;
    const int r = r0 + e % RC;
    if (t < n_rows && r < R) P[t * R + r] = sum;
  }
}

template <typename T, int VEC, int ROWS, int RC>
cudaError_t proj_launch(const T* X, const T* W, float* P, int64_t n_rows, int64_t K, int64_t R, int num_sms,
                        cudaStream_t stream) {
  const int64_t nvec = K / VEC;
  const int64_t grid_r = ceil_div(R, RC);
  int warps_k = 1;
  // Too few blocks to fill the chip: split K over the warps, keeping >= 4 vector steps per lane.
  while (warps_k < kWarps && ceil_div(n_rows, (kWarps / warps_k) * ROWS) * grid_r < 2 * num_sms &&
         nvec >= 2 * 4 * 32 * warps_k) {
    warps_k *= 2;
  }
  const dim3 grid(static_cast<unsigned>(ceil_div(n_rows, (kWarps / warps_k) * ROWS)), static_cast<unsigned>(grid_r));
  auto kernel = rank_proj_kernel<T, VEC, ROWS, RC>;
  TT_LAUNCH(kernel, grid, dim3(kThreads), stream, X, W, P, n_rows, static_cast<int>(K), static_cast<int>(R),
            warps_k);
  return TT_LAUNCH_STATUS();
}

// One block computes a BT x BN tile of Out. The ranks are staged RCH at a time: P[tile rows, chunk] (fp32)
// and Vt[chunk, tile cols] (converted to fp32) in shared memory, each thread accumulating RPT rows x VEC
// columns in registers. In and Out may alias: each element is read and then written by the same thread.
template <typename T, int VEC, bool HAS_IN>
__global__ void __launch_bounds__(kThreads)
    rank_expand_kernel(const T* In, T* Out, const float* __restrict__ P, const T* __restrict__ Vt, int64_t n_rows,
                       int N, int R, float alpha) {
  constexpr int BT = 64;                // rows per block
  constexpr int BN = 128;               // columns per block
  constexpr int RCH = 32;               // ranks staged per step
  constexpr int TPR = BN / VEC;         // threads across a tile row
  constexpr int RPI = kThreads / TPR;   // tile rows covered by one pass of the block
  constexpr int RPT = BT / RPI;         // tile rows per thread
  static_assert(BN % VEC == 0 && kThreads % TPR == 0 && BT % RPI == 0, "tile shape");
  __shared__ __align__(16) float v_s[RCH][BN];
  __shared__ float p_s[BT][RCH + 1];  // +1: the RPI rows read in one pass fall in different banks

  const int tx = threadIdx.x % TPR;
  const int ty = threadIdx.x / TPR;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * BT;
  const int j0 = blockIdx.y * BN;

  float acc[RPT][VEC];
#pragma unroll
  for (int i = 0; i < RPT; ++i) {
#pragma unroll
    for (int v = 0; v < VEC; ++v) acc[i][v] = 0.f;
  }

  for (int rc0 = 0; rc0 < R; rc0 += RCH) {
    const int rlen = imin(RCH, R - rc0);
    __syncthreads();  // the previous chunk has been consumed
    for (int idx = threadIdx.x; idx < RCH * BN; idx += kThreads) {
      const int r = idx / BN;
      const int j = j0 + idx % BN;
      v_s[r][idx % BN] = (r < rlen && j < N) ? to_float(Vt[static_cast<int64_t>(rc0 + r) * N + j]) : 0.f;
    }
    for (int idx = threadIdx.x; idx < BT * RCH; idx += kThreads) {
      const int tt = idx / RCH;
      const int r = idx % RCH;
      const int64_t t = t0 + tt;
      p_s[tt][r] = (r < rlen && t < n_rows) ? P[t * R + rc0 + r] : 0.f;
    }
    __syncthreads();
    for (int r = 0; r < rlen; ++r) {
      float vv[VEC];
      if constexpr (VEC % 4 == 0) {  // 128-bit shared loads
#pragma unroll
        for (int q = 0; q < VEC / 4; ++q) {
          const float4 f = reinterpret_cast<const float4*>(&v_s[r][tx * VEC])[q];
          vv[4 * q] = f.x;
          vv[4 * q + 1] = f.y;
          vv[4 * q + 2] = f.z;
          vv[4 * q + 3] = f.w;
        }
      } else {
#pragma unroll
        for (int v = 0; v < VEC; ++v) vv[v] = v_s[r][tx * VEC + v];
      }
#pragma unroll
      for (int i = 0; i < RPT; ++i) {
        const float p = p_s[ty + i * RPI][r];
#pragma unroll
        for (int v = 0; v < VEC; ++v) acc[i][v] = fmaf(p, vv[v], acc[i][v]);
      }
    }
  }

  const int j = j0 + tx * VEC;
#pragma unroll
  for (int i = 0; i < RPT; ++i) {
    const int64_t t = t0 + ty + i * RPI;
    if (t < n_rows && j < N) {  // VEC divides N, so the whole vector is in range
      float out[VEC];
      if constexpr (HAS_IN) {
        load_vec<T, VEC>(In + t * N + j, out);
      } else {
#pragma unroll
        for (int v = 0; v < VEC; ++v) out[v] = 0.f;
      }
#pragma unroll
      for (int v = 0; v < VEC; ++v) out[v] = fmaf(alpha, acc[i][v], out[v]);
      store_vec<T, VEC>(Out + t * N + j, out);
    }
  }
}

}  // namespace

cudaError_t launch_rank_proj(DType dtype, const void* X, const void* W, float* P, int64_t T, int64_t K, int64_t R,
                             int num_sms, cudaStream_t stream) {
  if (T < 0 || K < 0 || R < 0 || K > INT32_MAX || R > INT32_MAX) return cudaErrorInvalidValue;
  if (T == 0 || R == 0) return cudaSuccess;
  const bool use_vec = vec_ok(X, K, dtype_bytes(dtype)) && vec_ok(W, K, dtype_bytes(dtype));
  return DTYPE_SWITCH(dtype, [&] {
    return VEC_SWITCH(use_vec, [&] {
      const auto* x = static_cast<const scalar_t*>(X);
      const auto* w = static_cast<const scalar_t*>(W);
      // Rows per warp x ranks per pass: 32-64 fp32 accumulators per lane whatever the rank.
      if (R <= 8) return proj_launch<scalar_t, kVec, 4, 8>(x, w, P, T, K, R, num_sms, stream);
      if (R <= 16) return proj_launch<scalar_t, kVec, 4, 16>(x, w, P, T, K, R, num_sms, stream);
      if (R <= 32) return proj_launch<scalar_t, kVec, 2, 32>(x, w, P, T, K, R, num_sms, stream);
      return proj_launch<scalar_t, kVec, 1, 64>(x, w, P, T, K, R, num_sms, stream);
    });
  });
}

cudaError_t launch_rank_expand(DType dtype, const void* In, void* Out, const float* P, const void* Vt, int64_t T,
                               int64_t N, int64_t R, float alpha, cudaStream_t stream) {
  if (T < 0 || N < 0 || R < 0 || N > INT32_MAX || R > INT32_MAX) return cudaErrorInvalidValue;
  if (T == 0 || N == 0) return cudaSuccess;
  const int eb = dtype_bytes(dtype);
  const bool use_vec = vec_ok(In, N, eb) && vec_ok(Out, N, eb);
  const dim3 grid(static_cast<unsigned>(ceil_div(T, 64)), static_cast<unsigned>(ceil_div(N, 128)));
  return DTYPE_SWITCH(dtype, [&] {
    return VEC_SWITCH(use_vec, [&] {
      return BOOL_SWITCH(In != nullptr, kHasIn, [&] {
        auto kernel = rank_expand_kernel<scalar_t, kVec, kHasIn>;
        TT_LAUNCH(kernel, grid, dim3(kThreads), stream, static_cast<const scalar_t*>(In),
                  static_cast<scalar_t*>(Out), P, static_cast<const scalar_t*>(Vt), T, static_cast<int>(N),
                  static_cast<int>(R), alpha);
        return TT_LAUNCH_STATUS();
      });
    });
  });
}

}  // namespace ttkernels
