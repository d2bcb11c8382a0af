"""Turn a reference bank into the three text-to-image stabilisers of CLIP^-1, each on or off.

CLIP^-1 (D'Orazio et al., arXiv 2505.23161) uses a bank of real (image, caption)
pairs three ways. Given the prompts' targets and a bank embedded by one CLIP of the run, this
module returns what :func:`~inversion_core.optimise.invert` needs:

* **targets**: Procrustes-projected text directions, ``normalize(R e_text)``, for the bank's
  CLIP (``procrustes="local"``: R per prompt from its k nearest pairs; ``"global"``: one R for
  the bank; ``"off"``);
* **loss_terms**: a :class:`~inversion_core.blending.BlendingLoss`, ``β (1 − cos(e*, e_img*))``;
* **init**: the seed INR whose caption is nearest each prompt.

Defaults in :class:`BankOptions` (all three on when a bank is given) are ours: the paper's full
method uses all three, and publishes none of k, τ, β.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ._config import check_config
from .bank import ReferenceBank
from .blending import DEFAULT_BLEND_BETA, DEFAULT_BLEND_K, DEFAULT_BLEND_TAU, BlendingLoss, blend_target
from .clip_models import ClipBundle
from .inr import FinerINR, INRConfig
from .procrustes import DEFAULT_LOCAL_K, project_global, project_local
from .targets import Target, TargetTerm

__all__ = ["PROCRUSTES_MODES", "BankOptions", "BankGuidance", "bank_clip", "prepare_text_to_image", "add_bank_arguments",
           "bank_options_from_args"]

PROCRUSTES_MODES = ("local", "global", "off")


@dataclass(frozen=True)
class BankOptions:
    """Which bank stabilisers text-to-image uses, and their settings (defaults ours)."""

    procrustes: str = "local"  # local | global | off: modality-gap projection of the text target
    procrustes_k: int = DEFAULT_LOCAL_K  # neighbour pairs per prompt for the local fit (≥ 2)
    procrustes_center: bool = False  # fit on centred neighbours and map affinely (ours, off)
    blend_beta: float = DEFAULT_BLEND_BETA  # weight β of the blending term (0 = off)
    blend_k: int = DEFAULT_BLEND_K  # bank images mixed into the blending target
    blend_tau: float = DEFAULT_BLEND_TAU  # softmax temperature on their cosine similarities
    use_seed: bool = True  # start from the nearest seed INR instead of a random one

    def __post_init__(self) -> None:
        problems = []
        if self.procrustes not in PROCRUSTES_MODES:
            problems.append(f"procrustes must be one of {PROCRUSTES_MODES}, got {self.procrustes!r}")
        if not self.procrustes_k >= 2:
            problems.append(f"procrustes_k must be >= 2 neighbour pairs, got {self.procrustes_k}")
        if not self.blend_beta >= 0:
            problems.append(f"blend_beta must be >= 0 (0 = off), got {self.blend_beta}")
        if not self.blend_k >= 1:
            problems.append(f"blend_k must be >= 1, got {self.blend_k}")
        if not self.blend_tau > 0:
            problems.append(f"blend_tau must be > 0, got {self.blend_tau}")
        check_config("BankOptions", problems)


@dataclass
class BankGuidance:
    """What the bank contributes to one text-to-image run of B images."""

    targets: list[Target]  # B targets (projected for the bank's CLIP; unchanged without projection)
    loss_terms: list[BlendingLoss] = field(default_factory=list)  # [] when blending is off
    init: FinerINR | None = None  # (B) seeds, or None for random initialisation
    info: list[dict[str, Any]] = field(default_factory=list)  # per image: retrieved captions, seed, ...


def bank_clip(clips: ClipBundle | Sequence[ClipBundle], bank: ReferenceBank) -> ClipBundle:
    """The CLIP of the run that embedded ``bank``; a ValueError naming both sides otherwise."""
    clips = [clips] if isinstance(clips, ClipBundle) else list(clips)
    for clip in clips:
        if clip.identity == bank.clip_identity:
            bank.check_clip(clip)
            return clip
    if len(clips) == 1:
        bank.check_clip(clips[0])  # raises with both identities
    raise ValueError(
        f"reference bank {bank.path or '<in-memory>'} was built with CLIP {bank.clip_identity!r}, which is not "
        f"among the CLIPs of this run ({[c.identity for c in clips]}); add that CLIP to the ensemble or build "
        f"a bank with one of them (`python -m inversion_core bank build`)."
    )


def _projected_target(original: Target, vector: torch.Tensor, identity: str, label: str) -> Target:
    """A one-term target: ``vector`` for the bank's CLIP, the original direction for any other CLIP."""
    vector = vector.detach().float().cpu().clone()

    def embed(clip: ClipBundle) -> torch.Tensor:
        return vector.to(clip.device) if clip.identity == identity else original.direction(clip)

    return Target((TargetTerm(label, 1.0, embed),))


def _duplicate_ranks(vectors: torch.Tensor) -> list[int]:
    """For each row, how many identical rows precede it (the i-th sample of a repeated prompt)."""
    seen: dict[tuple, int] = {}
    ranks = []
    for row in vectors.cpu().tolist():
        key = tuple(row)
        ranks.append(seen.get(key, 0))
        seen[key] = ranks[-1] + 1
    return ranks


