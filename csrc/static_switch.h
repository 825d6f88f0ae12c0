// Turn a runtime value into a compile-time template parameter: each macro expands the body once per case
// inside a lambda, with the chosen value bound to a constexpr name. Kernels then see feature flags (bias,
// vector width, ranks per thread) as constants, so unused branches and register arrays compile away.
//
//   BOOL_SWITCH(has_in, HAS_IN, [&] { launch<HAS_IN>(...); });
#pragma once

#include "tt_common.cuh"

#define BOOL_SWITCH(COND, CONST_NAME, ...)          \
  [&] {                                             \
    if (COND) {                                     \
      constexpr static bool CONST_NAME = true;      \
      return __VA_ARGS__();                         \
    } else {                                        \
      constexpr static bool CONST_NAME = false;     \
      return __VA_ARGS__();                         \
    }                                               \
  }()

// Binds `scalar_t` to the element type of a ttkernels::DType (fp32, fp16 or bf16).
#define DTYPE_SWITCH(DTYPE, ...)                                \
  [&] {                                                         \
    switch (DTYPE) {                                            \
      case ::ttkernels::DType::kFloat16: {                      \
        using scalar_t = __half;                                \
        return __VA_ARGS__();                                   \
      }                                                         \
      case ::ttkernels::DType::kBFloat16: {                     \
        using scalar_t = __nv_bfloat16;                         \
        return __VA_ARGS__();                                   \
      }                                                         \
      default: {                                                \
        using scalar_t = float;                                 \
        return __VA_ARGS__();                                   \
      }                                                         \
    }                                                           \
  }()

// Same, binding `out_t` (for kernels whose output dtype differs from the input's, e.g. dA in A's dtype).
#define OUT_DTYPE_SWITCH(DTYPE, ...)                            \
  [&] {                                                         \
    switch (DTYPE) {                                            \
      case ::ttkernels::DType::kFloat16: {                      \
        using out_t = __half;                                   \
        return __VA_ARGS__();                                   \
      }                                                         \
      case ::ttkernels::DType::kBFloat16: {                     \
        using out_t = __nv_bfloat16;                            \
        return __VA_ARGS__();                                   \
      }                                                         \
      default: {                                                \
        using out_t = float;                                    \
        return __VA_ARGS__();                                   \
      }                                                         \
    }                                                           \
  }()

// Binds `kVec` to the 16-byte vector width of scalar_t when the rows allow 16-byte accesses, else 1.
#define VEC_SWITCH(USE_VEC, ...)                                               \
  [&] {                                                                        \
    if (USE_VEC) {                                                             \
      constexpr static int kVec = ::ttkernels::kVecBytes / sizeof(scalar_t);   \
      return __VA_ARGS__();                                                    \
    } else {                                                                   \
      constexpr static int kVec = 1;                                           \
      return __VA_ARGS__();                                                    \
    }                                                                          \
  }()
