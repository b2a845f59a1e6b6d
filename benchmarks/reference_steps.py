"""
Pretraining throughput, side by side in one process (the measured steps of `benchmarks/pretraining_throughput.py`):

- (a) Hugging Face's own pretraining model of the same backbone: `RobertaForMaskedLM` (text),
  `Wav2Vec2ForPreTraining` (audio), `BeitForMaskedImageModeling` (vision);
- (b) the data2vec 1.0 step of [`Data2VecForPretraining`] (top-K targets from a persistent forward hook, fused EMA);
- (c) the data2vec 2.0 step (`config.mode="data2vec2"`);
- (d) a straightforward data2vec 1.0 step ([`straightforward_loss`]: the teacher with `output_hidden_states=True`,
  a Python loop EMA [`python_loop_ema_`]), also the reference the fast path is tested against.

A step is forward + backward + AdamW step (+ the EMA step for data2vec), on synthetic inputs of the same shape.
FLOPs are counted with `torch.utils.flop_counter.FlopCounterMode` over one eager forward + backward (matmuls,
convolutions, attention; the teacher forward included; optimizer and EMA elementwise work excluded).
"""

import contextlib
import math
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from accelerate.utils import compile_regions

from d2v_hf import (
    Data2VecForPretraining,
    Data2VecPretrainingConfig,
    audio_frame_lengths,
    compute_audio_span_mask,
    compute_block_mask_1d,
    compute_inverse_block_mask,
    compute_random_mask,
    compute_text_span_mask,
    compute_vision_block_mask,
)
from d2v_hf.backbones import check_inputs
from d2v_hf.configuration_data2vec_pretraining import base_backbone_config, tiny_backbone_config
from d2v_hf.modeling_data2vec2 import (
    encode_visible_frames,
    encode_visible_patches,
    encode_visible_text,
    gather_visible,
)
from d2v_hf.modeling_data2vec_pretraining import instance_norm_over_time

from measurement import PeakMemory, count_flops, counting_backend, synchronize, timed


TINY_TEXT_VOCAB = 4000  # the demo's tokenizer; the HF default of 30,522 would make tiny MLM all LM head
DEFAULT_SHAPES = {  # (batch size, length): tokens / raw audio samples / image side in pixels
    ("text", "tiny"): (8, 128),
    ("text", "base"): (32, 512),
    ("audio", "tiny"): (4, 32_000),
    ("audio", "base"): (8, 250_000),
    ("vision", "tiny"): (16, 28),
    ("vision", "base"): (32, 224),
}
VARIANTS = ("hf", "data2vec", "data2vec2", "straightforward")
# the levers of the data2vec 1.0 step that change neither the batch nor compilation (each a BenchmarkSetup field)
ALL_LEVERS = {"teacher_dtype": "bf16", "fused_adamw": True, "fused_head_loss": True}


