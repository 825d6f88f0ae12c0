// Backward reductions over the tokens: dB = α dyᵀ z (m, R) and dA = α (dy B)ᵀ x (R, n). Both are
// G[k, r] = α Σ_t X[t, k] P[t, r] with a skinny fp32 P (T, R): an outer-product sum whose inputs are long
// (T can be 10^4-10^5) and whose output is small (K x R), so the grid splits T, each split writes fp32
// partials, and a second kernel sums the splits in a fixed order (deterministic, no atomics, no memset).
// dy·B and dx's adapter term reuse the forward kernels (tt_linear_fwd.cu).

#include "static_switch.h"
#include "tt_common.cuh"

namespace ttkernels {
namespace {

constexpr int kReduceRows = 32;            // rows of X / P staged in shared memory per step
constexpr int kMinRowsPerSplit = 128;      // a split streams at least this many rows
constexpr int64_t kMaxWorkspaceFloats = int64_t(8) << 20;  // 32 MiB of fp32 partials at most

template <typename T, int VEC>
__device__ __forceinline__ void copy_vec(T* dst, const T* src) {
  if constexpr (VEC * sizeof(T) == kVecBytes) {
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
  } else {
#pragma unroll
    for (int v = 0; v < VEC; ++v) dst[v] = src[v];
  }
}

// Block = 8 warps over a BK-column strip of X and RC = 8 * RPT ranks; warp w owns ranks w*RPT.., each lane
// VEC consecutive columns. Per step, X[32 rows, strip] and P[32 rows, ranks] are staged in shared memory
// (coalesced 16-byte loads); a lane then reads its X vector (conflict-free) and the warp's P value (a
// broadcast) for each row. Output: ws[split][r][k], so consecutive lanes store consecutive k.
template <typename T, int VEC, int RPT>
__global__ void __launch_bounds__(kThreads)
    rank_reduce_partial_kernel(const T* __restrict__ X, const float* __restrict__ P, float* __restrict__ ws,
                               int64_t n_rows, int K, int R, int64_t rows_per_split) {
  constexpr int TK = 32;
  constexpr int BK = TK * VEC;
  constexpr int RC = kWarps * RPT;
  constexpr int TT = kReduceRows;
  __shared__ __align__(16) T x_s[TT][BK];
  __shared__ float p_s[TT][RC];

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int64_t k0 = static_cast<int64_t>(blockIdx.x) * BK;
  const int split = blockIdx.y;
  const int r0 = blockIdx.z * RC;
  const int64_t t_begin = split * rows_per_split;
  const int64_t t_end = (t_begin + rows_per_split < n_rows) ? t_begin + rows_per_split : n_rows;

  float acc[RPT][VEC];
#pragma unroll
  for (int i = 0; i < RPT; ++i) {
#pragma unroll
    for (int v = 0; v < VEC; ++v) acc[i][v] = 0.f;
  }

  for (int64_t tb = t_begin; tb < t_end; tb += TT) {
    __syncthreads();  // the previous tile has been consumed
    for (int idx = threadIdx.x; idx < TT * TK; idx += kThreads) {
      const int row = idx / TK;
      const int c = idx % TK;
      const int64_t t = tb + row;
      const int64_t k = k0 + c * VEC;
      T* dst = &x_s[row][c * VEC];
      if (t < t_end && k < K) {  // VEC divides K: the whole vector is in range
        copy_vec<T, VEC>(dst, X + t * K + k);
      } else {
#pragma unroll
        for (int v = 0; v < VEC; ++v) dst[v] = from_float<T>(0.f);
      }
    }
    for (int idx = threadIdx.x; idx < TT * RC; idx += kThreads) {
      const int row = idx / RC;
      const int r = idx % RC;
      const int64_t t = tb + row;
      p_s[row][r] = (t < t_end && r0 + r < R) ? P[t * R + r0 + r] : 0.f;
    }
    __syncthreads();
#pragma unroll 4
    for (int row = 0; row < TT; ++row) {
      float xv[VEC];
      load_vec<T, VEC>(&x_s[row][lane * VEC], xv);
#pragma unroll
      for (int i = 0; i < RPT; ++i) {
        const float p = p_s[row][warp * RPT + i];
#pragma unroll
        for (int v = 0; v < VEC; ++v) acc[i][v] = fmaf(xv[v], p, acc[i][v]);
      }
    }
  }

#pragma unroll
  for (int i = 0; i < RPT; ++i) {
    const int r = r0 + warp * RPT + i;
    if (r < R) {
      float* dst = ws + (static_cast<int64_t>(split) * R + r) * K;
#pragma unroll
      for (int v = 0; v < VEC; ++v) {
        const int64_t k = k0 + lane * VEC + v;
        if (k < K) dst[k] = acc[i][v];
      }
    }
  }
}

// Out[k * stride_k + r * stride_r] = α Σ_s ws[s][r][k], summed in split order.
template <typename OutT>
__global__ void __launch_bounds__(kThreads)
    rank_reduce_final_kernel(const float* __restrict__ ws, OutT* __restrict__ out, int splits, int64_t K, int R,
                             int64_t stride_k, int64_t stride_r, float alpha) {
  const int64_t total = K * R;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t r = idx / K;
    const int64_t k = idx % K;
    float sum = 0.f;
    for (int s = 0; s < splits; ++s) sum += ws[(static_cast<int64_t>(s) * R + r) * K + k];
    out[k * stride_k + r * stride_r] = from_float<OutT>(alpha * sum);
  }
}

// Ranks per thread -> ranks per block (8 warps): enough to cover small R in one block, at most 64.
inline int reduce_rpt(int64_t R) { return R <= 8 ? 1 : R <= 16 ? 2 : R <= 32 ? 4 : 8; }

template <typename T, int VEC, int RPT>
cudaError_t reduce_partial_launch(const T* X, const float* P, float* ws, int64_t n_rows, int64_t K, int64_t R,
                                  int64_t rows_per_split, int splits, cudaStream_t stream) {
  constexpr int BK = 32 * VEC;
  constexpr int RC = kWarps * RPT;
  const dim3 grid(static_cast<unsigned>(ceil_div(K, BK)), static_cast<unsigned>(splits),
                  static_cast<unsigned>(ceil_div(R, RC)));
  auto kernel = rank_reduce_partial_kernel<T, VEC, RPT>;
  TT_LAUNCH(kernel, grid, dim3(kThreads), stream, X, P, ws, n_rows, static_cast<int>(K), static_cast<int>(R),
            rows_per_split);
  return TT_LAUNCH_STATUS();
}

}  // namespace

