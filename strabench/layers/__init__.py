"""Attention blocks and the layers they replace, one block per file (see the house style)."""
