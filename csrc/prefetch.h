/* Software prefetch hints for fastdp's kernels: no-ops where the compiler has no builtin.
   FASTDP_PREFETCH(p): bring *p toward L1 for reading; FASTDP_PREFETCH_W(p): for writing. Both
   never fault, also on an address past an array's end. */
#ifndef FASTDP_PREFETCH_H
#define FASTDP_PREFETCH_H

#if defined(__GNUC__) || defined(__clang__)
#define FASTDP_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#define FASTDP_PREFETCH_W(p) __builtin_prefetch((p), 1, 3)
#else
#define FASTDP_PREFETCH(p) ((void)0)
#define FASTDP_PREFETCH_W(p) ((void)0)
#endif

#endif
