"""Build fastdp's compiled kernels from csrc/*.pyx.

Compiler flags (gcc and clang; each probed, and dropped where the compiler refuses it):
- -O3 plus the relaxations Numba's fastmath={'reassoc', 'contract', 'nsz', 'arcp'} grants, so sum
  reductions vectorize; NaN and inf keep their IEEE meaning (no -ffinite-math-only); and
  -funroll-loops (the K-wide softmax loops gained most from it).
- -march=native and 512-bit vectors where the CPU has them: the extension is built on the machine
  that runs it (pip install -e .). Set FASTDP_PORTABLE=1 to leave them out when the build is for
  other machines.
- -fopenmp when the compiler can compile and link an OpenMP program; where it cannot (Apple clang
  without libomp, say), the extension is built without OpenMP and a warning says so: fastdp still
  works, its Cython kernels then run on one thread.
"""

import os
import shutil
import tempfile
import warnings

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

BASE_FLAGS = ["-O3", "-funroll-loops", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math",
              "-freciprocal-math", "-ffp-contract=fast"]
NATIVE_FLAGS = ["-march=native", "-mprefer-vector-width=512"]
# Flags of one extension, after the common ones. The CSR kernels' loops run over a row's or a
# segment's non-zeros, a dozen or so: unrolled, they spent their time in the unrolled loops' set-up
# and tails (the tiled CSR logistic call on 2e5 x 2^20 took 61 ms with -funroll-loops, 45-50 ms
# without, interleaved A/B on an AMD EPYC VM).
OWN_FLAGS = {"fastdp.kernels._cython_sparse": ["-fno-unroll-loops"]}
PLAIN_PROBE = "int main(void) { return 0; }\n"
OPENMP_PROBE = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"


def compiler_accepts(compiler, flags: list[str], source: str = PLAIN_PROBE) -> bool:
    """Compile and link `source` with `flags`; True if both succeed."""
    tmp = tempfile.mkdtemp(prefix="fastdp-probe-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(source)
        objects = compiler.compile([src], output_dir=tmp, extra_postargs=flags + ["-Werror"])
        compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=flags)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    """build_ext that adds the probed optimization and OpenMP flags to every extension."""

    def build_extensions(self):
        if self.compiler.compiler_type == "msvc":
            compile_flags, link_flags = ["/O2", "/openmp"], []
        else:
            compile_flags = BASE_FLAGS if compiler_accepts(self.compiler, BASE_FLAGS) else ["-O3"]
            if not os.environ.get("FASTDP_PORTABLE"):
                compile_flags = compile_flags + [
                    f for f in NATIVE_FLAGS if compiler_accepts(self.compiler, compile_flags + [f])]
            link_flags = []
            if compiler_accepts(self.compiler, ["-fopenmp"], OPENMP_PROBE):
                compile_flags.append("-fopenmp")
                link_flags.append("-fopenmp")
            else:
                warnings.warn(
                    "fastdp: the C compiler cannot build OpenMP programs; the Cython kernels are "
                    "built without OpenMP and will run on one thread. Install an OpenMP runtime "
                    "(e.g. libomp) and reinstall to enable threads."
                )
        for ext in self.extensions:
            own = [f for f in OWN_FLAGS.get(ext.name, [])
                   if compiler_accepts(self.compiler, compile_flags + [f])]
            ext.extra_compile_args += compile_flags + own
            ext.extra_link_args += link_flags
        super().build_extensions()


extensions = [
    Extension(
        "fastdp.kernels._cython_dense",
        ["csrc/dense_loss.pyx"],
        include_dirs=["csrc"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(
        "fastdp.kernels._cython_sparse",
        ["csrc/sparse_loss.pyx"],
        include_dirs=["csrc"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
]

setup(
    ext_modules=cythonize(extensions, language_level=3),
    cmdclass={"build_ext": BuildExt},
)
