// Device helpers shared by the kernels: element conversion, 16-byte vector loads, a warp reduce-scatter,
// and the launch macro. Only CUDA headers here (no torch/ATen), see tt_linear.h.
#pragma once

#include <cstdint>

#ifdef TTKERNELS_CPU_EMULATION
// Tests only: run the kernels on the CPU (one fiber per CUDA thread), see csrc/emu/cuda_emu.h.
#include "emu/cuda_emu.h"
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include "tt_linear.h"

#ifdef TTKERNELS_CPU_EMULATION
#define TT_LAUNCH(KERNEL, GRID, BLOCK, STREAM, ...) ::ttemu::launch(KERNEL, GRID, BLOCK, __VA_ARGS__)
#define TT_LAUNCH_STATUS() cudaSuccess
#else
// KERNEL is a function-pointer variable so that template arguments with commas survive the macro.
#define TT_LAUNCH(KERNEL, GRID, BLOCK, STREAM, ...) KERNEL<<<GRID, BLOCK, 0, STREAM>>>(__VA_ARGS__)
// Reports a bad launch configuration without synchronising (no cudaDeviceSynchronize in the hot path).
#define TT_LAUNCH_STATUS() cudaGetLastError()
#endif

namespace ttkernels {

constexpr int kThreads = 256;  // every kernel uses 8 warps per block
constexpr int kWarps = kThreads / 32;
constexpr int kVecBytes = 16;  // one 128-bit access per thread: 8 x fp16/bf16 or 4 x fp32

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }

// VEC consecutive elements -> fp32. With VEC * sizeof(T) == 16 this is one 128-bit load; the launchers
// only pick that width when every row start is 16-byte aligned.
template <typename T, int VEC>
__device__ __forceinline__ void load_vec(const T* p, float (&out)[VEC]) {
  if constexpr (VEC * sizeof(T) == kVecBytes) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int v = 0; v < VEC; ++v) out[v] = to_float(e[v]);
  } else {
#pragma unroll
    for (int v = 0; v < VEC; ++v) out[v] = to_float(p[v]);
  }
}

// Same through the read-only (non-coherent) cache: for the small factor matrices that every warp re-reads.
template <typename T, int VEC>
__device__ __forceinline__ void load_vec_ldg(const T* p, float (&out)[VEC]) {
  if constexpr (VEC * sizeof(T) == kVecBytes) {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int v = 0; v < VEC; ++v) out[v] = to_float(e[v]);
  } else {
#pragma unroll
    for (int v = 0; v < VEC; ++v) out[v] = to_float(p[v]);
  }
}

template <typename T, int VEC>
__device__ __forceinline__ void store_vec(T* p, const float (&in)[VEC]) {
  if constexpr (VEC * sizeof(T) == kVecBytes) {
    uint4 raw;
    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int v = 0; v < VEC; ++v) e[v] = from_float<T>(in[v]);
    *reinterpret_cast<uint4*>(p) = raw;
  } else {
#pragma unroll
    for (int v = 0; v < VEC; ++v) p[v] = from_float<T>(in[v]);
  }
}

// Sums N per-lane values (N a multiple of 32) across the warp with a reduce-scatter butterfly: at each step a
// lane keeps one half of its values and adds the partner's copy of that half, so N values cost N - N/32
// shuffles instead of 5 N. Afterwards lane l holds the warp totals of values l * (N / 32) + j in vals[j],
// j < N / 32; the other entries are left unspecified.
template <int HALF, int OFFSET, int N>
__device__ __forceinline__ void reduce_scatter_step(float (&vals)[N], int lane) {
  const bool upper = (lane & OFFSET) != 0;
#pragma unroll
  for (int i = 0; i < HALF; ++i) {
    const float send = upper ? vals[i] : vals[i + HALF];
    const float keep = upper ? vals[i + HALF] : vals[i];
    vals[i] = keep + __shfl_xor_sync(0xffffffffu, send, OFFSET);
  }
  // Recursing on template arguments keeps every register index a compile-time constant.
  if constexpr (OFFSET > 1) reduce_scatter_step<HALF / 2, OFFSET / 2>(vals, lane);
}

template <int N>
__device__ __forceinline__ void warp_reduce_scatter(float (&vals)[N], int lane) {
  static_assert(N % 32 == 0, "warp_reduce_scatter needs a multiple of 32 values");
  reduce_scatter_step<N / 2, 16>(vals, lane);
}

// Host side: can rows of `width` elements starting at `ptr` be read with 16-byte vectors? (null: no rows)
inline bool vec_ok(const void* ptr, int64_t width, int elem_bytes) {
  const int vec = kVecBytes / elem_bytes;
  return width % vec == 0 && (ptr == nullptr || reinterpret_cast<uintptr_t>(ptr) % kVecBytes == 0);
}

inline int dtype_bytes(DType dtype) { return dtype == DType::kFloat32 ? 4 : 2; }

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace ttkernels
