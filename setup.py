"""Build the Cython core (cardledger._core); everything else is in pyproject.toml."""

import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# CARDLEDGER_DEBUG=1 compiles the core's tripwires in (cext/debug.h: CL_ASSERT aborts
# the process on a broken invariant, and cardledger._core.DEBUG_ASSERTIONS is True),
# with C asserts on, unoptimised and with symbols for a debugger: the suite is bound by
# Python, so this costs it little. A release build has neither and is compiled at -O3.
# The generated C is the same for both (the switch is a C macro): switching builds
# needs a forced compile (build_ext --force), not a new cythonize.
debug = os.environ.get("CARDLEDGER_DEBUG") == "1"

extensions = [
    Extension(
        "cardledger._core",
        ["cext/_core.pyx"],
        include_dirs=[np.get_include(), "cext"],
        depends=["cext/debug.h"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        + ([("CARDLEDGER_DEBUG", "1")] if debug else [("NDEBUG", "1")]),
        extra_compile_args=["-O0", "-g"] if debug else ["-O3"],
    )
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}))
