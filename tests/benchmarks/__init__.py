"""Tests of the benchmark scripts' pure parts (no training, no data)."""
