// ttkernels._C: the torch-facing half of the CUDA extension (pybind11). It validates the tensors, allocates
// the outputs, runs the base GEMM through ATen (cuBLAS) and launches the adapter kernels (tt_linear_*.cu) on
// the current stream of the inputs' device. Nothing here synchronises the host.
//
// Semantics follow the backend contract in ttkernels/backends.py (2-D tensors):
//   linear_fwd:  z = x Aᵀ (fp32),  y = x Wᵀ + bias + α z Bᵀ                      (x.dtype)
//   adapter_fwd: z = x Aᵀ (fp32),  y = base_out + α z Bᵀ                          (x.dtype)
//   linear_bwd:  dx = dy W + α (dy B) A,  dA = α (dy B)ᵀ x,  dB = α dyᵀ z      (x / A / B dtypes)
// A and B may be stored in another float dtype than x; they are rounded to x.dtype for the products (as the
// torch backend does) and dA / dB come back in their own dtypes.

#include <torch/extension.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <optional>
#include <string>
#include <tuple>

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "tt_linear.h"

// Each check names the tensor, what was expected and what it got. Messages carry numbers only as strings made
// by std::to_string (dims_str): on the H200 image (torch 2.11.0+cu130, g++ 13.3) streaming an int64 through
// std::ostream inside this module crashed the process (SIGSEGV in ostream::_M_insert<long>, reached from
// c10::str) instead of raising; c10's own formatters (Device::str) and C strings were fine.
#define CHECK_CUDA(x) \
  TORCH_CHECK((x).is_cuda(), "ttkernels._C: " #x " must be a CUDA tensor, got device ", (x).device().str())
#define CHECK_DEVICE(x, ref)                                                                                \
  TORCH_CHECK((x).device() == (ref).device(), "ttkernels._C: " #x " must be on the device of " #ref " (", \
              (ref).device().str(), "), got ", (x).device().str())
#define CHECK_DTYPE(x, expected)                                                                             \
  TORCH_CHECK((x).scalar_type() == (expected), "ttkernels._C: " #x " must have dtype ", c10::toString(expected), \
              ", got ", c10::toString((x).scalar_type()))
#define CHECK_CONTIGUOUS(x)                                                                                   \
  TORCH_CHECK((x).is_contiguous(), "ttkernels._C: " #x " must be contiguous (row-major), got strides ", \
              dims_str((x).strides()), " for shape ", dims_str((x).sizes()))
#define CHECK_SHAPE(x, ...) check_shape((x), #x, {__VA_ARGS__}, #__VA_ARGS__)

namespace ttkernels {
namespace {

// "[a, b, c]", formatted without std::ostream (see the note on the checks above).
std::string dims_str(at::IntArrayRef dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(dims[i]);
  }
  return out + "]";
}

void check_shape(const at::Tensor& t, const char* name, std::initializer_list<int64_t> expected, const char* dims) {
  const at::IntArrayRef want(expected);
  TORCH_CHECK(t.sizes() == want, "ttkernels._C: ", name, " must have shape (", dims, ") = ", dims_str(want), ", got ",
              dims_str(t.sizes()));
}

void check_float_dtype(const at::Tensor& t, const char* name) {
  const auto s = t.scalar_type();
  TORCH_CHECK(s == at::kFloat || s == at::kHalf || s == at::kBFloat16, "ttkernels._C: ", name,
              " must be float32, float16 or bfloat16, got ", c10::toString(s));
}

DType to_dtype(at::ScalarType s) {
  switch (s) {
    case at::kHalf:
      return DType::kFloat16;
    case at::kBFloat16:
      return DType::kBFloat16;
    case at::kFloat:
      return DType::kFloat32;
    default:
      TORCH_CHECK(false, "ttkernels._C: unsupported dtype ", c10::toString(s), " (float32, float16 or bfloat16)");
  }
}

// Streaming multiprocessors of `device`, queried once per device (an attribute read, no synchronisation).
int sm_count(int device) {
  static std::array<std::atomic<int>, 256> cache{};
  if (device >= 0 && device < static_cast<int>(cache.size())) {
    const int known = cache[device].load(std::memory_order_relaxed);
    if (known > 0) return known;
  }
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  if (device >= 0 && device < static_cast<int>(cache.size())) cache[device].store(count, std::memory_order_relaxed);
  return count;
}

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "ttkernels._C: launching ", what, " failed: ", cudaGetErrorString(err));
}

