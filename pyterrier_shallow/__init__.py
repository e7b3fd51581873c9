"""pyterrier-shallow: fast multi-stage retrieval for PyTerrier under a latency budget."""

__version__ = "0.1.0"
