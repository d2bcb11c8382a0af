"""Orthogonal Procrustes projection of text embeddings into the image region (modality gap).

CLIP's text and image embeddings occupy different regions of the unit sphere (the "modality
gap"). CLIP^-1 (D'Orazio et al., arXiv 2505.23161) closes the gap for a prompt
by fitting an orthogonal map from text embeddings to image embeddings on paired reference data
and inverting toward the mapped text embedding::

    R* = argmin_{R : RᵀR = I} ‖R E_T − E_I‖_F          (E_T, E_I: D × k, paired columns)
    M  = E_I E_Tᵀ = U Σ Vᵀ   ⇒   R* = U Vᵀ               (Schönemann 1966, "A generalized
                                                          solution of the orthogonal Procrustes
                                                          problem", Psychometrika 31)
    target = normalize(R* e_text)

This module stores embeddings as rows (k, D), so ``E_T`` here is the transpose of the paper's
matrix and ``M = E_Iᵀ E_T`` (D, D); a row vector ``e`` maps to ``e @ Rᵀ``.

Two variants:

* **local**: per prompt, fit R on the prompt's k nearest (text, image) bank pairs;
* **global**: one R fitted on the whole bank (cheap fallback; fitted once per bank).

Ours, not the paper's (the paper does not publish these details):

* **Closest-to-identity solution when k < D.** With k pairs in D dimensions, M has rank ≤ k
  and ``U Vᵀ`` is only determined on the k-dimensional span of the data; a plain full SVD
  fills the remaining D − k dimensions with an arbitrary rotation, which would scramble the
  part of ``e_text`` that lies outside the neighbours' span. Among all minimisers we return the
  one closest to the identity (maximal trace): it acts as the identity outside
  ``span(E_T ∪ E_I)`` and, inside it, on the null space of M. On full-rank data (k ≥ D) this is
  exactly ``U Vᵀ``.
* **No centring by default** (``center=False``). With ``center=True`` R is fitted on centred
  rows and applied as ``normalize(R (e − μ_T) + μ_I)``, an affine variant; the toy-world
  benchmark decides which is better.
* **k = 16** neighbours for the local variant (:data:`DEFAULT_LOCAL_K`).
"""

from __future__ import annotations

import torch

__all__ = [
    "DEFAULT_LOCAL_K",
    "orthogonal_procrustes",
    "apply_rotation",
    "project_local",
    "fit_global_procrustes",
    "project_global",
]

DEFAULT_LOCAL_K = 16  # ours: neighbours per prompt for the local fit (paper: open)

# Relative threshold under which a singular value counts as zero (data arrive in float32,
# whose rounding is ~6e-8; 1e-6 leaves a margin while keeping genuine small directions).
_RANK_RTOL = 1e-6


def _check_pairs(E_T: torch.Tensor, E_I: torch.Tensor) -> None:
    if E_T.ndim != 2 or E_I.ndim != 2 or E_T.shape != E_I.shape:
        raise ValueError(
            f"orthogonal_procrustes needs paired embeddings E_T and E_I of the same shape (k, D); "
            f"got E_T {tuple(E_T.shape)} and E_I {tuple(E_I.shape)}. Stack the k text embeddings "
            f"and their k paired image embeddings as rows."
        )
    if E_T.shape[0] == 0:
        raise ValueError("orthogonal_procrustes needs at least one (text, image) pair; got k=0.")


def _subspace_rotation(M_s: torch.Tensor) -> torch.Tensor:
    """Closest-to-identity orthogonal maximiser R_s of tr(R_sᵀ M_s), for M_s (m, m) in a subspace basis.

    R_s = U_r V_rᵀ + U_⊥ C V_⊥ᵀ, where r is the numerical rank of M_s = U Σ Vᵀ; C (orthogonal) is
    free for the minimisation and is chosen to maximise tr(R_s): with V_⊥ᵀ U_⊥ = P S Zᵀ,
    tr(U_⊥ C V_⊥ᵀ) = tr(C P S Zᵀ) is maximal for C = Z Pᵀ (von Neumann's trace inequality).
    """
    m = M_s.shape[0]
    if m == 0:
        return M_s
    U, S, Vh = torch.linalg.svd(M_s)  # M_s = U diag(S) Vh, all (m, m)
    V = Vh.mT
    r = int((S > _RANK_RTOL * S[0].clamp_min(torch.finfo(S.dtype).tiny)).sum())
    R_s = U[:, :r] @ V[:, :r].mT
    if r < m:
        U_perp, V_perp = U[:, r:], V[:, r:]  # (m, m − r)
        P, _, Zh = torch.linalg.svd(V_perp.mT @ U_perp)
        R_s = R_s + U_perp @ (Zh.mT @ P.mT) @ V_perp.mT
    return R_s


