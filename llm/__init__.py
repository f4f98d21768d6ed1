"""The LLM client: providers, answer parsing, retries and breaker, response cache, reviewers."""
