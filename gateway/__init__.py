"""Lethe gateway: an OpenAI-compatible suppression proxy in front of vLLM."""

__version__ = "0.1.0"
