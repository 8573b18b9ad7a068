"""Tiny random diffusers models built from configs, for demos and tests: one folder per
model, each written to a temporary sibling folder and renamed into place."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# transformers reads its verbosity once, at import time.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import diffusers.utils.logging
import torch
import transformers.utils.logging
from diffusers import (
    AnimateDiffPipeline,
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    EulerDiscreteScheduler,
    MotionAdapter,
    StableDiffusionLatentUpscalePipeline,
    StableDiffusionPipeline,
    StableDiffusionUpscalePipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

diffusers.utils.logging.disable_progress_bar()
transformers.utils.logging.disable_progress_bar()

TEXT_WIDTH = 32
MAX_PROMPT_TOKENS = 77
# The x4 upscaler conditions on the noise it adds to the low-resolution image, one class
# embedding per noise level.
UPSCALER_MAX_NOISE_LEVEL = 350
# The tiny motion adapter attends over at most this many frames.
MOTION_MAX_FRAMES = 32


def build_demo_models(target_dir: Path) -> dict[str, Path]:
    """Build the demo models that are missing; returns each folder by name. The names
    are the defaults of settings.GENERATION["MODELS"] (image-to-image shares tiny-sd with
    text-to-image, as real Stable Diffusion checkpoints allow)."""
    target_dir.mkdir(parents=True, exist_ok=True)
    builders: dict[str, Callable[[Path], None]] = {
        "tiny-sd": _save_tiny_stable_diffusion,
        "tiny-sd-upscale-x2": _save_tiny_latent_upscaler,
        "tiny-sd-upscale-x4": _save_tiny_x4_upscaler,
        "tiny-animatediff": _save_tiny_animatediff,
    }
    for folder, save in builders.items():
        if not (target_dir / folder / "model_index.json").exists():
            _save_atomically(target_dir / folder, save)
    return {folder: target_dir / folder for folder in builders}


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


def _save_tiny_x4_upscaler(output_dir: Path) -> None:
    torch.manual_seed(0)
    pipeline = StableDiffusionUpscalePipeline(
        # Three blocks: a 4x latent scale, which is the upscale factor.
        vae=_build_vae(block_out_channels=(4, 4, 8), scaling_factor=0.08333),
        text_encoder=_build_text_encoder(),
        tokenizer=_build_tokenizer(),
        # 4 latent channels plus the 3 RGB channels of the low-resolution image.
        unet=_build_unet(in_channels=7, num_class_embeds=UPSCALER_MAX_NOISE_LEVEL + 1),
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=UPSCALER_MAX_NOISE_LEVEL,
    )
    pipeline.save_pretrained(output_dir)


def _save_tiny_latent_upscaler(output_dir: Path) -> None:
    torch.manual_seed(0)
    pipeline = StableDiffusionLatentUpscalePipeline(
        vae=_build_vae(),
        text_encoder=_build_text_encoder(),
        tokenizer=_build_tokenizer(),
        # In: noisy latents plus the upsampled image latents; out: 4 latents and a
        # variance channel. The time condition is the 128-wide noise-level embedding
        # followed by the pooled text embedding.
        unet=_build_unet(in_channels=8, out_channels=5, time_cond_proj_dim=128 + TEXT_WIDTH),
        scheduler=EulerDiscreteScheduler(prediction_type="sample"),
    )
    pipeline.save_pretrained(output_dir)


def _save_tiny_animatediff(output_dir: Path) -> None:
    torch.manual_seed(0)
    motion_adapter = MotionAdapter(
        block_out_channels=(4, 8),
        motion_layers_per_block=1,
        motion_norm_num_groups=2,
        motion_num_attention_heads=2,
        motion_max_seq_length=MOTION_MAX_FRAMES,
    )
    pipeline = AnimateDiffPipeline(
        vae=_build_vae(),
        text_encoder=_build_text_encoder(),
        tokenizer=_build_tokenizer(),
        unet=_build_unet(),
        motion_adapter=motion_adapter,
        scheduler=_build_scheduler(),
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


def _build_unet(*, in_channels: int = 4, out_channels: int = 4, **options: Any) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=32,
        in_channels=in_channels,
        out_channels=out_channels,
        block_out_channels=(4, 8),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        norm_num_groups=2,
        attention_head_dim=2,
        **options,
    )


def _build_vae(*, block_out_channels: tuple[int, ...] = (4, 4, 8, 8), **options: Any) -> AutoencoderKL:
    # Four blocks give the same 8x latent scale factor as real Stable Diffusion (each
    # block after the first halves the size).
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=block_out_channels,
        down_block_types=("DownEncoderBlock2D",) * len(block_out_channels),
        up_block_types=("UpDecoderBlock2D",) * len(block_out_channels),
        latent_channels=4,
        norm_num_groups=2,
        **options,
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
