"""Redis persistence: every key, the array codec, and the atomic round commit (Redis only)."""
