"""Correct but unusual user models: the suite must pass them (deliberately broken ones are in tests/broken/)."""
