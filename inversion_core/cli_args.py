"""argparse pieces shared by the commands that load a CLIP or build an INR (generation and
``bank build``), so their flags, defaults and help read the same everywhere."""

from __future__ import annotations

import argparse

from .clip_models import PRECISIONS
from .inr import OUTPUTS, INRConfig


def add_model_arguments(parser: argparse.ArgumentParser, title: str = "CLIP model") -> None:
    group = parser.add_argument_group(title)
    group.add_argument("--model", help="open_clip architecture (e.g. ViT-B-32), a model-config .json, or hf-hub:org/repo; "
                       "may be omitted when --weights has a same-name .json (or open_clip_config.json) beside it")
    group.add_argument("--weights", help="a .safetensors/.bin/.pt file or an open_clip pretrained tag (online only); "
                       "omit for random weights (which need --model)")
    group.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)")
    group.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS),
                       help="CLIP weight storage precision (default fp32; see --autocast for mixed precision)")


def add_inr_arguments(group: argparse._ArgumentGroup, note: str = "") -> None:
    """The FINER INR's flags; ``note`` is appended to each help text (e.g. 'must match generation')."""
    inr = INRConfig()
    suffix = f"; {note}" if note else ""
    group.add_argument("--inr-width", type=int, default=inr.width, help=f"INR hidden width (default {inr.width}{suffix})")
    group.add_argument("--inr-layers", type=int, default=inr.hidden_layers,
                       help=f"INR hidden layers (default {inr.hidden_layers}{suffix})")
    group.add_argument("--omega", type=float, default=inr.omega, help=f"sine frequency ω (default {inr.omega:g}{suffix})")
    group.add_argument("--bias-scale", type=float, default=inr.first_bias_scale,
                       help=f"FINER first-layer bias scale k (default {inr.first_bias_scale:g}{suffix})")
    group.add_argument("--output-activation", default=inr.output, choices=OUTPUTS,
                       help=f"squashing of the INR output to [0, 1] (default {inr.output}{suffix})")


def inr_config_from_args(args: argparse.Namespace) -> INRConfig:
    return INRConfig(hidden_layers=args.inr_layers, width=args.inr_width, omega=args.omega,
                     first_bias_scale=args.bias_scale, output=args.output_activation)
