"""Blind battles between two contestants, leak checks, and the ratings computed from the votes."""
