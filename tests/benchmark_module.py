"""Import a script of `benchmarks/` (not a package) as a module, for testing its helpers."""

import importlib.util
import os

_BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "benchmarks")


def load_benchmark(name):
    """`benchmarks/<name>.py` as a module (its `main()` is not run)."""
    spec = importlib.util.spec_from_file_location(
        f"{name}_benchmark", os.path.join(_BENCHMARKS, f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
