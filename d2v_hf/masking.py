"""Mask generators for data2vec pretraining (text, audio, vision), faithful to fairseq / BEiT.

Hand-written: transformers has BERT's 80/10/10 (`DataCollatorForLanguageModeling`) and wav2vec 2.0's
`_compute_mask_indices` (numpy's global RNG, no padding-aware seeding), but neither fairseq's span masking of
data2vec text nor BEiT's block masking.

All randomness comes from an optional ``torch.Generator`` (same seed, same masks; global random / numpy / torch state
is never touched). Outputs are CPU tensors: collators run in data-loader workers.
"""

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch


def _check_prob(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _as_2d(name: str, tensor) -> torch.Tensor:
    tensor = torch.as_tensor(tensor).detach().cpu()
    if tensor.dim() != 2:
        raise ValueError(f"{name} must be 2-D (batch, length), got shape {tuple(tensor.shape)}")
    return tensor


def _maskable(attention_mask, special_tokens_mask, name: str = "attention_mask") -> torch.Tensor:
    attention_mask = _as_2d(name, attention_mask)
    maskable = attention_mask != 0
    if special_tokens_mask is not None:
        special_tokens_mask = _as_2d("special_tokens_mask", special_tokens_mask)
        if special_tokens_mask.shape != attention_mask.shape:
            shapes = f"{tuple(special_tokens_mask.shape)} vs {tuple(attention_mask.shape)}"
            raise ValueError(f"special_tokens_mask and {name} shapes differ: {shapes}")
        maskable &= special_tokens_mask == 0
    return maskable


def compute_text_span_mask(
    attention_mask: torch.Tensor,
    mask_prob: float = 0.35,
    mask_length: int = 4,
    special_tokens_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.BoolTensor:
    """
    Span masking of the released data2vec text recipe (fairseq `MaskTokensDataset` with `mask_multiple_length`).

    A row with `L` maskable positions gets `int(mask_prob * L / mask_length + U[0, 1))` span starts drawn without
    replacement from all `L` positions; spans cover `mask_length` positions, may overlap and are cut at the row end.
    Expected fraction on long rows: `1 - (1 - mask_prob / mask_length) ** mask_length` (~0.306 for 0.35 / 4).
    Spans live on the maskable positions only: padding and special tokens are never masked, and a span reaching an
    excluded position skips it. With `mask_prob > 0` a row with any maskable position gets at least one span
    (fairseq can draw zero on very short rows; forcing one keeps every row in the loss).

    Args:
        attention_mask (`torch.Tensor` of shape `(batch_size, seq_len)`): 1 for real tokens, 0 for padding.
        mask_prob (`float`): in [0, 1], sets the number of spans.
        mask_length (`int`): tokens per span (>= 1).
        special_tokens_mask (`torch.Tensor` of shape `(batch_size, seq_len)`, *optional*): 1 for unmaskable tokens.
        generator (`torch.Generator`, *optional*): CPU generator for reproducible masks.

    Returns:
        `torch.BoolTensor` of shape `(batch_size, seq_len)`: True at masked positions.
    """
    _check_prob("mask_prob", mask_prob)
    _check_int("mask_length", mask_length, 1)

    def spans(length: int, jitter: float) -> tuple[int, int, int]:
        num_spans = min(max(int(mask_prob * length / mask_length + jitter), int(mask_prob > 0)), length)
        return num_spans, length, mask_length  # starts anywhere; spans are cut at the row end

    return _span_mask(_maskable(attention_mask, special_tokens_mask), spans, generator)


def compute_text_bert_mask(
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    mask_prob: float = 0.15,
    random_token_prob: float = 0.1,
    leave_unmasked_prob: float = 0.1,
    special_tokens_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    special_token_ids: Iterable[int] | None = None,
) -> tuple[torch.BoolTensor, torch.LongTensor]:
    """
    BERT-style masking (data2vec paper main text row).

    Each maskable position is selected with probability `mask_prob`; of the selected ones `leave_unmasked_prob` keep
    their token, `random_token_prob` get a uniform id from `[0, vocab_size)` minus `special_token_ids`, the rest get
    `mask_token_id`. The mask holds *all* selected positions: data2vec regresses every one of them (fairseq#4229).
    With `mask_prob > 0` a row with any maskable position has at least one selected position.

    Args:
        input_ids (`torch.LongTensor` of shape `(batch_size, seq_len)`): original token ids (teacher input).
        attention_mask (`torch.Tensor` of shape `(batch_size, seq_len)`): 1 for real tokens, 0 for padding.
        mask_token_id (`int`): id of the mask token, in `[0, vocab_size)`.
        vocab_size (`int`): size of the vocabulary random replacements are drawn from.
        mask_prob (`float`): selection probability per maskable token.
        random_token_prob (`float`): fraction of selected positions replaced by a random token.
        leave_unmasked_prob (`float`): fraction of selected positions left unchanged.
        special_tokens_mask (`torch.Tensor` of shape `(batch_size, seq_len)`, *optional*): 1 for unmaskable tokens.
        generator (`torch.Generator`, *optional*): CPU generator for reproducible masks.
        special_token_ids (iterable of `int`, *optional*): ids never used as random replacements.

    Returns:
        `tuple(torch.BoolTensor, torch.LongTensor)`, both of shape `(batch_size, seq_len)`: the selection mask and the
        corrupted student input ids.
    """
    input_ids = _as_2d("input_ids", input_ids)
    attention_mask = _as_2d("attention_mask", attention_mask)
    if input_ids.shape != attention_mask.shape:
        shapes = f"{tuple(input_ids.shape)} vs {tuple(attention_mask.shape)}"
        raise ValueError(f"input_ids and attention_mask shapes differ: {shapes}")
    _check_int("vocab_size", vocab_size, 1)
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_token_id must be in [0, vocab_size={vocab_size}), got {mask_token_id!r}")
    _check_prob("mask_prob", mask_prob)
    _check_prob("random_token_prob", random_token_prob)
    _check_prob("leave_unmasked_prob", leave_unmasked_prob)
    if random_token_prob + leave_unmasked_prob > 1.0:
        sum_text = f"{random_token_prob} + {leave_unmasked_prob}"
        raise ValueError(f"random_token_prob + leave_unmasked_prob must be <= 1, got {sum_text}")
    allowed = torch.arange(vocab_size)
    if special_token_ids is not None:
        allowed = allowed[~torch.isin(allowed, torch.as_tensor(list(special_token_ids), dtype=torch.long))]
        if allowed.numel() == 0 and random_token_prob > 0:
            raise ValueError(f"special_token_ids exclude every id of vocab_size={vocab_size}")

    maskable = _maskable(attention_mask, special_tokens_mask)
    batch_size, seq_len = maskable.shape
    selected = (torch.rand(batch_size, seq_len, generator=generator) < mask_prob) & maskable
    if mask_prob > 0:
        empty = (~selected.any(1) & maskable.any(1)).nonzero().squeeze(1)
        if empty.numel():
            # Pick one maskable position uniformly for rows where the Bernoulli draw selected nothing.
            scores = torch.rand(empty.numel(), seq_len, generator=generator).masked_fill(~maskable[empty], -1.0)
            selected[empty, scores.argmax(1)] = True

    student = input_ids.clone()
    u = torch.rand(batch_size, seq_len, generator=generator, dtype=torch.float64)
    keep = u < leave_unmasked_prob
    randomize = selected & ~keep & (u < leave_unmasked_prob + random_token_prob)
    student[selected & ~keep & ~randomize] = mask_token_id
    num_random = int(randomize.sum())
    if num_random:
        student[randomize] = allowed[torch.randint(allowed.numel(), (num_random,), generator=generator)].to(student)
    return selected, student


def compute_audio_span_mask(
    frame_attention_mask: torch.Tensor,
    mask_prob: float = 0.65,
    mask_length: int = 10,
    min_masks: int = 1,
    require_same_masks: bool = True,
    generator: torch.Generator | None = None,
) -> torch.BoolTensor:
    """
    wav2vec 2.0 / data2vec audio time masking (fairseq `compute_mask_indices`, static lengths, overlap allowed).

    A row with `L` valid frames gets `max(min_masks, int(mask_prob * L / mask_length + U[0, 1)))` starts drawn
    without replacement from `[0, L - mask_length]` (as transformers' `_compute_mask_indices`; fairseq stops one frame
    earlier); each span covers `mask_length` frames. Expected fraction on long rows before trimming:
    `1 - (1 - mask_prob / mask_length) ** mask_length` (~0.49 for 0.65 / 10). A row shorter than `mask_length` gets
    one span over all its valid frames. With `require_same_masks` rows are trimmed (random frames un-masked) to the
    smallest masked count among rows with valid frames. Invalid frames are never masked.

    Args:
        frame_attention_mask (`torch.Tensor` of shape `(batch_size, num_frames)`): 1 for frames from real samples
            (see [`audio_frame_attention_mask`]).
        mask_prob (`float`): in [0, 1], sets the number of spans.
        mask_length (`int`): frames per span (>= 1).
        min_masks (`int`): minimum number of spans per row with valid frames.
        require_same_masks (`bool`): trim every row to the same masked count.
        generator (`torch.Generator`, *optional*): CPU generator for reproducible masks.

    Returns:
        `torch.BoolTensor` of shape `(batch_size, num_frames)`: True at masked frames.
    """
    _check_prob("mask_prob", mask_prob)
    _check_int("mask_length", mask_length, 1)
    _check_int("min_masks", min_masks, 0)
    valid = _maskable(frame_attention_mask, None, "frame_attention_mask")

    def spans(length: int, jitter: float) -> tuple[int, int, int]:
        span = min(mask_length, length)
        num_starts = length - span + 1  # spans end inside the row
        return min(max(min_masks, int(mask_prob * length / mask_length + jitter)), num_starts), num_starts, span

    mask = _span_mask(valid, spans, generator)
    return trim_to_same_count(mask, generator, rows=valid.any(1)) if require_same_masks else mask


def trim_to_same_count(
    mask: torch.BoolTensor,
    generator: torch.Generator | Sequence[torch.Generator | None] | None = None,
    rows: torch.BoolTensor | None = None,
) -> torch.BoolTensor:
    """
    fairseq's `require_same_masks`: un-masks random positions (in place) so that every row of `mask` holds the
    smallest masked count among `rows` (default: all rows). `generator` may be one generator or one per row.
    """
    generators = list(generator) if isinstance(generator, Sequence) else [generator] * mask.shape[0]
    rows = torch.ones(mask.shape[0], dtype=torch.bool) if rows is None else rows
    if not rows.any():
        return mask
    counts = mask.sum(1)
    target = int(counts[rows].min())
    for i in (counts > target).nonzero().squeeze(1).tolist():
        masked = mask[i].nonzero().squeeze(1)
        drop = masked[torch.randperm(masked.numel(), generator=generators[i])[: masked.numel() - target]]
        mask[i, drop] = False
    return mask


def _span_mask(maskable: torch.BoolTensor, spans, generator: torch.Generator | None) -> torch.BoolTensor:
    """
    The span loop shared by text and audio masking: for each row with `L` maskable positions, `spans(L, u)` (u one
    uniform per row, fairseq's probabilistic rounding of the span count) gives `(num_spans, num_starts, span)`;
    `num_spans` starts are drawn without replacement from `[0, num_starts)` and each covers `span` maskable
    positions, cut at the row end.
    """
    mask = torch.zeros_like(maskable)
    jitter = torch.rand(maskable.shape[0], generator=generator, dtype=torch.float64).tolist()
    for i, row in enumerate(maskable):
        positions = row.nonzero().squeeze(1)
        length = positions.numel()
        if length == 0:
            continue
        num_spans, num_starts, span = spans(length, jitter[i])
        starts = torch.randperm(num_starts, generator=generator)[:num_spans]
        covered = (starts[:, None] + torch.arange(span)).flatten()
        mask[i, positions[covered[covered < length]]] = True
    return mask


def _check_conv(conv_kernel: Sequence[int], conv_stride: Sequence[int]) -> None:
    if len(conv_kernel) != len(conv_stride):
        raise ValueError(f"conv_kernel {tuple(conv_kernel)} and conv_stride {tuple(conv_stride)} differ in length")
    for name, values in (("conv_kernel", conv_kernel), ("conv_stride", conv_stride)):
        if any(int(v) < 1 for v in values):
            raise ValueError(f"{name} values must be >= 1, got {tuple(values)}")


def audio_frame_lengths(input_lengths, conv_kernel: Sequence[int], conv_stride: Sequence[int]):
    """
    Frames produced by the conv feature encoder: `L = floor((L - k) / s) + 1` per layer, as
    `Data2VecAudioModel._get_feat_extract_output_lengths` (no adapter). Not clamped: too-short inputs give <= 0.

    Args:
        input_lengths (`int` or `torch.LongTensor`): number of raw samples.
        conv_kernel, conv_stride (`Sequence[int]`): kernel size and stride of each conv layer.

    Returns:
        Same type as `input_lengths`: number of frames.
    """
    _check_conv(conv_kernel, conv_stride)
    for kernel, stride in zip(conv_kernel, conv_stride):
        input_lengths = (input_lengths - kernel) // stride + 1  # floor division on ints and tensors alike
    return input_lengths


def audio_receptive_field(conv_kernel: Sequence[int], conv_stride: Sequence[int]) -> int:
    """
    Number of input samples that produce one output frame (400 = 25 ms at 16 kHz for the base config).

    Args:
        conv_kernel, conv_stride (`Sequence[int]`): kernel size and stride of each conv layer.

    Returns:
        `int`: the receptive field in samples.
    """
    _check_conv(conv_kernel, conv_stride)
    field, jump = 1, 1
    for kernel, stride in zip(conv_kernel, conv_stride):
        field += (kernel - 1) * jump
        jump *= stride
    return field


def audio_frame_attention_mask(
    attention_mask: torch.Tensor, num_frames: int, conv_kernel: Sequence[int], conv_stride: Sequence[int]
) -> torch.BoolTensor:
    """
    Frame-level attention mask from a sample-level one (transformers' `_get_feature_vector_attention_mask`). Assumes
    right padding like transformers; a row too short for any frame is all False (transformers marks it all valid).

    Args:
        attention_mask (`torch.Tensor` of shape `(batch_size, num_samples)`): 1 for real samples.
        num_frames (`int`): number of frames of the padded batch.
        conv_kernel, conv_stride (`Sequence[int]`): kernel size and stride of each conv layer.

    Returns:
        `torch.BoolTensor` of shape `(batch_size, num_frames)`: True for frames computed from real samples.
    """
    attention_mask = _as_2d("attention_mask", attention_mask)
    _check_int("num_frames", num_frames, 0)
    lengths = audio_frame_lengths(attention_mask.long().sum(-1), conv_kernel, conv_stride)
    return torch.arange(num_frames)[None, :] < lengths[:, None]


def _uniform_stream(generator: torch.Generator | None, chunk: int = 1024):
    """`uniform(low, high)` fed by chunked torch draws: per-call torch overhead would dominate BEiT's python loop."""
    buffer = []

    def uniform(low: float = 0.0, high: float = 1.0) -> float:
        if not buffer:
            buffer.extend(torch.rand(chunk, generator=generator, dtype=torch.float64).tolist())
        return low + (high - low) * buffer.pop()  # random.uniform's formula, valid for low > high as BEiT needs

    return uniform


def _beit_block(mask: np.ndarray, max_mask_patches: int, min_num_patches: int, log_aspect, uniform) -> int:
    """One BEiT `_mask` call: up to 10 block proposals, keep the first that adds 1..max_mask_patches patches."""
    height, width = mask.shape
    delta = 0
    for _ in range(10):
        target_area = uniform(min_num_patches, max_mask_patches)
        aspect_ratio = math.exp(uniform(*log_aspect))
        h = int(round(math.sqrt(target_area * aspect_ratio)))
        w = int(round(math.sqrt(target_area / aspect_ratio)))
        if w < width and h < height:
            top, left = int(uniform() * (height - h + 1)), int(uniform() * (width - w + 1))  # randint, inclusive
            block = mask[top : top + h, left : left + w]
            new = h * w - int(block.sum())
            if 0 < new <= max_mask_patches:
                block[...] = True  # view: writes into mask
                delta += new
        if delta > 0:
            break
    return delta


def compute_vision_block_mask(
    batch_size: int,
    grid_size: tuple[int, int],
    num_masking_patches: int,
    min_num_patches: int = 16,
    max_num_patches: int | None = None,
    min_aspect: float = 0.3,
    max_aspect: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.BoolTensor:
    """
    BEiT block-wise masking (microsoft/unilm `beit/masking_generator.py`). Blocks of >= `min_num_patches` patches
    (aspect ratio log-uniform in `[min_aspect, max_aspect]`) are added until `num_masking_patches` are masked or 10
    proposals in a row fail: the count never exceeds it and is usually slightly below (base: ~119.5 of 120 / 196).

    Args:
        batch_size (`int`): number of masks.
        grid_size (`tuple[int, int]`): patch grid `(height, width)`, e.g. `(14, 14)` for 224px / 16px patches.
        num_masking_patches (`int`): target masked patches per image.
        min_num_patches (`int`): minimum block area.
        max_num_patches (`int`, *optional*): maximum block area, defaults to `num_masking_patches`.
        min_aspect (`float`): minimum block aspect ratio (> 0).
        max_aspect (`float`, *optional*): maximum block aspect ratio, defaults to `1 / min_aspect`.
        generator (`torch.Generator`, *optional*): CPU generator for reproducible masks.

    Returns:
        `torch.BoolTensor` of shape `(batch_size, height * width)`: True at masked patches, row-major patch order
        (the order of `Data2VecVisionModel`'s `bool_masked_pos`).
    """
    _check_int("batch_size", batch_size, 0)
    if len(grid_size) != 2:
        raise ValueError(f"grid_size must be (height, width), got {grid_size!r}")
    height, width = grid_size
    _check_int("grid height", height, 2)  # a block must satisfy h < height and w < width
    _check_int("grid width", width, 2)
    _check_int("min_num_patches", min_num_patches, 1)
    if not min_num_patches <= num_masking_patches <= height * width:
        got = f"{min_num_patches} <= {num_masking_patches} <= {height} * {width}"
        raise ValueError(f"need min_num_patches <= num_masking_patches <= height * width, got {got}")
    max_num_patches = num_masking_patches if max_num_patches is None else max_num_patches
    _check_int("max_num_patches", max_num_patches, 1)
    max_aspect = 1 / min_aspect if max_aspect is None and min_aspect > 0 else max_aspect
    if not 0 < min_aspect <= (max_aspect or 0):
        raise ValueError(f"need 0 < min_aspect <= max_aspect, got min_aspect={min_aspect}, max_aspect={max_aspect}")
    log_aspect = (math.log(min_aspect), math.log(max_aspect))

    uniform = _uniform_stream(generator)
    masks = np.zeros((batch_size, height, width), dtype=bool)  # numpy only as storage: cheap small-slice ops
    for mask in masks:
        count = 0
        while count < num_masking_patches:
            max_mask_patches = min(num_masking_patches - count, max_num_patches)
            delta = _beit_block(mask, max_mask_patches, min_num_patches, log_aspect, uniform)
            if delta == 0:
                break
            count += delta
    return torch.from_numpy(masks.reshape(batch_size, height * width))


__all__ = [
    "audio_frame_attention_mask",
    "audio_frame_lengths",
    "audio_receptive_field",
    "compute_audio_span_mask",
    "compute_text_bert_mask",
    "compute_text_span_mask",
    "compute_vision_block_mask",
    "trim_to_same_count",
]