@torch.no_grad()
def prepare_text_to_image(
    bank: ReferenceBank,
    clips: ClipBundle | Sequence[ClipBundle],
    targets: Sequence[Target],
    inr_config: INRConfig,
    options: BankOptions = BankOptions(),
) -> BankGuidance:
    """Apply the enabled stabilisers to B text targets (one per image).

    * the query for prompt b is ``targets[b].direction(clip)`` with the bank's CLIP (a negative
      prompt is included in that direction);
    * Procrustes: local uses the ``procrustes_k`` pairs with the nearest captions;
    * blending: the query is the projected direction when projection is on (ours), compared to
      the bank's image embeddings;
    * seeds: the seed with the nearest caption; B samples of the same prompt start from its B
      nearest seeds (ours), so repeated prompts do not start identically.
    Raises ValueError when the bank's CLIP is not in ``clips``, when k exceeds the bank, or when
    seeds are on and the bank has none or they were fitted with another INR configuration.
    """
    clip = bank_clip(clips, bank)
    targets = list(targets)
    if not targets:
        raise ValueError("prepare_text_to_image needs at least one target")
    if options.use_seed:
        bank.check_inr_config(inr_config)
    for name, k in (("procrustes_k", options.procrustes_k if options.procrustes == "local" else 0),
                    ("blend_k", options.blend_k if options.blend_beta > 0 else 0)):
        if k > len(bank):
            raise ValueError(f"{name}={k} exceeds the {len(bank)} pairs of bank {bank.path or '<in-memory>'}; "
                             f"lower {name} to at most {len(bank)}.")
    query = torch.stack([t.direction(clip) for t in targets]).float()  # (B, D)
    info: list[dict[str, Any]] = [{} for _ in targets]

    if options.procrustes == "local":
        _, idx = bank.nearest_pairs(query, options.procrustes_k)  # (B, k)
        E_T, E_I = bank.pair_embeddings(idx.cpu())  # (B, k, D) each
        projected = project_local(query.cpu(), E_T, E_I, center=options.procrustes_center).to(query.device)
        for b, row in enumerate(idx.tolist()):
            info[b]["procrustes_neighbours"] = [bank.captions[i] for i in row]
    elif options.procrustes == "global":
        projected = project_global(query, bank.global_procrustes().to(query.device))
    else:
        projected = query
    if options.procrustes != "off":
        targets = [_projected_target(t, projected[b], clip.identity, f"procrustes-{options.procrustes}({t})")
                   for b, t in enumerate(targets)]
        for b in range(len(targets)):
            info[b]["projected_cos_to_text"] = float(torch.dot(projected[b], query[b]))

    loss_terms = []
    if options.blend_beta > 0:
        blended, idx, weights = blend_target(projected, bank.image_embeddings, options.blend_k, options.blend_tau)
        loss_terms.append(BlendingLoss(blended, clip.identity, options.blend_beta))
        for b in range(len(targets)):
            info[b]["blend_neighbours"] = [bank.captions[i] for i in idx[b].tolist()]
            info[b]["blend_weights"] = [round(w, 4) for w in weights[b].tolist()]

    init = None
    if options.use_seed:
        init, chosen = bank.nearest_seeds(query, inr_config, rank=_duplicate_ranks(query), device=clip.device)
        for b, i in enumerate(chosen.tolist()):
            info[b]["seed"] = i
            info[b]["seed_caption"] = bank.captions[i]
    return BankGuidance(targets=targets, loss_terms=loss_terms, init=init, info=info)


# --- command line (used by the package CLI's text-to-image command) ------------------------------


def add_bank_arguments(parser) -> None:
    """``--bank`` and the stabiliser options for a text-to-image command (argparse parser)."""
    defaults = BankOptions()
    group = parser.add_argument_group("reference bank (Procrustes, blending, seeds; all need --bank)")
    group.add_argument("--bank", help="reference bank .safetensors built with `bank build` for the same CLIP")
    group.add_argument("--procrustes", default=defaults.procrustes, choices=PROCRUSTES_MODES,
                       help=f"modality-gap projection of the prompt (default {defaults.procrustes})")
    group.add_argument("--procrustes-k", type=int, default=defaults.procrustes_k,
                       help=f"neighbour pairs for the local projection (default {defaults.procrustes_k})")
    group.add_argument("--blend-beta", type=float, default=defaults.blend_beta,
                       help=f"weight of the blending term, 0 = off (default {defaults.blend_beta:g})")
    group.add_argument("--blend-k", type=int, default=defaults.blend_k,
                       help=f"bank images in the blending target (default {defaults.blend_k})")
    group.add_argument("--blend-tau", type=float, default=defaults.blend_tau,
                       help=f"softmax temperature of the blending weights (default {defaults.blend_tau:g})")
    group.add_argument("--no-seed", action="store_true", help="random INR start instead of the nearest seed")


def bank_options_from_args(args) -> BankOptions:
    """BankOptions from the arguments added by :func:`add_bank_arguments`; bank options given
    without ``--bank`` are refused rather than silently ignored."""
    options = BankOptions(procrustes=args.procrustes, procrustes_k=args.procrustes_k, blend_beta=args.blend_beta,
                          blend_k=args.blend_k, blend_tau=args.blend_tau, use_seed=not args.no_seed)
    if args.bank is None and options != BankOptions():
        changed = [f.name for f in dataclasses.fields(options)
                   if getattr(options, f.name) != getattr(BankOptions(), f.name)]
        raise ValueError(f"bank options ({', '.join(changed)}) only apply with a reference bank: add --bank FILE "
                         "(built with `bank build`), or drop them")
    return options
