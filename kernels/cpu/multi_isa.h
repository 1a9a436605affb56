#pragma once
// DSRT_MULTI_ISA: compile a function for AVX-512 (x86-64-v4), AVX2 and baseline x86-64 and
// pick the clone at load time (GCC target_clones), so a portable build still runs plain
// loops with wide vectors where the CPU has them. Not under ThreadSanitizer: the clones'
// resolvers run during relocation, before its runtime has started, and crash there.
#if defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define DSRT_MULTI_ISA __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define DSRT_MULTI_ISA
#endif
