"""Write example_workflows/*.json from the node schemas: ``python tests/make_example_workflows.py``.

Widget values are laid out from the nodes' own schemas (defaults unless set below), so the files
stay loadable after a widget is added; tests/test_workflows.py checks the committed files either
way. Layout coordinates are only cosmetic.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
OUT = TESTS.parent / "example_workflows"
CLIP_MODEL = "open_clip/ViT-B-32/laion2b_s34b_b79k"
SD_CHECKPOINT = "v1-5-pruned-emaonly-fp16.safetensors"
SD_URL = ("https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/"
          "v1-5-pruned-emaonly-fp16.safetensors?download=true")

CLIP_NOTE = f"""## CLIP model (node "Load CLIP for Inversion")

**Online:** keep `{CLIP_MODEL}`. The first run downloads it (about 600 MB) into the Hugging Face cache.

**Offline:** from https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K download
`open_clip_config.json` and `open_clip_model.safetensors` (or `open_clip_pytorch_model.bin`) into

```
ComfyUI/models/clip_inversion/ViT-B-32-laion2b_s34b_b79k/
```

press **R** to refresh, and pick `ViT-B-32-laion2b_s34b_b79k/open_clip_model.safetensors`.
Any open_clip model works the same way (weights + its open_clip config in one folder).

Runs take about a minute for 400 steps at 224 px on a recent GPU, much longer on a CPU:
lower `steps` (40 already shows the idea) to try things out.
"""


def _builder():
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import node_harness
    from workflow_tools import WorkflowBuilder, core_node_info, node_info

    info = node_info(node_harness.node_classes().values())
    info.update(core_node_info())
    return WorkflowBuilder(info)


def text_to_image() -> dict:
    b = _builder()
    b.note(CLIP_NOTE + "\nThe optimiser renders at 224 px; **Render INR** redraws the result at 512 px.", (-420, 0))
    clip = b.add("CLIPInversionLoadCLIP", (20, 0), (340, 130), widgets={"model": CLIP_MODEL})
    target = b.add("CLIPInversionTextTarget", (20, 180), (340, 180),
                   widgets={"text": "a photograph of a red fox sitting in the snow, golden hour"})
    negative = b.add("CLIPInversionTextTarget", (20, 400), (340, 160), title="Negative Text Target",
                     widgets={"text": "blurry, text, watermark", "weight": -0.3})
    mix = b.add("CLIPInversionCombineTargets", (400, 300), (300, 220))
    opt = b.add("CLIPInversionOptimizer", (740, 0), (340, 520), controls={"seed": "randomize"})
    save = b.add("SaveImage", (1120, 0), (400, 430), widgets={"filename_prefix": "clip_inversion/t2i"})
    render = b.add("CLIPInversionRenderINR", (1120, 470), (300, 110))
    preview = b.add("PreviewImage", (1460, 470), (400, 430))
    b.link(target, 0, mix, "target_a")
    b.link(negative, 0, mix, "target_b")
    b.link(clip, 0, opt, "clip")
    b.link(mix, 0, opt, "target")
    b.link(opt, 0, save, "images")
    b.link(opt, 1, render, "inr")
    b.link(render, 0, preview, "images")
    return b.workflow()


def image_reconstruction() -> dict:
    b = _builder()
    b.note(CLIP_NOTE + "\nLoad any picture in **Load Image**: the result shows what CLIP keeps of it "
           "(its concepts and layout, not its pixels).", (-420, 0))
    clip = b.add("CLIPInversionLoadCLIP", (20, 0), (340, 130), widgets={"model": CLIP_MODEL})
    image = b.add("LoadImage", (20, 180), (340, 360), widgets={"image": "example.png"})
    target = b.add("CLIPInversionImageTarget", (400, 180), (300, 80))
    opt = b.add("CLIPInversionOptimizer", (740, 0), (340, 520), controls={"seed": "fixed"})
    save = b.add("SaveImage", (1120, 0), (400, 430), widgets={"filename_prefix": "clip_inversion/reconstruction"})
    b.link(image, 0, target, "image")
    b.link(clip, 0, opt, "clip")
    b.link(target, 0, opt, "target")
    b.link(opt, 0, save, "images")
    return b.workflow()


def style_transfer() -> dict:
    b = _builder()
    b.note(CLIP_NOTE + "\n**Style Transfer** first fits an INR to the content image (fit_steps), then "
           "optimises it toward the style. Raise `content_weight` to keep more of the original layout.", (-420, 0))
    clip = b.add("CLIPInversionLoadCLIP", (20, 0), (340, 130), widgets={"model": CLIP_MODEL})
    image = b.add("LoadImage", (20, 180), (340, 360), widgets={"image": "example.png"})
    style = b.add("CLIPInversionTextTarget", (400, 180), (320, 170), title="Style",
                  widgets={"text": "an oil painting with thick impasto brush strokes, vivid colours"})
    task = b.add("CLIPInversionStyleTransfer", (760, 0), (340, 520), controls={"seed": "fixed"})
    save = b.add("SaveImage", (1140, 0), (400, 430), widgets={"filename_prefix": "clip_inversion/style"})
    b.link(clip, 0, task, "clip")
    b.link(image, 0, task, "content")
    b.link(style, 0, task, "style")
    b.link(task, 0, save, "images")
    return b.workflow()


def text_guided_edit() -> dict:
    b = _builder()
    b.note(CLIP_NOTE + "\n**Text-Guided Edit** fits an INR to the image, then takes a few steps toward the "
           "image's embedding moved along (edit − source). Raise `strength` for a stronger edit.", (-420, 0))
    clip = b.add("CLIPInversionLoadCLIP", (20, 0), (340, 130), widgets={"model": CLIP_MODEL})
    image = b.add("LoadImage", (20, 180), (340, 360), widgets={"image": "example.png"})
    task = b.add("CLIPInversionEdit", (400, 0), (360, 600), controls={"seed": "fixed"},
                 widgets={"edit_prompt": "a painting of a snowy mountain landscape at night",
                          "source_prompt": "a painting of a mountain landscape"})
    save = b.add("SaveImage", (800, 0), (400, 430), widgets={"filename_prefix": "clip_inversion/edit"})
    b.link(clip, 0, task, "clip")
    b.link(image, 0, task, "image")
    b.link(task, 0, save, "images")
    return b.workflow()


def refine_with_stable_diffusion() -> dict:
    b = _builder()
    b.note(CLIP_NOTE + f"""
