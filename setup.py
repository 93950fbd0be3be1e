"""The one part of the build that pyproject.toml cannot declare stably: the C extension.

The built-in plugins' hot string scans (plugins/icdreward_plugins/_scan_native.c). It is
optional: a machine without a C compiler still builds and installs icdreward, and the
plugins then run the same scans in Python (plugins/icdreward_plugins/_scan.py and
TagParser._well_formed_row; about 3x slower for the default preset, results identical).
Everything else is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "icdreward_plugins._scan_native",
            sources=["plugins/icdreward_plugins/_scan_native.c"],
            optional=True,
        )
    ]
)
