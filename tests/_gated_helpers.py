"""Scoring pairs with a gated cross-encoder as a sequence classifier, shared by the gated model's tests."""

import numpy as np
import pandas as pd
import torch

from pyterrier_shallow._pair_tokenizer import PairTokenizer


def gated_logits(model, tokenizer, frame: pd.DataFrame, *, doc_length: int = 200) -> np.ndarray:
    """The model's logit for each (query, text) row of ``frame``, queries cut at 32 tokens."""
    pair_tokens = PairTokenizer(tokenizer, query_length=32, doc_length=doc_length, max_length=512)
    encoded = pair_tokens.encode(frame["query"].tolist(), frame["text"].tolist())
    with torch.no_grad():
        return model(**pair_tokens.collate(encoded, np.arange(len(frame)))).logits[:, 0].numpy()
