"""Backbones: a registry of builders (registry.py) and the Backbone contract (base.py).

Kept free of imports so the config check can read the registry's names before torch is loaded.
"""
