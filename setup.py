"""Build script. The pure-Python package always installs; the CUDA extension ttkernels._C is optional.

TTKERNELS_BUILD_CUDA=auto (default) builds it when torch is a CUDA build and a CUDA toolkit is found,
=1 forces it (fails loudly if impossible), =0 skips it. See csrc/README.md.
"""

from setuptools import setup

setup()
