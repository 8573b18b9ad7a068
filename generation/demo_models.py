"""Tiny random Stable Diffusion weights built from configs, for demos and tests."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

# transformers reads its verbosity once, at import time.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import diffusers.utils.logging
import torch
import transformers.utils.logging
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

diffusers.utils.logging.disable_progress_bar()
transformers.utils.logging.disable_progress_bar()

TEXT_WIDTH = 32
MAX_PROMPT_TOKENS = 77


def build_demo_models(target_dir: Path) -> dict[str, Path]:
    target_dir.mkdir(parents=True, exist_ok=True)
    tiny_sd_dir = target_dir / "tiny-sd"
    if not (tiny_sd_dir / "model_index.json").exists():
        _save_atomically(tiny_sd_dir, _save_tiny_stable_diffusion)
    return {"image_creation": tiny_sd_dir}


def _save_atomically(final_dir: Path, save: Callable[[Path], None]) -> None:
    # A sibling folder on the same filesystem makes the final rename atomic, so a crash
    # never leaves a half-written model where the idempotency check would accept it.
    staging_dir = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}-", dir=final_dir.parent))
    try:
        save(staging_dir)
        if final_dir.exists():
            shutil.rmtree(final_dir)
        staging_dir.rename(final_dir)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)


def _save_tiny_stable_diffusion(output_dir: Path) -> None:
    torch.manual_seed(0)
    pipeline = StableDiffusionPipeline(
        vae=_build_vae(),
        text_encoder=_build_text_encoder(),
        tokenizer=_build_tokenizer(),
        unet=_build_unet(),
        scheduler=_build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(output_dir)


def _build_tokenizer() -> CLIPTokenizer:
    byte_characters = list(bytes_to_unicode().values())
    tokens = ["<|startoftext|>", "<|endoftext|>"]
    tokens += byte_characters
    tokens += [f"{character}</w>" for character in byte_characters]
    vocabulary = {token: index for index, token in enumerate(tokens)}
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        directory = Path(tokenizer_dir)
        (directory / "vocab.json").write_text(json.dumps(vocabulary), encoding="utf-8")
        (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        # Without model_max_length the tokenizer does not cut prompts at the text encoder's limit.
        (directory / "tokenizer_config.json").write_text(
            json.dumps({"model_max_length": MAX_PROMPT_TOKENS}), encoding="utf-8"
        )
        return CLIPTokenizer.from_pretrained(directory, local_files_only=True)


def _build_text_encoder() -> CLIPTextModel:
    config = CLIPTextConfig(
        hidden_size=TEXT_WIDTH,
        intermediate_size=64,
        num_attention_heads=4,
        num_hidden_layers=1,
        vocab_size=514,
        max_position_embeddings=MAX_PROMPT_TOKENS,
        projection_dim=32,
    )
    return CLIPTextModel(config)


def _build_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(4, 8),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        norm_num_groups=2,
        attention_head_dim=2,
    )


def _build_vae() -> AutoencoderKL:
    # Four blocks give the same 8x latent scale factor as real Stable Diffusion.
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(4, 4, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=2,
    )


def _build_scheduler() -> DDIMScheduler:
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
