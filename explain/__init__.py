"""Explanations of a NeuroFusion model's predictions as plain numpy / pandas results (no Streamlit).

The case explanation's public names are importable from the package (``from explain import CaseExplainer``);
they are loaded on first use, so ``python -m explain study`` and other users of a light submodule do not
import torch, transformers and Captum.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# public name -> the module defining it (imported when the name is first asked for)
_PUBLIC = {
    "CaseExplainer": "explain.case",
    "CaseExplanation": "explain.case",
    "ExplainSettings": "explain.case",
    "FirstView": "explain.case",
    "explain_case": "explain.case",
    "Completeness": "explain.integrated",
    "ExplanationCancelled": "explain.integrated",
}
__all__ = ["CaseExplainer", "CaseExplanation", "Completeness", "ExplainSettings", "ExplanationCancelled", "FirstView",
           "explain_case"]

if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ imports them on first use
    from explain.case import CaseExplainer, CaseExplanation, ExplainSettings, FirstView, explain_case
    from explain.integrated import Completeness, ExplanationCancelled


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:  # AttributeError (not another error): `from explain import submodule` relies on it
        raise AttributeError(f"module 'explain' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
