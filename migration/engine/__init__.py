"""PAS Portal migration engine: framework-free (no Django), see ports.py."""
