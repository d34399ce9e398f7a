"""Source separators behind one interface, and the cache of their estimates."""
