"""Keys: virtual and admin API keys - generation, hashing, lookup and their service rules."""