## Stable Diffusion checkpoint (core nodes)

`{SD_CHECKPOINT}` from
https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive goes in

```
ComfyUI/models/checkpoints/
```

CLIP⁻¹ gives the composition; an img2img pass (denoise 0.55) adds natural detail.
Lower `denoise` to keep more of the CLIP⁻¹ image, raise it for more Stable Diffusion.
ComfyUI unloads the CLIP model when the diffusion model needs the memory.""", (-440, 0), (440, 560))
    clip = b.add("CLIPInversionLoadCLIP", (20, 0), (340, 130), widgets={"model": CLIP_MODEL})
    target = b.add("CLIPInversionTextTarget", (20, 180), (340, 180),
                   widgets={"text": "a cozy wooden cabin by a lake in autumn, morning fog"})
    opt = b.add("CLIPInversionOptimizer", (400, 0), (340, 520), controls={"seed": "randomize"})
    render = b.add("CLIPInversionRenderINR", (780, 0), (300, 110))
    preview = b.add("PreviewImage", (780, 160), (300, 330), title="CLIP⁻¹ result")
    ckpt = b.add("CheckpointLoaderSimple", (20, 640), (340, 100), widgets={"ckpt_name": SD_CHECKPOINT},
                 properties={"models": [{"name": SD_CHECKPOINT, "url": SD_URL, "directory": "checkpoints"}]})
    positive = b.add("CLIPTextEncode", (400, 640), (340, 170), title="Positive prompt",
                     widgets={"text": "a cozy wooden cabin by a lake in autumn, morning fog, detailed photograph"})
    negative = b.add("CLIPTextEncode", (400, 850), (340, 130), title="Negative prompt",
                     widgets={"text": "blurry, low quality, text, watermark"})
    encode = b.add("VAEEncode", (780, 640), (220, 50))
    sampler = b.add("KSampler", (1040, 640), (320, 480), controls={"seed": "randomize"},
                    widgets={"steps": 25, "cfg": 7.0, "sampler_name": "dpmpp_2m", "scheduler": "karras",
                             "denoise": 0.55})
    decode = b.add("VAEDecode", (1400, 640), (220, 50))
    save = b.add("SaveImage", (1400, 730), (420, 430), widgets={"filename_prefix": "clip_inversion/refined"})
    b.link(clip, 0, opt, "clip")
    b.link(target, 0, opt, "target")
    b.link(opt, 1, render, "inr")
    b.link(opt, 0, preview, "images")
    b.link(render, 0, encode, "pixels")
    b.link(ckpt, 2, encode, "vae")
    b.link(ckpt, 1, positive, "clip")
    b.link(ckpt, 1, negative, "clip")
    b.link(ckpt, 0, sampler, "model")
    b.link(positive, 0, sampler, "positive")
    b.link(negative, 0, sampler, "negative")
    b.link(encode, 0, sampler, "latent_image")
    b.link(sampler, 0, decode, "samples")
    b.link(ckpt, 2, decode, "vae")
    b.link(decode, 0, save, "images")
    b.group("CLIP⁻¹ (CLIP only)", (0, -40, 1120, 580))
    b.group("Stable Diffusion img2img (core nodes)", (0, 590, 1860, 600), color="#8a5a2b")
    return b.workflow()


TOY_CLIP = "toyclip.safetensors"  # ships in benchmarks/toyworld/model/ (with toyclip.json)
TOY_BANK = "toyworld_reference.safetensors"  # a bank of benchmarks/toyworld/reference_set for that CLIP

BANK_NOTE = f"""## Files: the toy world's CLIP and a bank of its reference set

