"""One router per area of the public API, each built from explicit services."""
