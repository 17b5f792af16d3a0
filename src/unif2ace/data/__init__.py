"""Data: the attribute ontology, FaceForge, shards, real-set importers."""
