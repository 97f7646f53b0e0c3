"""Copies the libtq.so that `make` built (../build/libtq.so, or $TQ_LIB) into the package so that an installed tq
needs no source tree; nothing is compiled here. Without it the package still imports from a clone (it then looks
for build/libtq.so beside python/) or wherever $TQ_LIB points at run time."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPy(build_py):
    def run(self):
        super().run()
        src = os.environ.get("TQ_LIB") or os.path.join(HERE, "..", "build", "libtq.so")
        if not os.path.exists(src):
            raise SystemExit("tq: no libtq.so at %s: run `make` in the tq source tree first (or set TQ_LIB)" % src)
        dst = os.path.join(self.build_lib, "tq", "libtq.so")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildPy})
