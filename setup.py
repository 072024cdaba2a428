"""The one compiled piece: the multi-index hash's inner loop (services/matcher/_mih.c).

Everything else about the package is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("services.matcher._mih", ["services/matcher/_mih.c"], extra_compile_args=["-O3"])
    ]
)
