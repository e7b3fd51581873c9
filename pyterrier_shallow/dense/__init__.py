"""Dense retrieval: bi-encoders and FAISS indexes."""

from typing import TYPE_CHECKING

from pyterrier_shallow._lazy import lazy_exports

_EXPORTS = {
    "BiEncoder": ".bi_encoder:BiEncoder",
    "EncodingStats": ".bi_encoder:EncodingStats",
    "FaissIndex": ".faiss_index:FaissIndex",
    "ScoreFusion": ".fusion:ScoreFusion",
    "save_first_layers": ".first_layers:save_first_layers",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from pyterrier_shallow.dense.bi_encoder import BiEncoder, EncodingStats
    from pyterrier_shallow.dense.faiss_index import FaissIndex
    from pyterrier_shallow.dense.first_layers import save_first_layers
    from pyterrier_shallow.dense.fusion import ScoreFusion

__all__ = ["BiEncoder", "EncodingStats", "FaissIndex", "ScoreFusion", "save_first_layers"]
