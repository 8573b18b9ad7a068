"""What makes a pipeline fast on a GPU, applied when a model is loaded on CUDA and never
on the CPU (where tests and the embedded demo run as they always have):

- the UNet's forward replayed from a CUDA graph, one per input shape (GENERATION
  CUDA_GRAPHS). Eager diffusers launches a thousand-odd kernels per denoising step from
  Python, and at batch 1 the GPU waits on those launches: on an H200 an SD-1.5-sized
  call ran 1.8 times faster replayed. The graphs of one model share one memory pool:
  replays run one at a time (the model cache lends a pipeline to one job at a time)
  and each output is copied out at once.
- the convolution models in channels-last memory (CHANNELS_LAST; see
  channels_last_wanted);
- the UNet compiled by torch.compile (TORCH_COMPILE, off by default: it is what pays at
  large batches, but compiling takes about a minute per batch size);
- attention through torch's fused scaled-dot-product kernels, which diffusers uses by
  default on torch 2: nothing to switch on;
- graphs captured at load for the default size, at every batch size up to the worker's
  (WARM_UP), so the first job pays no capture; other shapes are captured at first use.

Batch size: DYNAMIC_BATCH_SIZE "auto" is decided here, once per process, from the GPU's
free memory (dynamic_batch_size).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# At most this many jobs in one pipeline call: past it a call's images/s grows little
# and its latency grows linearly.
MAX_AUTO_BATCH = 16
CPU_BATCH = 4
# GPU memory one image of a Stable-Diffusion-style call takes, per output pixel, with
# classifier-free guidance (two UNet rows an image), the VAE decode and the graphs'
# pool: measured on an H200 at 512 px, ~2.1 KiB, rounded up for headroom.
BYTES_PER_OUTPUT_PIXEL = 3 * 1024
# Share of the free memory (after the models are loaded) batches may take.
FREE_MEMORY_SHARE = 0.8


def accelerate(pipeline: Any, device: str) -> Any:
    """The pipeline with this process's GPU speed-ups applied (none on the CPU)."""
    if not device.startswith("cuda"):
        return pipeline
    options = settings.GENERATION
    import torch

    if channels_last_wanted():
        for name in ("unet", "vae"):
            model = getattr(pipeline, name, None)
            if isinstance(model, torch.nn.Module):
                model.to(memory_format=torch.channels_last)
    unet = getattr(pipeline, "unet", None)
    if isinstance(unet, torch.nn.Module) and graphable(unet):
        forward = unet.forward
        if options["TORCH_COMPILE"]:
            forward = torch.compile(forward)
        if options["CUDA_GRAPHS"]:
            forward = GraphedForward(forward)
        unet.forward = forward
    return pipeline


def channels_last_wanted() -> bool:
    """CHANNELS_LAST, or by default only for a worker that runs one job a call: on an
    H200 at 512 px it made a graphed batch-1 call 10% faster and a batch of 16 10%
    slower (torch's group norm copies channels-last tensors to the plain layout)."""
    configured = settings.GENERATION["CHANNELS_LAST"]
    if configured is not None:
        return bool(configured)
    return dynamic_batch_size() == 1


def graphable(unet: Any) -> bool:
    """Only the image UNets: a video UNet's motion modules are left as they are."""
    return type(unet).__name__ == "UNet2DConditionModel"


