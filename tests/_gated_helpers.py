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


def listwise_backward(model, tokenizer, frame: pd.DataFrame) -> None:
    """Back-propagates a listwise loss (2 queries x 3 candidates, the first of each group the positive) of ``model``
    in training mode over the first 6 rows of ``frame``, so that a test can look at the gradients."""
    pair_tokens = PairTokenizer(tokenizer, query_length=32, doc_length=64, max_length=512)
    encoded = pair_tokens.encode(frame["query"].tolist()[:6], frame["text"].tolist()[:6])
    logits = model.train()(**pair_tokens.collate(encoded, np.arange(6))).logits
    torch.log_softmax(logits.view(2, 3), dim=1)[:, 0].sum().backward()
