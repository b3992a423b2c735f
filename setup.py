"""setuptools shim: builds the C media kernels in cext/ through cffi at install time."""

from setuptools import setup

setup(cffi_modules=["cext/build.py:ffibuilder"])
