"""data/faceforge package."""