class GraphedForward:
    """Stands in for a UNet's forward: replays a CUDA graph of it for each shape of its
    tensor arguments, capturing one at the first call of a new shape. Calls it cannot
    replay (gradients on, arguments that are not tensors or None, a capture that failed)
    run the forward as it was."""

    def __init__(self, forward: Callable[..., Any]):
        import torch

        self.eager = forward
        self.graphs: dict[tuple[Any, ...], _Graph | None] = {}
        self.pool = torch.cuda.graph_pool_handle()
        self._lock = threading.Lock()

    def __call__(self, sample: Any, timestep: Any, encoder_hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        return_dict = kwargs.pop("return_dict", True)
        replayable = (
            not args
            and not torch.is_grad_enabled()
            and all(value is None or isinstance(value, torch.Tensor) for value in kwargs.values())
        )
        if not replayable:
            return self.eager(sample, timestep, encoder_hidden_states, *args, return_dict=return_dict, **kwargs)
        if not isinstance(timestep, torch.Tensor):
            timestep = torch.tensor(timestep, device=sample.device)
        inputs = {"sample": sample, "timestep": timestep, "encoder_hidden_states": encoder_hidden_states}
        inputs.update((name, value) for name, value in kwargs.items() if value is not None)
        key = tuple((name, tuple(value.shape), value.dtype, value.device) for name, value in sorted(inputs.items()))
        with self._lock:
            if key not in self.graphs:
                self.graphs[key] = self._capture(inputs)
            graph = self.graphs[key]
        output = self.eager(**inputs, return_dict=False)[0] if graph is None else graph.replay(inputs)
        if return_dict:
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

            return UNet2DConditionOutput(sample=output)
        return (output,)

    def _capture(self, inputs: dict[str, torch.Tensor]) -> _Graph | None:
        try:
            return _Graph.capture(self.eager, inputs, self.pool)
        except Exception:
            shapes = ", ".join(f"{name} {tuple(value.shape)}" for name, value in inputs.items())
            logger.warning("no CUDA graph of the UNet for %s: that shape runs eagerly", shapes, exc_info=True)
            return None


class _Graph:
    """One captured forward: its static inputs are copied into before each replay, its
    static output copied out after."""

    def __init__(self, graph: Any, inputs: dict[str, torch.Tensor], output: torch.Tensor):
        self.graph = graph
        self.inputs = inputs
        self.output = output

    @classmethod
    def capture(cls, forward: Callable[..., Any], inputs: dict[str, torch.Tensor], pool: Any) -> _Graph:
        import torch

        static = {name: value.detach().clone() for name, value in inputs.items()}
        # Kernels are chosen and workspaces allocated on the first calls; a capture must
        # see none of that, and it must run on a stream of its own.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(2):
                forward(**static, return_dict=False)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: another worker thread launching work meanwhile (another model)
        # does not spoil this capture.
        with torch.no_grad(), torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
            output = forward(**static, return_dict=False)[0]
        return cls(graph, static, output)

    def replay(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        for name, value in inputs.items():
            self.inputs[name].copy_(value, non_blocking=True)
        self.graph.replay()
        # The next replay of any graph in the pool writes over this buffer.
        return self.output.clone()


def warm_up(module: Any, pipeline: Any, device: str) -> None:
    """Run a pipeline module's warm-up (capturing the graphs of the default size at each
    batch size up to the worker's: a queue's tail makes batches of any size) when it
    has one and the device is a GPU."""
    if not device.startswith("cuda") or not settings.GENERATION["WARM_UP"]:
        return
    warm = getattr(module, "warm_up", None)
    if warm is None:
        return
    warm(pipeline, list(range(1, dynamic_batch_size() + 1)))


_batch_size: int | None = None
_batch_size_lock = threading.Lock()


def dynamic_batch_size() -> int:
    """How many compatible jobs this worker runs in one pipeline call: DYNAMIC_BATCH_SIZE
    when set; else on the CPU 4, and on a GPU as many images of the largest allowed size
    as FREE_MEMORY_SHARE of its free memory holds, from 1 to MAX_AUTO_BATCH. Decided
    once, the first time it is asked (a fleet worker: at boot, before its models load;
    the share left over covers their weights)."""
    configured = settings.GENERATION["DYNAMIC_BATCH_SIZE"]
    if configured:
        return int(configured)
    global _batch_size
    with _batch_size_lock:
        if _batch_size is None:
            _batch_size = _batch_size_for_device()
        return _batch_size


def _batch_size_for_device() -> int:
    from generation.models_cache import device_and_dtype

    device, _ = device_and_dtype()
    if not device.startswith("cuda"):
        return CPU_BATCH
    import torch

    free_bytes, _total = torch.cuda.mem_get_info(torch.device(device))
    limits = settings.GENERATION
    per_image = BYTES_PER_OUTPUT_PIXEL * limits["MAX_WIDTH"] * limits["MAX_HEIGHT"]
    size = max(1, min(MAX_AUTO_BATCH, int(free_bytes * FREE_MEMORY_SHARE // per_image)))
    logger.info(
        "dynamic batch size %d from %.1f GiB free on %s",
        size,
        free_bytes / 2**30,
        device,
        extra={"batch_size": size, "free_gib": round(free_bytes / 2**30, 1)},
    )
    return size


def batch_size_forget() -> None:
    """Decide the automatic batch size again at the next ask (tests)."""
    global _batch_size
    with _batch_size_lock:
        _batch_size = None
