"""data/importers package."""
