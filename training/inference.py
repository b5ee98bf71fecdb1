"""SageMaker serving entry point: ``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``.

The SageMaker PyTorch serving container imports ``code/inference.py`` from ``model.tar.gz`` as a
top-level module (``train.py`` copies the serving files there); batch transform on both targets
uses the same handlers. The handlers themselves live in ``serving.py``; this file only makes them
importable whichever way it is loaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

if __package__:
    from .serving import input_fn, model_fn, output_fn, predict_fn
else:
    # Imported as a top-level module (the serving container puts code/ on sys.path): load this
    # folder as a package under a private name, so the handlers' relative imports work.
    def _load_folder_as_package(name: str = "_headrace_serving"):
        if name not in sys.modules:
            here = os.path.dirname(os.path.abspath(__file__))
            spec = importlib.util.spec_from_file_location(
                name, os.path.join(here, "__init__.py"), submodule_search_locations=[here]
            )
            package = importlib.util.module_from_spec(spec)
            sys.modules[name] = package
            spec.loader.exec_module(package)
        return importlib.import_module(f"{name}.serving")

    _serving = _load_folder_as_package()
    model_fn = _serving.model_fn
    input_fn = _serving.input_fn
    predict_fn = _serving.predict_fn
    output_fn = _serving.output_fn

__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]
