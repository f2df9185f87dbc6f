"""Diagnostics before training: transferability ranking of backbones and the domain gap (docs/diagnostics.md)."""