// x (T, n) and the factors A (R, n), B (m, R): device, dtype, shape and layout.
void check_adapter_inputs(const at::Tensor& x, const at::Tensor& A, const at::Tensor& B, int64_t m) {
  CHECK_CUDA(x);
  TORCH_CHECK(x.dim() == 2, "ttkernels._C: x must be 2-D (T, n), got shape ", dims_str(x.sizes()));
  check_float_dtype(x, "x");
  CHECK_CONTIGUOUS(x);
  TORCH_CHECK(A.dim() == 2, "ttkernels._C: A must be 2-D (R, n), got shape ", dims_str(A.sizes()));
  const int64_t n = x.size(1);
  const int64_t R = A.size(0);
  CHECK_DEVICE(A, x);
  CHECK_DEVICE(B, x);
  check_float_dtype(A, "A");
  check_float_dtype(B, "B");
  CHECK_SHAPE(A, R, n);
  CHECK_SHAPE(B, m, R);
  CHECK_CONTIGUOUS(A);
  CHECK_CONTIGUOUS(B);
  TORCH_CHECK(n <= INT32_MAX && m <= INT32_MAX && R <= INT32_MAX, "ttkernels._C: n, m and R must fit in int32, got n=",
              std::to_string(n), ", m=", std::to_string(m), ", R=", std::to_string(R));
}

// z = x Aᵀ (T, R) fp32.
at::Tensor project(const at::Tensor& x, const at::Tensor& A_x, cudaStream_t stream) {
  const int64_t T = x.size(0), n = x.size(1), R = A_x.size(0);
  at::Tensor z = at::empty({T, R}, x.options().dtype(at::kFloat));
  check_launch(launch_rank_proj(to_dtype(x.scalar_type()), x.data_ptr(), A_x.data_ptr(), z.data_ptr<float>(), T, n,
                                R, sm_count(x.get_device()), stream),
               "rank projection z = x A^T");
  return z;
}

// out = in + α z Bᵀ, in place when out is in.
void expand(const at::Tensor& in, at::Tensor& out, const at::Tensor& z, const at::Tensor& B_t, double alpha,
            cudaStream_t stream, const char* what) {
  const int64_t T = out.size(0), N = out.size(1), R = z.size(1);
  check_launch(launch_rank_expand(to_dtype(out.scalar_type()), in.defined() ? in.data_ptr() : nullptr, out.data_ptr(),
                                  z.data_ptr<float>(), B_t.data_ptr(), T, N, R, static_cast<float>(alpha), stream),
               what);
}

// out (in its own dtype) = α Xᵀ P, written with strides (stride_k, stride_r) for the (K, R) result.
void reduce(const at::Tensor& X, const at::Tensor& P, at::Tensor& out, int64_t stride_k, int64_t stride_r,
            double alpha, at::Tensor& workspace, int splits, cudaStream_t stream, const char* what) {
  const int64_t T = X.size(0), K = X.size(1), R = P.size(1);
  check_launch(launch_rank_reduce(to_dtype(X.scalar_type()), to_dtype(out.scalar_type()), X.data_ptr(),
                                  P.data_ptr<float>(), out.data_ptr(), stride_k, stride_r, T, K, R,
                                  static_cast<float>(alpha), splits, workspace.data_ptr<float>(), stream),
               what);
}

