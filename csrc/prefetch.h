/* Software prefetch hint for fastdp's kernels: a no-op where the compiler has no builtin.
   FASTDP_PREFETCH(p): bring *p into L2 (prefetcht1 on x86) for reading; it never faults, also on
   an address past an array's end. L2, not L1: the dense kernel streamed X at 24 GB/s on one core
   with prefetches into L2 1 KiB ahead, 19 GB/s with none and 15-16 GB/s with prefetches into L1
   at any distance from 1 to 16 KiB (interleaved A/B, 4e6 x 32 float64; the hardware prefetchers
   do the rest). */
#ifndef FASTDP_PREFETCH_H
#define FASTDP_PREFETCH_H

#if defined(__GNUC__) || defined(__clang__)
#define FASTDP_PREFETCH(p) __builtin_prefetch((p), 0, 2)
#else
#define FASTDP_PREFETCH(p) ((void)0)
#endif

#endif
