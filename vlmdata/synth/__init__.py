"""LLM instruction synthesis: prompts from templates, an async OpenAI-compatible client with a
per-request SQLite cache, the Batch API, cost accounting and parsing of the answers into chat turns.

Nothing here imports `openai` at module top, so validating or planning a recipe stays fast and offline.
"""
