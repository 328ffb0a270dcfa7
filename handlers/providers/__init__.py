"""Step providers: the production and local implementations of each step's work."""