int rank_reduce_splits(int64_t T, int64_t K, int64_t R, int num_sms) {
  if (T <= 0 || K <= 0 || R <= 0) return 1;
  // Aim for ~4 blocks per SM; the strip width of the 16-bit vector path (256 columns) stands for all paths.
  const int64_t blocks_kr = ceil_div(K, 256) * ceil_div(R, kWarps * reduce_rpt(R));
  int64_t splits = ceil_div(4 * static_cast<int64_t>(num_sms > 0 ? num_sms : 1), blocks_kr);
  const int64_t by_rows = ceil_div(T, kMinRowsPerSplit);
  const int64_t by_workspace = kMaxWorkspaceFloats / (K * R);
  splits = splits < by_rows ? splits : by_rows;
  splits = splits < by_workspace ? splits : by_workspace;
  splits = splits < 65535 ? splits : 65535;
  return static_cast<int>(splits < 1 ? 1 : splits);
}

int64_t rank_reduce_workspace_floats(int64_t K, int64_t R, int splits) { return static_cast<int64_t>(splits) * K * R; }

cudaError_t launch_rank_reduce(DType dtype, DType out_dtype, const void* X, const float* P, void* Out,
                               int64_t stride_k, int64_t stride_r, int64_t T, int64_t K, int64_t R, float alpha,
                               int splits, float* workspace, cudaStream_t stream) {
  if (T < 0 || K < 0 || R < 0 || K > INT32_MAX || R > INT32_MAX || splits < 1 || splits > 65535) {
    return cudaErrorInvalidValue;
  }
  if (K == 0 || R == 0) return cudaSuccess;
  // Whole tiles per split; the splits actually used may be fewer than asked, never more (workspace size).
  const int64_t rows_per_split = ceil_div(ceil_div(T > 0 ? T : 1, splits), kReduceRows) * kReduceRows;
  const int used = static_cast<int>(T > 0 ? ceil_div(T, rows_per_split) : 1);
  const bool use_vec = vec_ok(X, K, dtype_bytes(dtype));
  const cudaError_t err = DTYPE_SWITCH(dtype, [&] {
    return VEC_SWITCH(use_vec, [&] {
      const auto* x = static_cast<const scalar_t*>(X);
      switch (reduce_rpt(R)) {
        case 1: return reduce_partial_launch<scalar_t, kVec, 1>(x, P, workspace, T, K, R, rows_per_split, used, stream);
        case 2: return reduce_partial_launch<scalar_t, kVec, 2>(x, P, workspace, T, K, R, rows_per_split, used, stream);
        case 4: return reduce_partial_launch<scalar_t, kVec, 4>(x, P, workspace, T, K, R, rows_per_split, used, stream);
        default: return reduce_partial_launch<scalar_t, kVec, 8>(x, P, workspace, T, K, R, rows_per_split, used, stream);
      }
    });
  });
  if (err != cudaSuccess) return err;
  const int64_t blocks = ceil_div(K * R, kThreads);
  const dim3 grid(static_cast<unsigned>(blocks < 4096 ? blocks : 4096));
  return OUT_DTYPE_SWITCH(out_dtype, [&] {
    auto kernel = rank_reduce_final_kernel<out_t>;
    TT_LAUNCH(kernel, grid, dim3(kThreads), stream, workspace, static_cast<out_t*>(Out), used, K,
              static_cast<int>(R), stride_k, stride_r, alpha);
    return TT_LAUNCH_STATUS();
  });
}

}  // namespace ttkernels