@dataclass
class BenchmarkSetup:
    """What every variant shares: modality, backbone size, batch, length, device and autocast dtype."""

    modality: str = "text"
    size: str = "tiny"
    batch_size: int | None = None
    length: int | None = None
    device: str = "cpu"
    dtype: str = "fp32"
    clone_batch: int = 8
    steps: int = 3
    warmup: int = 1
    compile: bool = False
    compile_backend: str = "inductor"  # "eager" runs the same torch.compile path in seconds (the suite's --smoke)
    gradient_checkpointing: bool = False
    teacher_dtype: str = "fp32"  # "bf16": the data2vec variants keep a bf16 teacher copy (config.teacher_dtype)
    fused_adamw: bool = False  # torch.optim.AdamW(fused=True), as TrainingArguments(optim="adamw_torch_fused")
    fused_head_loss: bool = False  # data2vec 1.0: head and loss at every position, weighted (config.fused_head_loss)
    # torch.compile's mode: "reduce-overhead" replays CUDA graphs (TrainingArguments(torch_compile_mode=...))
    compile_mode: str = "default"
    # each repeated layer compiled once (accelerate's compile_regions; --torch_compile_regions); implies compile
    compile_regions: bool = False

    def __post_init__(self):
        if self.modality not in ("text", "audio", "vision"):
            raise ValueError(f"modality={self.modality!r}; expected text, audio or vision.")
        if self.size not in ("tiny", "base"):
            raise ValueError(f"size={self.size!r}; expected tiny or base.")
        if self.dtype not in ("fp32", "bf16"):
            raise ValueError(f"dtype={self.dtype!r}; expected fp32 or bf16.")
        if self.compile_mode not in ("default", "reduce-overhead", "max-autotune-no-cudagraphs"):
            raise ValueError(
                f"compile_mode={self.compile_mode!r}; expected default, reduce-overhead or max-autotune-no-cudagraphs."
            )
        self.compile = self.compile or self.compile_regions
        if self.teacher_dtype not in ("fp32", "bf16"):
            raise ValueError(f"teacher_dtype={self.teacher_dtype!r}; expected fp32 or bf16.")
        default_batch, default_length = DEFAULT_SHAPES[(self.modality, self.size)]
        self.batch_size = self.batch_size or default_batch
        self.length = self.length or default_length
        for name in ("batch_size", "length", "clone_batch", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1.")


@dataclass
class BenchmarkResult:
    variant: str
    name: str
    step_time_s: float
    tokens_per_step: int
    flops_per_step: float
    peak_memory_bytes: int
    loss: float
    graphs: int = 0  # graphs torch.compile made of the step (1: no graph break); 0: not compiled, or left eager
    first_step_s: float = float("nan")  # the first (warm-up) step: compilation included

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.step_time_s


# --- the straightforward data2vec 1.0 step (reference for the fast path) ----------------------------------------


@torch.no_grad()
def straightforward_targets(model: Data2VecForPretraining, **unmasked_inputs) -> torch.Tensor:
    """
    Targets `(batch, positions, hidden)` the plain way: the teacher with `output_hidden_states=True`, the top K block
    outputs normalised in a Python loop. Only `target_feature="block"` (hidden states are block outputs).
    """
    config = model.config
    if config.target_feature != "block":
        raise ValueError(f"target_feature={config.target_feature!r}: output_hidden_states only gives 'block'.")
    main_input, padding = check_inputs(config, unmasked_inputs)
    kwargs = {} if config.modality == "vision" else {"attention_mask": unmasked_inputs.get("attention_mask")}
    model.teacher.eval()
    hidden_states = model.teacher(main_input, output_hidden_states=True, **kwargs).hidden_states[1:]
    layers = [h[:, 1:] if config.modality == "vision" else h for h in hidden_states]
    normalised = []
    for layer in layers[-config.average_top_k_layers :]:
        layer = layer.float()
        if config.instance_norm_target_layer:
            layer = instance_norm_over_time(layer, padding)
        if config.layer_norm_target_layer:
            layer = F.layer_norm(layer, layer.shape[-1:])
        normalised.append(layer)
    target = sum(normalised) / len(normalised)
    if config.layer_norm_targets:
        target = F.layer_norm(target, target.shape[-1:])
    if config.instance_norm_targets:
        target = instance_norm_over_time(target, padding)
    return target


def straightforward_loss(model: Data2VecForPretraining, mask, attention_mask=None, **inputs):
    """The data2vec 1.0 loss written out: masked student, plain teacher targets, head, loss per masked position."""
    config, modality = model.config, model.config.modality
    main_input = inputs[model.main_input_name]
    if modality == "text":
        student_ids = main_input.masked_fill(mask, config.mask_token_id)
        hidden = model.student(student_ids, attention_mask=attention_mask).last_hidden_state
    elif modality == "audio":
        hidden = model.student(main_input, attention_mask=attention_mask, mask_time_indices=mask).last_hidden_state
    else:
        hidden = model.student(main_input, bool_masked_pos=mask).last_hidden_state[:, 1:]
    targets = straightforward_targets(model, **{model.main_input_name: main_input, "attention_mask": attention_mask})
    predictions, targets = model.head(hidden[mask]).float(), targets[mask]
    diff = predictions - targets
    if config.loss_beta == 0:
        elementwise = diff**2
    else:
        beta = config.loss_beta
        elementwise = torch.where(diff.abs() < beta, 0.5 * diff**2 / beta, diff.abs() - 0.5 * beta)
    per_position = elementwise.sum(-1) if config.loss_channel_reduction == "sum" else elementwise.mean(-1)
    scale = config.loss_scale if config.loss_scale is not None else 1 / math.sqrt(config.hidden_size)
    return per_position.sum() * scale / mask.sum(), predictions, targets


@torch.no_grad()
def python_loop_ema_(model: Data2VecForPretraining, decay: float | None = None) -> float:
    """One EMA step, one parameter at a time (fp32 teacher): shared prefixes and buffers copied, the rest averaged."""
    decay = model.ema_decay_at() if decay is None else decay
    shared = model.config.teacher_shared_params
    student_params = dict(model.student.named_parameters())
    for name, teacher_param in model.teacher.named_parameters():
        student_param = student_params[name].detach()
        if any(name.startswith(prefix) for prefix in shared):
            teacher_param.copy_(student_param)
        else:
            teacher_param.mul_(decay).add_(student_param, alpha=1 - decay)
    student_buffers = dict(model.student.named_buffers())
    for name, buffer in model.teacher.named_buffers():
        buffer.copy_(student_buffers[name])
    model.ema_num_updates += 1
    return decay


# --- models and inputs of each variant ---------------------------------------------------------------------------


def backbone_config(setup: BenchmarkSetup):
    if setup.size == "base":
        config = base_backbone_config(setup.modality)
    else:
        extra = {"vocab_size": TINY_TEXT_VOCAB} if setup.modality == "text" else {}
        config = tiny_backbone_config(setup.modality, **extra)
    if setup.modality == "text":
        config.max_position_embeddings = max(config.max_position_embeddings, setup.length + 2)
    if setup.modality == "vision":
        config.image_size = setup.length
    return config


def data2vec_config(setup: BenchmarkSetup, variant: str) -> Data2VecPretrainingConfig:
    backbone = backbone_config(setup)
    overrides = {}
    if setup.size == "tiny":
        overrides["average_top_k_layers"] = 3  # as run_pretraining.py's tiny model
    if setup.modality == "text":
        overrides["mask_token_id"] = backbone.vocab_size - 1
    if setup.modality == "vision":
        num_patches = (setup.length // backbone.patch_size) ** 2
        overrides["num_mask_patches"] = max(1, round(num_patches * 120 / 196))
        overrides["min_mask_patches_per_block"] = max(1, min(16, round(num_patches * 16 / 196)))
    if variant == "data2vec2":
        overrides.update(mode="data2vec2", clone_batch=setup.clone_batch)
    if setup.teacher_dtype == "bf16" and variant != "straightforward":
        overrides["teacher_dtype"] = "bfloat16"
    if setup.fused_head_loss and variant == "data2vec":
        overrides["fused_head_loss"] = True
    if variant == "straightforward":
        overrides["target_feature"] = "block"  # output_hidden_states exposes block outputs; same compute
    return Data2VecPretrainingConfig.from_preset(setup.modality, backbone, **overrides)


def hf_baseline(setup: BenchmarkSetup):
    """Hugging Face's pretraining model of the same backbone size."""
    from transformers import (
        BeitConfig,
        BeitForMaskedImageModeling,
        RobertaConfig,
        RobertaForMaskedLM,
        Wav2Vec2Config,
        Wav2Vec2ForPreTraining,
    )

    backbone = backbone_config(setup)
    dims = {k: getattr(backbone, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads")}
    dims["intermediate_size"] = backbone.intermediate_size
    if setup.modality == "text":
        return RobertaForMaskedLM(
            RobertaConfig(
                vocab_size=backbone.vocab_size,
                max_position_embeddings=backbone.max_position_embeddings,
                type_vocab_size=1,
                layer_norm_eps=backbone.layer_norm_eps,
                pad_token_id=backbone.pad_token_id,
                **dims,
            )
        )
    if setup.modality == "audio":
        codevector_dim = 256 if setup.size == "base" else backbone.hidden_size
        return Wav2Vec2ForPreTraining(
            Wav2Vec2Config(
                conv_dim=backbone.conv_dim,
                conv_stride=backbone.conv_stride,
                conv_kernel=backbone.conv_kernel,
                codevector_dim=codevector_dim,
                proj_codevector_dim=codevector_dim,
                mask_time_prob=0.65,
                **dims,
            )
        )
    return BeitForMaskedImageModeling(
        BeitConfig(
            image_size=backbone.image_size,
            patch_size=backbone.patch_size,
            use_mask_token=True,
            use_shared_relative_position_bias=True,
            layer_scale_init_value=backbone.layer_scale_init_value,
            **dims,
        )
    )


def make_batch(setup: BenchmarkSetup, variant: str, config=None, seed: int = 0) -> tuple[dict, int]:
    """Synthetic inputs of the variant (on CPU) and the number of tokens / frames / patches they hold."""
    generator = torch.Generator().manual_seed(seed)
    batch, length = setup.batch_size, setup.length
    backbone = backbone_config(setup)
    if setup.modality == "text":
        ids = torch.randint(5, backbone.vocab_size - 1, (batch, length), generator=generator)
        attention_mask = torch.ones_like(ids)
        if variant == "hf":
            mask = torch.rand(ids.shape, generator=generator) < 0.15
            labels = ids.masked_fill(~mask, -100)
            return {"input_ids": ids.masked_fill(mask, backbone.vocab_size - 1), "labels": labels}, ids.numel()
        if variant == "data2vec2":
            mask = compute_random_mask(attention_mask, config.mask_prob, config.clone_batch, generator)
        else:
            mask = compute_text_span_mask(attention_mask, config.mask_prob, config.mask_length, generator=generator)
        return {"input_ids": ids, "attention_mask": attention_mask, "mask": mask}, ids.numel()
    if setup.modality == "audio":
        values = torch.randn(batch, length, generator=generator)
        frames = int(audio_frame_lengths(length, backbone.conv_kernel, backbone.conv_stride))
        if variant == "hf":
            from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

            mask = _compute_mask_indices((batch, frames), mask_prob=0.65, mask_length=10, min_masks=2)
            negatives = _sample_negative_indices((batch, frames), 100, mask)
            inputs = {"input_values": values, "mask_time_indices": torch.from_numpy(mask)}
            return {**inputs, "sampled_negative_indices": torch.from_numpy(negatives)}, batch * frames
        if variant == "data2vec2":
            args = (frames, config.mask_prob, config.mask_length, config.mask_prob_adjust, config.clone_batch)
            mask = torch.cat([compute_block_mask_1d(*args, generator=generator) for _ in range(batch)])
            return {"input_values": values, "mask": mask}, batch * frames
        frame_mask = torch.ones(batch, frames, dtype=torch.bool)
        mask = compute_audio_span_mask(frame_mask, config.mask_prob, config.mask_length, generator=generator)
        return {"input_values": values, "mask": mask}, batch * frames
    pixels = torch.randn(batch, 3, length, length, generator=generator)
    grid = (length // backbone.patch_size,) * 2
    if variant == "data2vec2":
        args = (grid[0], config.mask_prob, config.mask_length, config.mask_prob_adjust, config.clone_batch)
        mask = torch.cat([compute_inverse_block_mask(*args, generator=generator) for _ in range(batch)])
        return {"pixel_values": pixels, "mask": mask}, batch * grid[0] * grid[1]
    num_mask = config.num_mask_patches if config is not None else max(1, round(grid[0] * grid[1] * 120 / 196))
    min_block = config.min_mask_patches_per_block if config is not None else max(1, min(16, num_mask // 8))
    mask = compute_vision_block_mask(batch, grid, num_mask, min_num_patches=min_block, generator=generator)
    if variant == "hf":
        labels = torch.randint(0, 8192, (int(mask.sum()),), generator=generator)
        return {"pixel_values": pixels, "bool_masked_pos": mask, "labels": labels}, mask.numel()
    return {"pixel_values": pixels, "mask": mask}, mask.numel()


# --- one step of each variant -----------------------------------------------------------------------------------


def _autocast(setup: BenchmarkSetup):
    if setup.dtype == "bf16":
        return torch.autocast(torch.device(setup.device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _loss(variant, model, inputs):
    if variant == "straightforward":
        return straightforward_loss(model, **inputs)[0]
    return model(**inputs).loss


def train_step(variant: str, model, inputs: dict, optimizer, setup: BenchmarkSetup) -> torch.Tensor:
    """Forward, backward, optimizer step, and the teacher's EMA step for the data2vec variants."""
    cuda_graphs = setup.compile and setup.compile_mode == "reduce-overhead" and variant != "straightforward"
    if cuda_graphs:  # a new iteration: the graphs' output memory of the last one may be reused
        torch.compiler.cudagraph_mark_step_begin()
    with _autocast(setup):
        loss = _loss(variant, model, inputs)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if variant == "straightforward":
        python_loop_ema_(model)
    elif variant != "hf":
        model.ema_step()
    return loss.detach().clone() if cuda_graphs else loss.detach()


def _forward_backward(variant, model, inputs, setup):
    with _autocast(setup):
        _loss(variant, model, inputs).backward()


def _teacher_forward(model, inputs, setup):
    with _autocast(setup):
        model.compute_targets(**{k: v for k, v in inputs.items() if k != "mask"})


def variant_name(setup: BenchmarkSetup, variant: str) -> str:
    hf = {"text": "RobertaForMaskedLM", "audio": "Wav2Vec2ForPreTraining", "vision": "BeitForMaskedImageModeling"}
    return {
        "hf": f"(a) HF {hf[setup.modality]}",
        "data2vec": "(b) data2vec 1.0, d2v_hf",
        "data2vec2": f"(c) data2vec 2.0, d2v_hf, M={setup.clone_batch}",
        "straightforward": "(d) data2vec 1.0, straightforward",
    }[variant]


@dataclass
class _Prepared:
    variant: str
    model: torch.nn.Module
    runner: torch.nn.Module
    inputs: dict
    optimizer: torch.optim.Optimizer
    tokens: int
    flops: int
    memory: int
    loss: float = float("nan")
    graphs: int = 0
    first_step_s: float = float("nan")


def prepare_variant(setup: BenchmarkSetup, variant: str, clone_batch: int | None = None) -> _Prepared:
    """
    Builds the variant's model and optimizer on `setup.device`, counts one step's FLOPs and runs
    `max(1, setup.warmup)` warm-up steps; the peak memory of all this (weights, optimizer state, one step's
    activations) is the variant's memory.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}; expected one of {VARIANTS}.")
    if clone_batch is not None:
        setup = BenchmarkSetup(**{**setup.__dict__, "clone_batch": clone_batch})
    device = torch.device(setup.device)
    with PeakMemory(device) as memory:
        torch.manual_seed(0)
        config = None if variant == "hf" else data2vec_config(setup, variant)
        model = (hf_baseline(setup) if variant == "hf" else Data2VecForPretraining(config)).to(device).train()
        inputs, tokens = make_batch(setup, variant, config)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        # None: torch's default (foreach); the straightforward step (d) keeps it, as it keeps every other default
        fused = True if setup.fused_adamw and variant != "straightforward" else None
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=fused)
        flops = count_flops(_forward_backward, variant, model, inputs, setup)
        optimizer.zero_grad(set_to_none=True)
        if setup.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        compiled = setup.compile and variant != "straightforward"
        runner, graphs = model, []
        if compiled:
            backend = counting_backend(setup.compile_backend, setup.compile_mode, graphs)
            runner = (compile_regions if setup.compile_regions else torch.compile)(model, backend=backend)
        first_step_s = None
        for _ in range(max(1, setup.warmup)):
            start = time.perf_counter()
            train_step(variant, runner, inputs, optimizer, setup)
            synchronize(device)
            first_step_s = first_step_s or time.perf_counter() - start  # the first: compilation included
    prepared = (variant, model, runner, inputs, optimizer, tokens, flops, memory.used)
    return _Prepared(*prepared, graphs=len(graphs), first_step_s=first_step_s)


def flops_table(setup: BenchmarkSetup, variants=VARIANTS) -> str:
    """FLOPs of one forward + backward of each variant, without timing (e.g. the base model on a CPU). Markdown."""
    lines = ["| step | GFLOP/step | GFLOP per sample or masked copy |", "|---|---:|---:|"]
    for variant in variants:
        torch.manual_seed(0)
        config = None if variant == "hf" else data2vec_config(setup, variant)
        model = (hf_baseline(setup) if variant == "hf" else Data2VecForPretraining(config)).train()
        inputs, _ = make_batch(setup, variant, config)
        flops = count_flops(_forward_backward, variant, model, inputs, setup)
        copies = setup.batch_size * (setup.clone_batch if variant == "data2vec2" else 1)
        lines.append(f"| {variant_name(setup, variant)} | {flops / 1e9:,.1f} | {flops / copies / 1e9:,.1f} |")
        del model
    return "\n".join(lines)


def run_benchmark(setup: BenchmarkSetup, variants=VARIANTS) -> list[BenchmarkResult]:
    """
    Prepares every variant ([`prepare_variant`], one after the other, so that each one's memory is its own), then
    times `setup.steps` rounds of one step of each variant in turn: on a shared machine all variants see the same
    load. Reports the median step time of each.
    """
    device = torch.device(setup.device)
    prepared = [prepare_variant(setup, variant) for variant in variants]
    times = {p.variant: [] for p in prepared}
    for _ in range(setup.steps):
        for p in prepared:
            synchronize(device)
            start = time.perf_counter()
            loss = train_step(p.variant, p.runner, p.inputs, p.optimizer, setup)
            synchronize(device)
            times[p.variant].append(time.perf_counter() - start)
            p.loss = loss
    return [
        BenchmarkResult(
            p.variant,
            variant_name(setup, p.variant),
            statistics.median(times[p.variant]),
            p.tokens,
            p.flops,
            p.memory,
            float(p.loss),
            p.graphs,
            p.first_step_s,
        )
        for p in prepared
    ]


def format_table(results: list[BenchmarkResult], peak_flops: float) -> str:
    """Markdown: tokens/s, step time, peak memory, FLOPs per step, MFU, and the ratios to the first row (a)."""
    base = results[0]
    lines = [
        "| step | tokens/s | step time (ms) | peak memory (MiB) | GFLOP/step | MFU | tokens/s vs (a) | memory vs (a) "
        "| first step (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        mfu = r.flops_per_step / r.step_time_s / peak_flops
        memory_ratio = r.peak_memory_bytes / base.peak_memory_bytes if base.peak_memory_bytes > 0 else float("nan")
        lines.append(
            f"| {r.name} | {r.tokens_per_s:,.0f} | {r.step_time_s * 1e3:,.1f} | {r.peak_memory_bytes / 2**20:,.0f} "
            f"| {r.flops_per_step / 1e9:,.2f} | {mfu:.1%} | {r.tokens_per_s / base.tokens_per_s:.2f}x "
            f"| {memory_ratio:.2f}x | {r.first_step_s:,.1f} |"
        )
    return "\n".join(lines)


def teacher_amortisation(setup: BenchmarkSetup, clone_batches=(1, 2, 4, 8)) -> str:
    """
    data2vec 2.0: for each M, the step time, the teacher forward time (one pass per sample, timed alone) and its
    cost per masked copy, and the teacher's share of the step's FLOPs. The M values are timed in turn, round by
    round. Markdown table.
    """
    device = torch.device(setup.device)
    prepared = [prepare_variant(setup, "data2vec2", clone_batch) for clone_batch in clone_batches]
    teacher_flops = [count_flops(_teacher_forward, p.model, p.inputs, setup) for p in prepared]
    step_times, teacher_times = [[] for _ in prepared], [[] for _ in prepared]
    for _ in range(setup.steps):
        for i, p in enumerate(prepared):
            step_times[i].append(timed(device, train_step, "data2vec2", p.model, p.inputs, p.optimizer, setup))
            teacher_times[i].append(timed(device, _teacher_forward, p.model, p.inputs, setup))
    lines = [
        "| M | step time (ms) | teacher forward (ms) | teacher per copy (ms) | teacher share of step FLOPs |",
        "|---:|---:|---:|---:|---:|",
    ]
    for i, clone_batch in enumerate(clone_batches):
        step, teacher = statistics.median(step_times[i]), statistics.median(teacher_times[i])
        lines.append(
            f"| {clone_batch} | {step * 1e3:,.1f} | {teacher * 1e3:,.1f} | {teacher / clone_batch * 1e3:,.2f} "
            f"| {teacher_flops[i] / prepared[i].flops:.1%} |"
        )
    return "\n".join(lines)


def _data2vec2_pieces(model, inputs: dict):
    """The pieces of one data2vec 2.0 forward as separate calls: `{name: (function, arguments)}`."""
    config, student = model.config, model.student
    clone_batch, mask = config.clone_batch, inputs["mask"]
    main = inputs[model.main_input_name]
    encode = {"text": encode_visible_text, "audio": encode_visible_frames, "vision": encode_visible_patches}
    encode = encode[config.modality]
    if config.modality == "text":
        real = inputs["attention_mask"].bool().repeat_interleave(clone_batch, 0)
    else:
        real = torch.ones_like(mask)
    # the gather's cost depends on the shapes only: time it on a tensor shaped as the embedded copies
    embedded = torch.randn(*mask.shape, config.hidden_size, device=mask.device)
    keep = real & ~mask
    visible, _, positions = encode(student, main, keep, clone_batch)
    padded = real if not bool(real.all()) else None
    decoder_input = model.head.build_input(visible, positions, keep, padded)
    unmasked = {k: v for k, v in inputs.items() if k != "mask"}
    return {
        "whole forward (loss)": (lambda: model(**inputs).loss, ()),
        "teacher targets (one pass per sample)": (lambda: model.compute_targets(**unmasked), ()),
        "student: sparse encoder (embeddings, gather, layers)": (encode, (student, main, keep, clone_batch)),
        "  of which the gather of visible positions": (gather_visible, (embedded, keep)),
        "decoder input: scatter back + noise": (model.head.build_input, (visible, positions, keep, padded)),
        "decoder: convolutions + projection at masked positions": (
            lambda: model.head(decoder_input, real=padded, output_mask=mask),
            (),
        ),
    }


def data2vec2_breakdown(setup: BenchmarkSetup) -> str:
    """
    data2vec 2.0's forward, piece by piece (median over `setup.steps` rounds, forward only, no gradients): the
    sparse student and its gather, the decoder's scatter and convolutions, the teacher; each as a share of the whole
    forward. Markdown table.
    """
    device = torch.device(setup.device)
    prepared = prepare_variant(setup, "data2vec2")
    model = prepared.model.eval()
    with torch.no_grad(), _autocast(setup):
        pieces = _data2vec2_pieces(model, prepared.inputs)
        times = {name: [] for name in pieces}
        for _ in range(setup.steps):
            for name, (function, arguments) in pieces.items():
                times[name].append(timed(device, function, *arguments))
    whole = statistics.median(times["whole forward (loss)"])
    lines = [f"| piece (M = {setup.clone_batch}) | time (ms) | share of the forward |", "|---|---:|---:|"]
    for name in pieces:
        median = statistics.median(times[name])
        lines.append(f"| {name} | {median * 1e3:,.2f} | {median / whole:.0%} |")
    return "\n".join(lines)


__all__ = [
    "ALL_LEVERS",
    "BenchmarkResult",
    "BenchmarkSetup",
    "data2vec2_breakdown",
    "flops_table",
    "format_table",
    "prepare_variant",
    "python_loop_ema_",
    "run_benchmark",
    "straightforward_loss",
    "straightforward_targets",
    "teacher_amortisation",
    "train_step",
]
