// CPU emulation of the small part of CUDA that the csrc kernels use, for tests on machines without a GPU
// (tests/test_csrc_build.py). Not part of the extension build.
//
// The .cu files are compiled as C++ with -DTTKERNELS_CPU_EMULATION; tt_common.cuh then includes this file
// instead of cuda_runtime.h. A launch runs the blocks one after another; inside a block every CUDA thread
// is a ucontext fiber on one OS thread, switched at __syncthreads() and at warp shuffles, so barriers,
// shared memory (a function-local static: shared by the block's fibers) and shuffles keep their CUDA
// meaning. A barrier that some threads never reach is reported as a deadlock instead of hanging. What it
// cannot show: timing, races that need real concurrency, memory-model or alignment faults.
#pragma once

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include <cuda_bf16.h>  // host-side __half / __nv_bfloat16 and their conversions
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>  // cudaError_t, cudaStream_t
#include <vector_types.h>      // uint3, uint4, float4, dim3

#undef __shared__
#define __shared__ static
#define __launch_bounds__(...)
#define __syncthreads() ::ttemu::syncthreads()
#define threadIdx (::ttemu::current_thread_idx())
#define blockIdx (::ttemu::g_block_idx)
#define blockDim (::ttemu::g_block_dim)
#define gridDim (::ttemu::g_grid_dim)

namespace ttemu {

constexpr size_t kStackBytes = 256 * 1024;

struct Fiber {
  ucontext_t ctx{};
  std::unique_ptr<char[]> stack;
  uint3 tid{};
  bool done = false;
  int waiting = 0;  // 0 runnable, 1 block barrier, 2 warp barrier
  uint64_t wait_gen = 0;
  uint64_t shfl_count = 0;
};

struct Block {
  ucontext_t scheduler{};
  std::vector<Fiber> fibers;
  int current = -1;
  int nthreads = 0;
  uint64_t block_gen = 0;
  int block_arrived = 0;
  std::vector<uint64_t> warp_gen;
  std::vector<int> warp_arrived;
  std::vector<uint64_t> slots;  // [warp][parity][lane]
  std::function<void()> body;
};

inline Block* g_block = nullptr;
inline uint3 g_block_idx{};
inline dim3 g_block_dim{};
inline dim3 g_grid_dim{};

inline uint3 current_thread_idx() { return g_block->fibers[g_block->current].tid; }

inline int linear_tid() {
  const uint3 t = current_thread_idx();
  return static_cast<int>(t.x + g_block_dim.x * (t.y + g_block_dim.y * t.z));
}

inline void yield_to_scheduler() {
  Fiber& f = g_block->fibers[g_block->current];
  swapcontext(&f.ctx, &g_block->scheduler);
}

inline void syncthreads() {
  Block& b = *g_block;
  if (++b.block_arrived == b.nthreads) {  // the last one in releases the others
    b.block_arrived = 0;
    ++b.block_gen;
    return;
  }
  Fiber& f = b.fibers[b.current];
  f.waiting = 1;
  f.wait_gen = b.block_gen;
  yield_to_scheduler();
}

inline void warp_barrier(int warp) {
  Block& b = *g_block;
  if (++b.warp_arrived[warp] == 32) {
    b.warp_arrived[warp] = 0;
    ++b.warp_gen[warp];
    return;
  }
  Fiber& f = b.fibers[b.current];
  f.waiting = 2;
  f.wait_gen = b.warp_gen[warp];
  yield_to_scheduler();
}

// Double-buffered exchange: one barrier per shuffle. A lane can only overwrite a parity's slot after the
// next barrier, which every lane reaches only after reading that slot.
template <typename V>
V shfl_xor(V value, int lane_mask) {
  static_assert(sizeof(V) <= sizeof(uint64_t), "shuffle of a value wider than 8 bytes");
  Block& b = *g_block;
  const int tid = linear_tid();
  const int warp = tid / 32;
  const int lane = tid % 32;
  Fiber& f = b.fibers[b.current];
  const int parity = static_cast<int>(f.shfl_count++ & 1);
  uint64_t* slot = &b.slots[(static_cast<size_t>(warp) * 2 + parity) * 32];
  std::memcpy(&slot[lane], &value, sizeof(V));
  warp_barrier(warp);
  V out;
  std::memcpy(&out, &slot[lane ^ (lane_mask & 31)], sizeof(V));
  return out;
}

inline void fiber_entry() {
  g_block->body();
  g_block->fibers[g_block->current].done = true;
  // returning resumes uc_link, the scheduler
}

inline void run_block(int nthreads, const std::function<void()>& body) {
  if (nthreads % 32 != 0) {
    std::fprintf(stderr, "ttemu: block size %d is not a multiple of 32\n", nthreads);
    std::abort();
  }
  Block b;
  b.nthreads = nthreads;
  b.body = body;
  b.fibers.resize(nthreads);
  b.warp_gen.assign(nthreads / 32, 0);
  b.warp_arrived.assign(nthreads / 32, 0);
  b.slots.assign(static_cast<size_t>(nthreads / 32) * 2 * 32, 0);
  g_block = &b;
  for (int i = 0; i < nthreads; ++i) {
    Fiber& f = b.fibers[i];
    f.tid = uint3{static_cast<unsigned>(i) % g_block_dim.x, (static_cast<unsigned>(i) / g_block_dim.x) % g_block_dim.y,
                  static_cast<unsigned>(i) / (g_block_dim.x * g_block_dim.y)};
    f.stack.reset(new char[kStackBytes]);
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.get();
    f.ctx.uc_stack.ss_size = kStackBytes;
    f.ctx.uc_link = &b.scheduler;
    makecontext(&f.ctx, fiber_entry, 0);
  }
  int remaining = nthreads;
  while (remaining > 0) {
    bool progressed = false;
    for (int i = 0; i < nthreads; ++i) {
      Fiber& f = b.fibers[i];
      if (f.done) continue;
      if (f.waiting == 1 && f.wait_gen == b.block_gen) continue;
      if (f.waiting == 2 && f.wait_gen == b.warp_gen[i / 32]) continue;
      f.waiting = 0;
      b.current = i;
      swapcontext(&b.scheduler, &f.ctx);
      progressed = true;
      if (f.done) --remaining;
    }
    if (!progressed) {
      std::fprintf(stderr, "ttemu: deadlock in block (%u, %u, %u): %d threads wait at a barrier others never reach\n",
                   g_block_idx.x, g_block_idx.y, g_block_idx.z, remaining);
      std::abort();
    }
  }
  g_block = nullptr;
}

template <typename... KArgs, typename... Args>
void launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, Args... args) {
  g_grid_dim = grid;
  g_block_dim = block;
  const int nthreads = static_cast<int>(block.x * block.y * block.z);
  const std::function<void()> body = [&] { kernel(static_cast<KArgs>(args)...); };
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        g_block_idx = uint3{x, y, z};
        run_block(nthreads, body);
      }
    }
  }
}

}  // namespace ttemu

template <typename V>
inline V __shfl_xor_sync(unsigned /*mask*/, V value, int lane_mask) {
  return ::ttemu::shfl_xor(value, lane_mask);
}

template <typename V>
inline V __ldg(const V* p) {
  return *p;
}