std::tuple<at::Tensor, at::Tensor> linear_fwd(const at::Tensor& x,       // (T, n)
                                              const at::Tensor& weight,  // (m, n)
                                              const std::optional<at::Tensor>& bias,  // (m,)
                                              const at::Tensor& A,       // (R, n)
                                              const at::Tensor& B,       // (m, R)
                                              double alpha) {
  TORCH_CHECK(weight.dim() == 2, "ttkernels._C: weight must be 2-D (m, n), got shape ", dims_str(weight.sizes()));
  const int64_t m = weight.size(0);
  check_adapter_inputs(x, A, B, m);
  const int64_t n = x.size(1);
  CHECK_DEVICE(weight, x);
  CHECK_DTYPE(weight, x.scalar_type());
  CHECK_SHAPE(weight, m, n);
  if (bias.has_value()) {
    const at::Tensor& b = *bias;
    CHECK_DEVICE(b, x);
    CHECK_DTYPE(b, x.scalar_type());
    CHECK_SHAPE(b, m);
  }
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();

  const at::Tensor z = project(x, A.to(x.scalar_type()), stream);
  // Base GEMM through cuBLAS (ATen puts it on the same current stream), then the adapter term in place.
  at::Tensor y = bias.has_value() ? at::addmm(*bias, x, weight.t()) : at::mm(x, weight.t());
  const at::Tensor B_t = B.to(x.scalar_type()).t().contiguous();  // (R, m): rows of Bᵀ for the expansion
  expand(y, y, z, B_t, alpha, stream, "adapter epilogue y += alpha z B^T");
  return {y, z};
}

std::tuple<at::Tensor, at::Tensor> adapter_fwd(const at::Tensor& x,         // (T, n)
                                               const at::Tensor& base_out,  // (T, m)
                                               const at::Tensor& A,         // (R, n)
                                               const at::Tensor& B,         // (m, R)
                                               double alpha) {
  TORCH_CHECK(B.dim() == 2, "ttkernels._C: B must be 2-D (m, R), got shape ", dims_str(B.sizes()));
  const int64_t m = B.size(0);
  check_adapter_inputs(x, A, B, m);
  CHECK_DEVICE(base_out, x);
  CHECK_DTYPE(base_out, x.scalar_type());
  CHECK_SHAPE(base_out, x.size(0), m);
  CHECK_CONTIGUOUS(base_out);
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();

  const at::Tensor z = project(x, A.to(x.scalar_type()), stream);
  at::Tensor y = at::empty_like(base_out, at::MemoryFormat::Contiguous);  // base_out is never written
  const at::Tensor B_t = B.to(x.scalar_type()).t().contiguous();
  expand(base_out, y, z, B_t, alpha, stream, "adapter epilogue y = base_out + alpha z B^T");
  return {y, z};
}

