"""The llama.cpp engine every agent uses, behind one small interface (``TextEngine``).

``load_engine(role, settings)`` (shared.llm.factory) gives an agent its engine; llama.cpp
itself is imported only by shared.llm.llama, so services without a model never load it.
"""

from shared.llm.base import GenerationRequest, GenerationResult, ScriptedEngine, TextEngine

__all__ = ["GenerationRequest", "GenerationResult", "ScriptedEngine", "TextEngine"]
