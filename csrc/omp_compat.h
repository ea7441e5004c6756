/* OpenMP entry points fastdp's kernels use, with serial stand-ins when built without OpenMP. */
#ifndef FASTDP_OMP_COMPAT_H
#define FASTDP_OMP_COMPAT_H

#ifdef _OPENMP
#include <omp.h>
#define FASTDP_HAVE_OPENMP 1
#else
#define FASTDP_HAVE_OPENMP 0
static inline void omp_set_num_threads(int n) { (void)n; }
static inline int omp_get_max_threads(void) { return 1; }
#endif

#endif
