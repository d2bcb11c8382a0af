"""Exact cosine top-k retrieval over a large embedding matrix, in chunks.

The reference bank is queried with a prompt's embedding for its k nearest
entries: neighbour pairs for local Procrustes, neighbour image embeddings for the blending
target, the nearest seed for initialisation. Retrieval is exact (no approximate index): the
similarity ``s_bn = q_b · k_n / (‖q_b‖ ‖k_n‖)`` is computed for every key, ``chunk_size`` keys at
a time, and a running top-k is merged after each chunk. Peak extra memory is therefore
O(B · chunk_size) instead of O(B · N), and the keys can stay on the CPU (or in float16) while
each chunk is moved to the queries' device, so a 10⁶ × 512 bank fits in 1–2 GB of host memory.
"""

from __future__ import annotations

import torch

__all__ = ["DEFAULT_CHUNK_SIZE", "cosine_topk"]

DEFAULT_CHUNK_SIZE = 65536  # ours: keys per chunk; B × 65536 float32 scores = 256 KiB per query


def cosine_topk(
    queries: torch.Tensor,
    keys: torch.Tensor,
    k: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    keys_normalized: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k cosine similarity of each query against all keys, computed in key chunks.

    Args:
        queries: (B, D) or (D,) query embeddings (normalised here).
        keys: (N, D) key embeddings, any float dtype, any device; each chunk is moved to the
            queries' device and dtype. ``keys_normalized=True`` (the bank's invariant, checked
            when a bank is loaded) skips re-normalising them; pass False for raw keys.
        k: neighbours per query, 1 ≤ k ≤ N.
        chunk_size: keys scored at once.

    Returns:
        (scores (B, k), indices (B, k) int64) sorted by decreasing similarity; indices into keys.
        The order among exactly tied scores is unspecified. A 1-D query gives 1-D outputs.
    """
    squeeze = queries.ndim == 1
    if squeeze:
        queries = queries.unsqueeze(0)
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(
            f"cosine_topk needs queries (B, D) and keys (N, D) with the same D; got queries "
            f"{tuple(queries.shape)} and keys {tuple(keys.shape)}. Embeddings from different CLIP "
            f"models (different D) cannot be compared."
        )
    N = keys.shape[0]
    if not 1 <= k <= N:
        raise ValueError(f"cosine_topk: k must be between 1 and the number of keys ({N}); got k={k}. "
                         f"Lower k or use a larger bank.")
    if chunk_size < 1:
        raise ValueError(f"cosine_topk: chunk_size must be >= 1; got {chunk_size}.")
    q = torch.nn.functional.normalize(queries.float(), dim=-1)
    best_s = torch.full((q.shape[0], 0), float("-inf"), device=q.device)
    best_i = torch.zeros((q.shape[0], 0), dtype=torch.long, device=q.device)
    for start in range(0, N, chunk_size):
        chunk = keys[start:start + chunk_size].to(device=q.device, dtype=q.dtype)
        if not keys_normalized:
            chunk = torch.nn.functional.normalize(chunk, dim=-1)
        s = q @ chunk.T  # (B, c)
        kk = min(k, s.shape[1])
        cs, ci = torch.topk(s, kk, dim=1)
        # Merge the chunk's top-k with the running top-k.
        all_s = torch.cat([best_s, cs], dim=1)
        all_i = torch.cat([best_i, ci + start], dim=1)
        order = torch.sort(all_s, dim=1, descending=True).indices[:, :k]
        best_s = torch.gather(all_s, 1, order)
        best_i = torch.gather(all_i, 1, order)
    if squeeze:
        return best_s[0], best_i[0]
    return best_s, best_i
