"""Bundled example Functions: correct ones (with specs in configs/) and deliberately broken ones."""
