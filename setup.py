"""The one part of the build that pyproject.toml cannot declare stably: the C extension.

The reasoning reward's text counts (plugins/_trace_counts_native.c). It is optional: a
machine without a C compiler still builds and installs icdreward, and the plugin then
computes the same counts in Python (about 2x slower for the default preset, results
identical). Everything else is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "icdreward_plugins._trace_counts_native",
            sources=["plugins/_trace_counts_native.c"],
            optional=True,
        )
    ]
)
