"""Local stand-ins for vidpipe's external services (the embedded default)."""
