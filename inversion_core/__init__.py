"""CLIP Inversion: turn a frozen CLIP model into an image decoder (CLIP⁻¹, arXiv 2505.23161).

Plain PyTorch; never imports ComfyUI. See README.md for the tasks and the CLI
(``python -m inversion_core --help``).
"""

from .augment import AugmentConfig, Augmenter
from .clip_models import ClipBundle, list_architectures, list_pretrained, load_clip
from .fitting import fit_inr_to_image
from .inr import FinerINR, INRConfig
from .losses import ContentLoss, LossTerm
from .optimise import InversionResult, RunConfig, StepProgress, invert
from .schedules import ScheduleConfig, layer_learning_rates
from .targets import Target, combine_targets, embedding_target, image_target, text_target
from .tasks import edit, edit_target, prompt_target, reconstruct, style_transfer, text_to_image

__all__ = [
    "AugmentConfig", "Augmenter", "ClipBundle", "ContentLoss", "FinerINR", "INRConfig", "InversionResult",
    "LossTerm", "RunConfig", "ScheduleConfig", "StepProgress", "Target", "combine_targets", "edit",
    "edit_target", "embedding_target", "fit_inr_to_image", "image_target", "invert", "layer_learning_rates",
    "list_architectures", "list_pretrained", "load_clip", "prompt_target", "reconstruct", "style_transfer",
    "text_target", "text_to_image",
]