def _procrustes_factors(E_T: torch.Tensor, E_I: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q (D, m), R_s (m, m)), float64, with R = Q R_s Qᵀ + (I − Q Qᵀ) the closest-to-identity solution.

    Q is an orthonormal basis of span(rows of E_T and E_I): the right singular vectors of the
    stacked rows with non-negligible singular values.
    """
    X = E_T.to(torch.float64)
    Y = E_I.to(torch.float64)
    _, S, Vh = torch.linalg.svd(torch.cat([X, Y], dim=0), full_matrices=False)  # (2k, D) rows
    keep = S > _RANK_RTOL * S[0].clamp_min(torch.finfo(S.dtype).tiny)
    Q = Vh[keep].mT  # (D, m)
    M_s = (Y @ Q).mT @ (X @ Q)  # (m, m) = Qᵀ (Yᵀ X) Q
    return Q, _subspace_rotation(M_s)


def _expand(Q: torch.Tensor, R_s: torch.Tensor) -> torch.Tensor:
    """R = Q R_s Qᵀ + (I − Q Qᵀ), (D, D)."""
    D, m = Q.shape
    eye_m = torch.eye(m, dtype=Q.dtype, device=Q.device)
    return Q @ (R_s - eye_m) @ Q.mT + torch.eye(D, dtype=Q.dtype, device=Q.device)


def orthogonal_procrustes(E_T: torch.Tensor, E_I: torch.Tensor) -> torch.Tensor:
    """Orthogonal R minimising ‖R E_Tᵀ − E_Iᵀ‖_F for paired rows; R = U Vᵀ with M = E_Iᵀ E_T = U Σ Vᵀ.

    Source: Schönemann (1966); used by CLIP^-1 (arXiv 2505.23161) to map text embeddings onto
    image embeddings.

    Args:
        E_T: (k, D) text embeddings (rows), paired with
        E_I: (k, D) image embeddings (rows).

    Returns:
        R: (D, D) orthogonal, same dtype/device as E_T; maps a text row ``e`` to ``e @ R.T``.
        When the pairs do not span R^D (k < D) the minimiser is not unique; the one closest
        to the identity is returned (ours, see the module docstring). Computed in float64.
    """
    _check_pairs(E_T, E_I)
    return _expand(*_procrustes_factors(E_T, E_I)).to(E_T.dtype)


def apply_rotation(e: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Map row embeddings with R and re-normalise: ``normalize(e @ Rᵀ)``.

    e: (..., D); R: (D, D) or (..., D, D) batched to match e's leading dims. Returns (..., D).
    """
    if R.ndim == 2:
        out = e @ R.to(e.dtype).mT
    else:
        out = (R.to(e.dtype) @ e.unsqueeze(-1)).squeeze(-1)
    return torch.nn.functional.normalize(out, dim=-1)


def _centre(E_T: torch.Tensor, E_I: torch.Tensor, center: bool):
    if not center:
        zero = torch.zeros(E_T.shape[-1], dtype=E_T.dtype, device=E_T.device)
        return E_T, E_I, zero, zero
    mu_T, mu_I = E_T.mean(dim=0), E_I.mean(dim=0)
    return E_T - mu_T, E_I - mu_I, mu_T, mu_I


