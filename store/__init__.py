"""Journal (decisions, LLM calls, orders, fills, positions, events), migrations, event bus."""
