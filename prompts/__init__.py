"""Prompt files, one per LLM task, and their strict loader (`prompts.loader`)."""
