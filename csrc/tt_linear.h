// Host-side declarations shared by the binding (tt_linear.cpp) and the kernels (*.cu).
//
// The launchers take raw pointers, sizes and a cudaStream_t, and include only CUDA runtime headers, so the
// .cu files compile with plain nvcc (CI compiles them for sm_90a with a CPU-only torch) and, for the tests,
// under the CPU emulation in csrc/emu/. All tensors are row-major and contiguous; the launchers never
// synchronise the host and never allocate (the binding passes any workspace in).
//
// Notation: T tokens, K the reduced dimension (n or m), N the output width, R the TT rank at the in/out
// boundary. Every kernel accumulates in fp32.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace ttkernels {

// Activation / parameter element types the kernels are instantiated for.
enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// P[t, r] = sum_k X[t, k] * W[r, k]
//   X (T, K) and W (R, K) in `dtype`; P (T, R) fp32.
//   Used for z = x Aᵀ (W = A) and for dy·B (W = Bᵀ made contiguous by the caller).
cudaError_t launch_rank_proj(DType dtype, const void* X, const void* W, float* P, int64_t T, int64_t K,
                             int64_t R, int num_sms, cudaStream_t stream);

// Out[t, j] = In[t, j] + alpha * sum_r P[t, r] * Vt[r, j]
//   In, Out (T, N) and Vt (R, N) in `dtype`; P (T, R) fp32. In may be null (read as 0) or equal Out
//   (in place). Used for y = base + α z Bᵀ (Vt = Bᵀ) and dx = dy W + α (dy B) A (Vt = A).
cudaError_t launch_rank_expand(DType dtype, const void* In, void* Out, const float* P, const void* Vt,
                               int64_t T, int64_t N, int64_t R, float alpha, cudaStream_t stream);

// G[k, r] = alpha * sum_t X[t, k] * P[t, r], written to Out[k * stride_k + r * stride_r] in `out_dtype`.
//   X (T, K) in `dtype`; P (T, R) fp32. Two passes: per-split fp32 partials into `workspace`, then a
//   deterministic sum over the splits (no atomics). Used for dB = α dyᵀ z (strides (R, 1)) and
//   dA = α (dy B)ᵀ x (strides (1, n): the (n, R) result is written transposed into the (R, n) tensor).
int rank_reduce_splits(int64_t T, int64_t K, int64_t R, int num_sms);
int64_t rank_reduce_workspace_floats(int64_t K, int64_t R, int splits);
cudaError_t launch_rank_reduce(DType dtype, DType out_dtype, const void* X, const float* P, void* Out,
                               int64_t stride_k, int64_t stride_r, int64_t T, int64_t K, int64_t R, float alpha,
                               int splits, float* workspace, cudaStream_t stream);

}  // namespace ttkernels
