"""Datasets: loaders for the public sets and the generic JSONL format, label maps, splits."""