std::tuple<std::optional<at::Tensor>, std::optional<at::Tensor>, std::optional<at::Tensor>> linear_bwd(
    const at::Tensor& dy,                     // (T, m)
    const at::Tensor& x,                      // (T, n)
    const at::Tensor& z,                      // (T, R) fp32, from the forward
    const std::optional<at::Tensor>& weight,  // (m, n), or None for the adapter-only path
    const at::Tensor& A,                      // (R, n)
    const at::Tensor& B,                      // (m, R)
    double alpha, bool need_dx, bool need_dA, bool need_dB) {
  TORCH_CHECK(B.dim() == 2, "ttkernels._C: B must be 2-D (m, R), got shape ", dims_str(B.sizes()));
  const int64_t m = B.size(0);
  check_adapter_inputs(x, A, B, m);
  const int64_t T = x.size(0), n = x.size(1), R = A.size(0);
  CHECK_DEVICE(dy, x);
  CHECK_DTYPE(dy, x.scalar_type());
  CHECK_SHAPE(dy, T, m);
  CHECK_CONTIGUOUS(dy);
  CHECK_DEVICE(z, x);
  CHECK_DTYPE(z, at::kFloat);
  CHECK_SHAPE(z, T, R);
  CHECK_CONTIGUOUS(z);
  if (weight.has_value()) {
    const at::Tensor& w = *weight;
    CHECK_DEVICE(w, x);
    CHECK_DTYPE(w, x.scalar_type());
    CHECK_SHAPE(w, m, n);
  }
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int sms = sm_count(x.get_device());

  std::optional<at::Tensor> dx, dA, dB;
  at::Tensor dyB;  // (T, R) fp32 = dy B, shared by dx and dA
  if (need_dx || need_dA) {
    dyB = project(dy, B.to(x.scalar_type()).t().contiguous(), stream);  // W = Bᵀ (R, m)
  }
  if (need_dx) {
    at::Tensor out;
    at::Tensor base;  // undefined: no frozen weight, dx is the adapter term alone
    if (weight.has_value()) {
      out = at::mm(dy, *weight);  // cuBLAS
      base = out;
    } else {
      out = at::empty({T, n}, x.options());
    }
    expand(base, out, dyB, A.to(x.scalar_type()), alpha, stream, "dx += alpha (dy B) A");
    dx = out;
  }
  if (need_dA || need_dB) {
    const int splits_a = need_dA ? rank_reduce_splits(T, n, R, sms) : 1;
    const int splits_b = need_dB ? rank_reduce_splits(T, m, R, sms) : 1;
    const int64_t ws_floats = std::max(need_dA ? rank_reduce_workspace_floats(n, R, splits_a) : 0,
                                       need_dB ? rank_reduce_workspace_floats(m, R, splits_b) : 0);
    // One fp32 workspace for both reductions: they run one after the other on the same stream.
    at::Tensor ws = at::empty({std::max<int64_t>(ws_floats, 1)}, x.options().dtype(at::kFloat));
    if (need_dA) {
      at::Tensor out = at::empty({R, n}, A.options());  // G = (dy B)ᵀ-weighted x is (n, R): write it transposed
      reduce(x, dyB, out, /*stride_k=*/1, /*stride_r=*/n, alpha, ws, splits_a, stream, "dA = alpha (dy B)^T x");
      dA = out;
    }
    if (need_dB) {
      at::Tensor out = at::empty({m, R}, B.options());
      reduce(dy, z, out, /*stride_k=*/R, /*stride_r=*/1, alpha, ws, splits_b, stream, "dB = alpha dy^T z");
      dB = out;
    }
  }
  return {dx, dA, dB};
}

}  // namespace
}  // namespace ttkernels

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() =
      "ttkernels CUDA extension: fused TT-LoRA linear forward/backward (see ttkernels/backends.py for the contract)";
  m.def("linear_fwd", &ttkernels::linear_fwd,
        "(y, z) with z = x A^T (fp32) and y = x W^T + bias + alpha z B^T", py::arg("x"), py::arg("weight"),
        py::arg("bias"), py::arg("A"), py::arg("B"), py::arg("alpha"));
  m.def("adapter_fwd", &ttkernels::adapter_fwd, "(y, z) with z = x A^T (fp32) and y = base_out + alpha z B^T",
        py::arg("x"), py::arg("base_out"), py::arg("A"), py::arg("B"), py::arg("alpha"));
  m.def("linear_bwd", &ttkernels::linear_bwd,
        "(dx, dA, dB): dx = dy W + alpha (dy B) A, dA = alpha (dy B)^T x, dB = alpha dy^T z; None where not needed",
        py::arg("dy"), py::arg("x"), py::arg("z"), py::arg("weight"), py::arg("A"), py::arg("B"), py::arg("alpha"),
        py::arg("need_dx"), py::arg("need_dA"), py::arg("need_dB"));
  m.attr("cuda_runtime_version") = CUDART_VERSION;
}
