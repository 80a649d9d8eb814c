"""select package."""
