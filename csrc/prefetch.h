/* Software prefetch hint for fastdp's kernels: a no-op where the compiler has no builtin.
   FASTDP_PREFETCH(p): bring *p toward L1 for reading; it never faults, also on an address past
   an array's end. */
#ifndef FASTDP_PREFETCH_H
#define FASTDP_PREFETCH_H

#if defined(__GNUC__) || defined(__clang__)
#define FASTDP_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#else
#define FASTDP_PREFETCH(p) ((void)0)
#endif

#endif
