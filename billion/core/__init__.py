"""The ground floor: the model registry, loading, weights, generation and sampling, paths, errors.

Everything else in billion builds on these; nothing here imports another billion package.
"""
