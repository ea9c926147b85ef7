"""The llama.cpp engine every agent uses, behind one small interface (``TextEngine``)."""

from shared.llm.base import GenerationRequest, GenerationResult, ScriptedEngine, TextEngine

__all__ = ["GenerationRequest", "GenerationResult", "ScriptedEngine", "TextEngine"]
