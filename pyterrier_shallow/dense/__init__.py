"""Dense retrieval: bi-encoders and FAISS indexes."""

from pyterrier_shallow.dense.bi_encoder import BiEncoder, EncodingStats
from pyterrier_shallow.dense.faiss_index import FaissIndex
from pyterrier_shallow.dense.first_layers import save_first_layers
from pyterrier_shallow.dense.fusion import ScoreFusion

__all__ = ["BiEncoder", "EncodingStats", "FaissIndex", "ScoreFusion", "save_first_layers"]