This example runs on a CPU: it uses the repository's toy world (a small CLIP trained on
coloured shapes, shipped in `benchmarks/toyworld/model/`) and a reference bank of the 384
captioned pictures in `benchmarks/toyworld/reference_set/`. Build the bank once, from the
repository root:

```
python -m inversion_core bank build --source benchmarks/toyworld/reference_set \\
    --weights benchmarks/toyworld/model/toyclip.safetensors \\
    --out /path/to/ComfyUI/models/clip_inversion_banks/{TOY_BANK}
```

Then copy `benchmarks/toyworld/model/toyclip.safetensors` and `toyclip.json` into

```
ComfyUI/models/clip_inversion/
```

keeping both names (a bank records its CLIP by config name and weights), and press **R**.

**Your own CLIP and pictures:** a folder of images with same-name `.txt` captions becomes a bank
with the **Build Reference Bank** node (or the command above with `--model`/`--weights` of that
CLIP, e.g. `ViT-B-32-laion2b_s34b_b79k/open_clip_model.safetensors` from
https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K). A bank only works with the CLIP
that built it.

## The three stabilisers of CLIP⁻¹

* **Procrustes Projection** moves the prompt's embedding to where images of it lie.
* **Robust Init** starts from the bank's seed INR with the nearest caption; the optimiser
  takes its INR settings from it.
* **Blending Loss** pulls the image toward the bank pictures nearest the projected prompt.

Leave any of them out to compare (connect the Text Target to the optimiser directly).
"""


def text_to_image_with_bank() -> dict:
    b = _builder()
    b.note(BANK_NOTE, (-500, 0), (480, 760))
    clip = b.add("CLIPInversionLoadCLIP", (20, 0), (340, 130), widgets={"model": TOY_CLIP})
    bank = b.add("CLIPInversionLoadReferenceBank", (20, 170), (340, 80), widgets={"bank": TOY_BANK})
    target = b.add("CLIPInversionTextTarget", (20, 290), (340, 160),
                   widgets={"text": "a large red circle at the left on a dark background"})
    projection = b.add("CLIPInversionProcrustes", (400, 0), (320, 170))
    init = b.add("CLIPInversionRobustInit", (400, 210), (320, 150))
    blend = b.add("CLIPInversionBlendingLoss", (400, 400), (320, 190))
    opt = b.add("CLIPInversionOptimizer", (760, 0), (340, 600), controls={"seed": "randomize"},
                widgets={"width": 64, "height": 64, "steps": 200, "views": 8})
    save = b.add("SaveImage", (1140, 0), (300, 330), widgets={"filename_prefix": "clip_inversion/t2i_bank"})
    render = b.add("CLIPInversionRenderINR", (1140, 370), (300, 110), widgets={"width": 256, "height": 256})
    preview = b.add("PreviewImage", (1480, 370), (300, 330))
    for node in (projection, init, blend):
        b.link(clip, 0, node, "clip")
        b.link(bank, 0, node, "bank")
    b.link(target, 0, projection, "target")
    b.link(target, 0, init, "target")
    b.link(projection, 0, blend, "target")
    b.link(clip, 0, opt, "clip")
    b.link(projection, 0, opt, "target")
    b.link(init, 0, opt, "init_inr")
    b.link(blend, 0, opt, "loss_terms")
    b.link(opt, 0, save, "images")
    b.link(opt, 1, render, "inr")
    b.link(render, 0, preview, "images")
    return b.workflow()


WORKFLOWS = {
    "text_to_image": text_to_image,
    "image_reconstruction": image_reconstruction,
    "style_transfer": style_transfer,
    "text_guided_edit": text_guided_edit,
    "refine_with_stable_diffusion": refine_with_stable_diffusion,
    "text_to_image_with_bank": text_to_image_with_bank,
}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, make in WORKFLOWS.items():
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(make(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(OUT.parent)}")


if __name__ == "__main__":
    main()
