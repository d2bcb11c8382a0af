"""Orthogonal Procrustes: exact recovery, optimality, and the modality-gap effect."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inversion_core.procrustes import (
    apply_rotation,
    fit_global_procrustes,
    orthogonal_procrustes,
    project_global,
    project_local,
)
from inversion_core.retrieval import cosine_topk


def _random_orthogonal(D: int, g: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    Q, R = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=dtype))
    return Q * torch.sign(torch.diagonal(R))  # Haar-distributed (det may be ±1)


def _objective(R, X, Y):
    return torch.linalg.norm(X @ R.mT - Y)


def test_recovers_known_rotation_to_numerical_precision():
    g = torch.Generator().manual_seed(0)
    D, n = 16, 64
    R_true = _random_orthogonal(D, g)
    X = torch.randn(n, D, generator=g, dtype=torch.float64)
    R = orthogonal_procrustes(X, X @ R_true.mT)
    torch.testing.assert_close(R, R_true, atol=1e-10, rtol=0)
    torch.testing.assert_close(R @ R.mT, torch.eye(D, dtype=torch.float64), atol=1e-12, rtol=0)


def test_recovers_rotation_in_float32():
    g = torch.Generator().manual_seed(1)
    D = 32
    R_true = _random_orthogonal(D, g)
    X = F.normalize(torch.randn(200, D, generator=g, dtype=torch.float64), dim=-1)
    R = orthogonal_procrustes(X.float(), (X @ R_true.mT).float())
    assert R.dtype == torch.float32
    torch.testing.assert_close(R.double(), R_true, atol=1e-5, rtol=0)


def test_fewer_pairs_than_dimensions_maps_pairs_exactly_and_leaves_the_rest_alone():
    g = torch.Generator().manual_seed(2)
    D, k = 24, 5
    R_true = _random_orthogonal(D, g)
    X = torch.randn(k, D, generator=g, dtype=torch.float64)
    Y = X @ R_true.mT
    R = orthogonal_procrustes(X, Y)
    torch.testing.assert_close(R @ R.mT, torch.eye(D, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(X @ R.mT, Y, atol=1e-10, rtol=0)
    # Closest-to-identity choice: directions orthogonal to span(X ∪ Y) are not moved.
    basis = torch.linalg.svd(torch.cat([X, Y]), full_matrices=True).Vh  # rows: span first, then complement
    complement = basis[2 * k:]
    torch.testing.assert_close(complement @ R.mT, complement, atol=1e-10, rtol=0)


def test_minimises_objective_on_noisy_data():
    g = torch.Generator().manual_seed(3)
    D, n = 8, 40
    R_true = _random_orthogonal(D, g)
    X = torch.randn(n, D, generator=g, dtype=torch.float64)
    Y = X @ R_true.mT + 0.3 * torch.randn(n, D, generator=g, dtype=torch.float64)
    R = orthogonal_procrustes(X, Y)
    best = _objective(R, X, Y)
    assert best <= _objective(R_true, X, Y) + 1e-12
    for _ in range(20):
        assert best <= _objective(_random_orthogonal(D, g), X, Y)
    # a small rotation away from R increases the objective (first-order optimality)
    A = torch.randn(D, D, generator=g, dtype=torch.float64)
    step = torch.linalg.matrix_exp(1e-3 * (A - A.mT))
    assert best < _objective(step @ R, X, Y)


def test_global_chunked_equals_direct_solution():
    g = torch.Generator().manual_seed(4)
    D, n = 12, 300
    X = F.normalize(torch.randn(n, D, generator=g, dtype=torch.float64), dim=-1)
    Y = F.normalize(X @ _random_orthogonal(D, g).mT + 0.2 * torch.randn(n, D, generator=g, dtype=torch.float64), dim=-1)
    direct = orthogonal_procrustes(X, Y)
    chunked = fit_global_procrustes(X, Y, chunk_size=37)
    torch.testing.assert_close(chunked, direct, atol=1e-9, rtol=0)


def test_rank_deficient_global_matches_local_solution():
    g = torch.Generator().manual_seed(5)
    D, k = 20, 6
    X = torch.randn(k, D, generator=g, dtype=torch.float64)
    Y = torch.randn(k, D, generator=g, dtype=torch.float64)
    torch.testing.assert_close(fit_global_procrustes(X, Y, chunk_size=4), orthogonal_procrustes(X, Y), atol=1e-8, rtol=0)


def _two_modality_data(n: int, D: int, g: torch.Generator):
    """Paired unit vectors with a modality gap: shared concepts, each modality offset along its own
    direction and seen through its own mild distortion (a toy version of CLIP's two cones)."""
    clusters = F.normalize(torch.randn(12, D, generator=g), dim=-1)
    concept = F.normalize(clusters[torch.randint(0, 12, (n,), generator=g)] + 0.4 * torch.randn(n, D, generator=g), dim=-1)
    gap_text, gap_image = 1.2 * F.normalize(torch.randn(2, D, generator=g), dim=-1)
    A = torch.randn(D, D, generator=g)
    twist = torch.linalg.matrix_exp(0.5 * (A - A.mT) / D**0.5)  # a random rotation by a moderate angle
    text = F.normalize(concept @ twist.mT + gap_text + 0.1 * torch.randn(n, D, generator=g), dim=-1)
    image = F.normalize(concept + gap_image + 0.1 * torch.randn(n, D, generator=g), dim=-1)
    return text, image


@pytest.mark.parametrize("center", [False, True])
def test_local_projection_closes_the_modality_gap(center):
    g = torch.Generator().manual_seed(6)
    D = 32
    text, image = _two_modality_data(1200, D, g)
    bank_t, bank_i, query_t, query_i = text[:1000], image[:1000], text[1000:], image[1000:]
    k = 12  # 2k = 24 < D: exercises the subspace solution
    _, idx = cosine_topk(query_t, bank_t, k)
    projected = project_local(query_t, bank_t[idx], bank_i[idx], center=center)
    torch.testing.assert_close(projected.norm(dim=-1), torch.ones(len(query_t)), atol=1e-5, rtol=0)
    before = (query_t * query_i).sum(-1)
    after = (projected * query_i).sum(-1)
    assert after.mean() > before.mean() + 0.1, (before.mean(), after.mean())
    assert (after > before).float().mean() > 0.9


def test_global_projection_closes_the_modality_gap():
    g = torch.Generator().manual_seed(7)
    text, image = _two_modality_data(1200, 32, g)
    R = fit_global_procrustes(text[:1000], image[:1000])
    projected = project_global(text[1000:], R)
    before = (text[1000:] * image[1000:]).sum(-1).mean()
    after = (projected * image[1000:]).sum(-1).mean()
    assert after > before + 0.1


def test_apply_rotation_batched_equals_single():
    g = torch.Generator().manual_seed(8)
    R = torch.stack([_random_orthogonal(6, g, torch.float32) for _ in range(3)])
    e = torch.randn(3, 6, generator=g)
    batched = apply_rotation(e, R)
    single = torch.stack([apply_rotation(e[i:i + 1], R[i])[0] for i in range(3)])
    torch.testing.assert_close(batched, single)


def test_bad_shapes_are_rejected_with_the_shapes_named():
    with pytest.raises(ValueError, match=r"\(5, 4\).*\(5, 3\)"):
        orthogonal_procrustes(torch.randn(5, 4), torch.randn(5, 3))
    with pytest.raises(ValueError, match="k=0"):
        orthogonal_procrustes(torch.randn(0, 4), torch.randn(0, 4))
    with pytest.raises(ValueError, match="project_local"):
        project_local(torch.randn(2, 4), torch.randn(3, 5, 4), torch.randn(3, 5, 4))
    with pytest.raises(ValueError, match="project_global"):
        project_global(torch.randn(2, 4), torch.randn(5, 5))


def test_local_projection_equals_explicit_rotation():
    """The factored application R e = e + Q (R_s − I) Qᵀ e matches normalize(R e) with R built in full."""
    g = torch.Generator().manual_seed(9)
    e = F.normalize(torch.randn(3, 20, generator=g, dtype=torch.float64), dim=-1)
    E_T = F.normalize(torch.randn(3, 5, 20, generator=g, dtype=torch.float64), dim=-1)
    E_I = F.normalize(torch.randn(3, 5, 20, generator=g, dtype=torch.float64), dim=-1)
    explicit = torch.stack([apply_rotation(e[b:b + 1], orthogonal_procrustes(E_T[b], E_I[b]))[0] for b in range(3)])
    torch.testing.assert_close(project_local(e, E_T, E_I), explicit, atol=1e-12, rtol=0)
