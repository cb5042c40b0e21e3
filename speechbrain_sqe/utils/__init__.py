"""Small shared utilities with no model or metric logic (safe loading)."""