def project_local(
    e_text: torch.Tensor,
    neighbour_text: torch.Tensor,
    neighbour_image: torch.Tensor,
    *,
    center: bool = False,
) -> torch.Tensor:
    """Local Procrustes projection: per prompt, R fitted on that prompt's k neighbour pairs.

    target_b = normalize(R_b e_b)  with R_b = orthogonal_procrustes(E_T[b], E_I[b]).

    With ``center=True`` (ours, off by default):
    target_b = normalize(R_b (e_b − μ_T,b) + μ_I,b), R_b fitted on centred neighbours.

    Args:
        e_text: (B, D) prompt text embeddings.
        neighbour_text: (B, k, D) text embeddings of each prompt's k nearest bank pairs.
        neighbour_image: (B, k, D) the paired image embeddings.

    Returns:
        (B, D) L2-normalised projected targets, dtype of e_text.
    """
    if e_text.ndim != 2 or neighbour_text.ndim != 3 or neighbour_text.shape != neighbour_image.shape \
            or neighbour_text.shape[0] != e_text.shape[0] or neighbour_text.shape[2] != e_text.shape[1]:
        raise ValueError(
            f"project_local needs e_text (B, D) and neighbours (B, k, D) of matching B and D; got "
            f"e_text {tuple(e_text.shape)}, neighbour_text {tuple(neighbour_text.shape)}, "
            f"neighbour_image {tuple(neighbour_image.shape)}."
        )
    out = []
    for b in range(e_text.shape[0]):  # B is the number of prompts: small, and ranks differ per b
        E_T, E_I, mu_T, mu_I = _centre(neighbour_text[b].double(), neighbour_image[b].double(), center)
        _check_pairs(E_T, E_I)
        Q, R_s = _procrustes_factors(E_T, E_I)
        x = e_text[b].double() - mu_T
        # R x = x + Q (R_s − I) Qᵀ x: no D × D matrix is formed
        c = Q.mT @ x
        out.append(x + Q @ (R_s @ c - c) + mu_I)
    return torch.nn.functional.normalize(torch.stack(out), dim=-1).to(e_text.dtype)


def fit_global_procrustes(
    E_T: torch.Tensor,
    E_I: torch.Tensor,
    *,
    chunk_size: int = 65536,
) -> torch.Tensor:
    """Global Procrustes: one R fitted on every (text, image) pair of the bank.

    Same solution as :func:`orthogonal_procrustes`, but the D×D statistics M = E_Iᵀ E_T and
    G = E_Tᵀ E_T + E_Iᵀ E_I are accumulated over row chunks (each chunk's product in the input
    precision, at least float32, summed in float64), so a bank of 10⁶ rows is never copied whole. The subspace basis is the
    eigenvectors of G with non-negligible eigenvalues (the whole space for real banks).

    Args:
        E_T, E_I: (N, D) paired rows; may live on CPU while chunks are processed there.
    Returns:
        R: (D, D) orthogonal, dtype of E_T.
    """
    _check_pairs(E_T, E_I)
    if chunk_size < 1:
        raise ValueError(f"fit_global_procrustes: chunk_size must be >= 1, got {chunk_size}.")
    D = E_T.shape[1]
    M = torch.zeros(D, D, dtype=torch.float64, device=E_T.device)
    G = torch.zeros(D, D, dtype=torch.float64, device=E_T.device)
    work = torch.float64 if E_T.dtype == torch.float64 else torch.float32  # per-chunk products
    for s in range(0, E_T.shape[0], chunk_size):
        X = E_T[s:s + chunk_size].to(work)
        Y = E_I[s:s + chunk_size].to(work)
        M += (Y.mT @ X).double()
        G += (X.mT @ X + Y.mT @ Y).double()
    evals, evecs = torch.linalg.eigh(G)  # ascending
    keep = evals > _RANK_RTOL ** 2 * evals[-1].clamp_min(torch.finfo(evals.dtype).tiny)
    Q = evecs[:, keep]  # (D, m); eigenvalues are squared singular values, hence rtol²
    return _expand(Q, _subspace_rotation(Q.mT @ M @ Q)).to(E_T.dtype)


def project_global(e_text: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Global projection: normalize(R e_text) for each row of e_text (B, D) → (B, D)."""
    if R.ndim != 2 or R.shape[0] != R.shape[1] or e_text.shape[-1] != R.shape[0]:
        raise ValueError(
            f"project_global: R must be (D, D) with D = e_text's last dim; got R {tuple(R.shape)} "
            f"and e_text {tuple(e_text.shape)}."
        )
    return apply_rotation(e_text, R)
