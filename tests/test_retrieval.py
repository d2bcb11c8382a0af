"""Chunked exact cosine top-k against a brute-force reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inversion_core.retrieval import cosine_topk


def _reference(queries, keys, k):
    s = F.normalize(queries.float(), dim=-1) @ F.normalize(keys.float(), dim=-1).T
    return torch.topk(s, k, dim=1)


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64, 1000])
def test_matches_brute_force(chunk_size):
    g = torch.Generator().manual_seed(0)
    keys = F.normalize(torch.randn(257, 16, generator=g), dim=-1)
    queries = torch.randn(5, 16, generator=g)
    scores, idx = cosine_topk(queries, keys, 10, chunk_size=chunk_size)
    ref_s, ref_i = _reference(queries, keys, 10)
    torch.testing.assert_close(scores, ref_s)
    assert torch.equal(idx, ref_i)


def test_raw_keys_half_precision_and_single_query():
    g = torch.Generator().manual_seed(1)
    raw = 3.0 * torch.randn(100, 8, generator=g)
    q = torch.randn(8, generator=g)
    scores, idx = cosine_topk(q, raw, 4, chunk_size=9, keys_normalized=False)
    ref_s, ref_i = _reference(q[None], raw, 4)
    assert scores.shape == (4,) and idx.shape == (4,)
    torch.testing.assert_close(scores, ref_s[0])
    assert torch.equal(idx, ref_i[0])
    half = F.normalize(raw, dim=-1).half()  # float16 storage halves a big bank's memory
    s16, _ = cosine_topk(q, half, 4, chunk_size=16)
    torch.testing.assert_close(s16, ref_s[0], atol=2e-3, rtol=0)


def test_k_equal_to_n_returns_everything_sorted():
    keys = F.normalize(torch.randn(6, 4), dim=-1)
    scores, idx = cosine_topk(keys[:2], keys, 6, chunk_size=4)
    assert sorted(idx[0].tolist()) == list(range(6))
    assert torch.all(scores[:, :-1] >= scores[:, 1:])
    assert idx[0, 0] == 0 and idx[1, 0] == 1  # a key is its own nearest neighbour


def test_errors_name_the_values():
    keys = torch.randn(5, 4)
    with pytest.raises(ValueError, match=r"k=6"):
        cosine_topk(torch.randn(1, 4), keys, 6)
    with pytest.raises(ValueError, match=r"\(1, 3\).*\(5, 4\)"):
        cosine_topk(torch.randn(1, 3), keys, 2)
    with pytest.raises(ValueError, match="chunk_size"):
        cosine_topk(torch.randn(1, 4), keys, 2, chunk_size=0)
