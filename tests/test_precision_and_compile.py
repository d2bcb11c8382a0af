import dataclasses

import pytest
import torch

from inversion_core import RunConfig, text_target, text_to_image
from inversion_core.optimise import autocast_dtype, invert


def test_auto_precision_is_fp32_on_cpu_and_bf16_names_resolve():
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert autocast_dtype("fp32", torch.device("cuda")) is None
    for half in (torch.float16, torch.bfloat16):  # auto follows weights stored in a half type
        assert autocast_dtype("auto", torch.device("cuda"), half) == half
        assert autocast_dtype("auto", torch.device("cpu"), half) is None


def test_bf16_autocast_path_runs_and_stays_close_to_fp32(tiny_clip, tiny_run):
    run = dataclasses.replace(tiny_run, steps=10)
    fp32 = text_to_image(tiny_clip, "a red circle", run)
    bf16 = text_to_image(tiny_clip, "a red circle", dataclasses.replace(run, precision="bf16"))
    assert bf16.images.dtype == torch.float32  # the INR and its output stay fp32
    assert bf16.history[-1]["target"] < bf16.history[0]["target"]
    assert (bf16.images - fp32.images).abs().mean() < 0.05


def test_compile_failure_falls_back_to_eager_with_a_warning(tiny_clip, tiny_run, monkeypatch):
    def broken_compile(fn, mode=None):
        def compiled(*args, **kwargs):
            raise RuntimeError("no C++ compiler")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    run = dataclasses.replace(tiny_run, steps=3)
    eager = text_to_image(tiny_clip, "a dog", run)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        fallback = text_to_image(tiny_clip, "a dog", dataclasses.replace(run, compile="default"))
    torch.testing.assert_close(fallback.images, eager.images)


def test_out_of_memory_becomes_an_actionable_error(tiny_clip, tiny_run):
    class Exhausted:
        name = "oom"

        def __call__(self, render, embeddings, clips):
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    with pytest.raises(MemoryError, match=r"Lower the batch size, the views, or the render size"):
        invert(tiny_clip, text_target("x"), tiny_run, loss_terms=[Exhausted()])


def test_unknown_precision_and_compile_modes_are_rejected():
    with pytest.raises(ValueError, match=r"precision must be one of.*compile must be one of"):
        RunConfig(precision="int8", compile="turbo")
