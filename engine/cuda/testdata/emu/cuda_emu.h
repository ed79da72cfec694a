// A small CPU emulation of the CUDA features bertq's kernels use, so that the
// kernels' own source runs (slowly) on a machine without a GPU. Each CUDA
// thread of a block is a fiber scheduled round-robin on the
// calling OS thread; __syncthreads and __syncwarp park a fiber until every
// live thread of the block (or warp) has arrived; warp shuffles exchange
// through a per-warp slot array between two warp barriers. Blocks run one
// after another, so static __shared__ variables can be plain statics.
// The test harness rewrites "extern __shared__ T name[];" to read
// emu_dyn_smem and "__shared__" to "static" before compiling.
#pragma once
#include <math.h>
#include <ucontext.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
static dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict

static std::vector<unsigned char> emu_smem_buf;
static void* emu_dyn_smem;

namespace emu {
enum State { runnable, at_block_barrier, at_warp_barrier, done };

#if defined(__x86_64__)
// A minimal context switch: glibc's swapcontext also saves the signal mask
// with a system call, which made barriers cost a microsecond each.
extern "C" void emu_switch(void** save_sp, void* to_sp);
asm(R"(
.text
.globl emu_switch
.hidden emu_switch
.type emu_switch,@function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
)");
struct Context {
    void* sp;
};
static void trampoline();
static void make_context(Context* c, char* stack, size_t size) {
    // Entered through emu_switch's ret: six callee-saved slots, then the
    // entry point; %rsp ≡ 8 (mod 16) at entry, as after a call.
    uintptr_t top = ((uintptr_t)(stack + size) & ~(uintptr_t)15) - 8;
    void** sp = (void**)top;
    *--sp = (void*)trampoline;
    for (int i = 0; i < 6; i++) *--sp = nullptr;
    c->sp = sp;
}
static void switch_context(Context* from, Context* to) { emu_switch(&from->sp, to->sp); }
#else
struct Context {
    ucontext_t uc;
};
static void trampoline();
static void make_context(Context* c, char* stack, size_t size) {
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = nullptr;
    makecontext(&c->uc, trampoline, 0);
}
static void switch_context(Context* from, Context* to) { swapcontext(&from->uc, &to->uc); }
#endif

struct Fiber {
    Context ctx;
    State state;
};
constexpr size_t stack_bytes = 64 << 10;
static std::vector<Fiber> fibers;
static std::vector<char> stacks;
static Context scheduler;
static int current;
static std::function<void()> kernel;
static float slots[1024];

static void park(State s) {
    fibers[current].state = s;
    switch_context(&fibers[current].ctx, &scheduler);
}
static void trampoline() {
    kernel();
    fibers[current].state = done;
    switch_context(&fibers[current].ctx, &scheduler); // never resumed
    std::abort();
}
}  // namespace emu

inline void __syncthreads() { emu::park(emu::at_block_barrier); }
inline void __syncwarp() { emu::park(emu::at_warp_barrier); }
inline float __shfl_xor_sync(unsigned, float v, int o) {
    emu::slots[emu::current] = v;
    __syncwarp();
    const int lane = emu::current & 31;
    float r = emu::slots[(emu::current - lane) + (lane ^ o)];
    __syncwarp();
    return r;
}
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }

// emu_run_block runs one block of n fibers to completion; false on deadlock
// (threads waiting at different barriers).
static bool emu_run_block(unsigned n) {
    using namespace emu;
    fibers.assign(n, Fiber{});
    if (stacks.size() < n * stack_bytes) stacks.resize(n * stack_bytes);
    for (unsigned i = 0; i < n; i++) {
        make_context(&fibers[i].ctx, &stacks[i * stack_bytes], stack_bytes);
        fibers[i].state = runnable;
    }
    for (;;) {
        for (unsigned i = 0; i < n; i++) {
            if (fibers[i].state != runnable) continue;
            current = (int)i;
            threadIdx = dim3{i, 0, 0};
            switch_context(&scheduler, &fibers[i].ctx);
        }
        unsigned live = 0, at_block = 0;
        bool released = false;
        for (unsigned w = 0; w < n / 32; w++) {
            unsigned at_warp = 0, alive = 0;
            for (unsigned i = w * 32; i < w * 32 + 32; i++) {
                if (fibers[i].state != done) alive++;
                if (fibers[i].state == at_warp_barrier) at_warp++;
            }
            if (alive > 0 && at_warp == alive) {
                for (unsigned i = w * 32; i < w * 32 + 32; i++)
                    if (fibers[i].state == at_warp_barrier) fibers[i].state = runnable;
                released = true;
            }
        }
        for (unsigned i = 0; i < n; i++) {
            if (fibers[i].state != done) live++;
            if (fibers[i].state == at_block_barrier) at_block++;
        }
        if (live == 0) return true;
        if (!released && at_block == live) {
            for (unsigned i = 0; i < n; i++)
                if (fibers[i].state == at_block_barrier) fibers[i].state = runnable;
            released = true;
        }
        if (!released) {
            bool any = false;
            for (unsigned i = 0; i < n; i++) any |= fibers[i].state == runnable;
            if (!any) return false;
        }
    }
}

// emu_launch runs kernel() over grid × block threads; false on a deadlock or
// a block shape the kernels never use.
template <class F>
bool emu_launch(dim3 grid, dim3 block, size_t smem, F k) {
    if (block.x % 32 != 0 || block.x > 1024 || block.y != 1 || block.z != 1) {
        std::fprintf(stderr, "emu: blockDim must be (32k ≤ 1024, 1, 1), got (%u, %u, %u)\n", block.x, block.y, block.z);
        return false;
    }
    emu_smem_buf.assign(smem + 16, 0xAB);  // garbage, like real shared memory
    emu_dyn_smem = emu_smem_buf.data();
    gridDim = grid;
    blockDim = block;
    emu::kernel = k;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx = dim3{x, y, z};
                if (!emu_run_block(block.x)) {
                    std::fprintf(stderr, "emu: deadlock in block (%u, %u, %u): threads wait at different barriers\n", x, y, z);
                    return false;
                }
            }
    return true;
}
