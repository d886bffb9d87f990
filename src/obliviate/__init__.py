"""obliviate: make a causal language model forget chosen data, measure it, audit it."""

__version__ = "0.1.0"
