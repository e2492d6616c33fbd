"""Build the Cython core (cardledger._core); everything else is in pyproject.toml."""

import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# CARDLEDGER_DEBUG=1 compiles the core with C assertions on and without -O3.
debug = os.environ.get("CARDLEDGER_DEBUG") == "1"

extensions = [
    Extension(
        "cardledger._core",
        ["cext/_core.pyx"],
        include_dirs=[np.get_include(), "cext"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        + ([] if debug else [("NDEBUG", "1")]),
        extra_compile_args=["-O0", "-g"] if debug else ["-O3"],
    )
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}))
