"""
Masks of data2vec 2.0 (`config.mode="data2vec2"`): M masked copies per sample, each with an exact
number of masked positions: random masking for text (fairseq `random_masking`), inverse block masking for images
(fairseq `compute_block_mask_2d` with `inverse_mask=True`), block masking for audio (`compute_block_mask_1d`).
Hand-written: no installed library draws these masks.
"""

import torch


def compute_random_mask(
    attention_mask: torch.Tensor,
    mask_prob: float = 0.48,
    num_copies: int = 1,
    generator: torch.Generator | None = None,
) -> torch.BoolTensor:
    """
    data2vec 2.0 text masking (MAE-style random masking): a row with `n` real tokens keeps exactly
    `max(1, int(n * (1 - mask_prob)))` of them, chosen uniformly, and masks the rest (246 of 512 for 0.48).

    Args:
        attention_mask (`torch.Tensor` of shape `(batch, seq)`): 1 for real tokens; padding is never masked.
        mask_prob (`float`): in (0, 1).
        num_copies (`int`): M, the number of independent masks per row.
        generator (`torch.Generator`, *optional*): CPU generator for reproducible masks.

    Returns:
        `torch.BoolTensor` of shape `(batch * num_copies, seq)`, the M copies of row `i` at rows `i*M ... i*M+M-1`.
    """
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob={mask_prob!r} must be in (0, 1).")
    if isinstance(num_copies, bool) or not isinstance(num_copies, int) or num_copies < 1:
        raise ValueError(f"num_copies={num_copies!r} must be an integer >= 1.")
    attention_mask = torch.as_tensor(attention_mask)
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be (batch, seq); got shape {tuple(attention_mask.shape)}.")
    real = attention_mask.bool().repeat_interleave(num_copies, 0)
    lengths = real.sum(1)
    num_keep = (lengths.double() * (1.0 - mask_prob)).floor().long().clamp(min=1)
    noise = torch.rand(real.shape, generator=generator, device=real.device)
    noise = noise.masked_fill(~real, 2.0)  # padding sorts last
    ranks = noise.argsort(1).argsort(1)
    return (ranks >= num_keep.unsqueeze(1)) & real


def compute_inverse_block_mask(
    grid_size: int,
    mask_prob: float = 0.8,
    mask_length: int = 3,
    mask_prob_adjust: float = 0.07,
    num_copies: int = 1,
    generator: torch.Generator | None = None,
) -> torch.BoolTensor:
    """
    data2vec 2.0 image masking (fairseq `compute_block_mask_2d`, `inverse_mask=True`, `require_same_masks=True`):
    the VISIBLE patches form blocks. `int(L * (1 - mask_prob + mask_prob_adjust) / mask_length**2)` block centres
    are drawn uniformly (with replacement) on the `grid_size x grid_size` grid of `L` patches, each marks a
    `mask_length x mask_length` block (clamped at the borders), then random single patches are added or removed
    until exactly `int(L * (1 - mask_prob))` are visible; everything else is masked (39 visible of 196 for 0.8).

    Args:
        grid_size (`int`): patches per side.
        mask_prob (`float`): fraction to mask, in (0, 1).
        mask_length (`int`): block side in patches.
        mask_prob_adjust (`float`): extra fraction of block centres (compensates for overlapping blocks).
        num_copies (`int`): independent masks to draw.
        generator (`torch.Generator`, *optional*): CPU generator for reproducible masks.

    Returns:
        `torch.BoolTensor` of shape `(num_copies, grid_size**2)`: True at masked patches.
    """
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob={mask_prob!r} must be in (0, 1).")
    for name, value in (("grid_size", grid_size), ("mask_length", mask_length), ("num_copies", num_copies)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be an integer >= 1.")
    num_patches = grid_size * grid_size
    keep_prob = 1.0 - mask_prob
    # fairseq's order of operations, so that the same RNG state draws the same mask (tests/test_fairseq_parity.py)
    num_centres = int(num_patches * ((keep_prob + mask_prob_adjust) / mask_length**2))
    num_visible = max(1, int(num_patches * keep_prob))
    visible = torch.zeros(num_copies, grid_size, grid_size)
    centres = torch.randint(0, num_patches, (num_copies, num_centres), generator=generator)
    offsets = torch.arange(mask_length) - mask_length // 2
    rows = (centres // grid_size)[:, :, None, None] + offsets[:, None]
    cols = (centres % grid_size)[:, :, None, None] + offsets[None, :]
    copy = torch.arange(num_copies)[:, None, None, None].expand_as(rows + cols)
    visible[copy, rows.clamp(0, grid_size - 1).expand_as(copy), cols.clamp(0, grid_size - 1).expand_as(copy)] = 1
    return _exact_count(visible.reshape(num_copies, num_patches), num_visible, generator) == 0


def compute_block_mask_1d(
    num_frames: int,
    mask_prob: float = 0.5,
    mask_length: int = 5,
    mask_prob_adjust: float = 0.05,
    num_copies: int = 1,
    generator: torch.Generator | None = None,
) -> torch.BoolTensor:
    """
    data2vec 2.0 audio masking (fairseq `compute_block_mask_1d`, `require_same_masks=True`): `int(T * (mask_prob +
    mask_prob_adjust) / mask_length)` centres drawn uniformly (with replacement), a span of `mask_length` frames
    around each (clamped at the ends), then random single frames added or removed until exactly `int(T * mask_prob)`
    frames are masked.

    Returns:
        `torch.BoolTensor` of shape `(num_copies, num_frames)`: True at masked frames.
    """
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob={mask_prob!r} must be in (0, 1).")
    for name, value in (("num_frames", num_frames), ("mask_length", mask_length), ("num_copies", num_copies)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be an integer >= 1.")
    num_centres = int(num_frames * (mask_prob + mask_prob_adjust) / mask_length)
    masked = torch.zeros(num_copies, num_frames)
    centres = torch.randint(0, num_frames, (num_copies, num_centres), generator=generator)
    frames = (centres[:, :, None] + torch.arange(mask_length) - mask_length // 2).clamp(0, num_frames - 1)
    masked[torch.arange(num_copies)[:, None, None].expand_as(frames), frames] = 1
    num_masked = min(max(1, int(num_frames * mask_prob)), num_frames - 1) if num_frames > 1 else 0
    return _exact_count(masked, num_masked, generator).bool()


def _exact_count(selected: torch.Tensor, count: int, generator) -> torch.Tensor:
    """Adds or removes random positions of each 0/1 row of `selected` (in place) until it holds `count` ones."""
    for row in selected:
        current = int(row.sum())
        if current > count:
            row[torch.multinomial(row, current - count, replacement=False, generator=generator)] = 0
        elif current < count:
            row[torch.multinomial(1 - row, count - current, replacement=False, generator=generator)] = 1
    return selected


__all__ = ["compute_block_mask_1d", "compute_inverse_block_mask", "compute_random_mask"]
