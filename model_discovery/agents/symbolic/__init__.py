"""agents symbolic package."""
