import time

import pytest
import torch

from d2v_hf.masking import (
    audio_frame_attention_mask,
    audio_frame_lengths,
    audio_receptive_field,
    compute_audio_span_mask,
    compute_text_bert_mask,
    compute_text_span_mask,
    compute_vision_block_mask,
)


BASE_KERNEL = (10, 3, 3, 3, 3, 2, 2)
BASE_STRIDE = (5, 2, 2, 2, 2, 2, 2)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def runs(row):
    """(start, length) of each maximal run of True in a 1-D bool tensor."""
    out, start = [], None
    for i, value in enumerate(row.tolist() + [False]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            out.append((start, i - start))
            start = None
    return out


def padded_mask(lengths, total):
    return (torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]).long()


# ----------------------------------------------------------------------------------------------------- text spans


def test_text_span_ratio_matches_fairseq_expectation():
    g = gen(0)
    attention_mask = torch.ones(64, 512, dtype=torch.long)
    fraction = torch.cat([compute_text_span_mask(attention_mask, generator=g) for _ in range(3)]).float().mean()
    expected = 1 - (1 - 0.35 / 4) ** 4
    assert abs(fraction.item() - expected) < 0.02, fraction


def test_text_span_runs_have_span_length():
    mask = compute_text_span_mask(torch.ones(32, 512), mask_prob=0.1, mask_length=4, generator=gen(1))
    for row in mask:
        for start, length in runs(row):
            # overlapping spans merge into longer runs; only a span cut at the row end may be shorter
            assert length >= 4 or start + length == 512, (start, length)


def test_text_span_never_masks_padding_or_special_tokens():
    lengths = [512, 300, 17, 5, 1]
    attention_mask = padded_mask(lengths, 512)
    attention_mask[1] = attention_mask[1].flip(0)  # left padding works too
    special = torch.zeros_like(attention_mask)
    special[:, 0] = 1
    special[0, 511] = special[2, 16] = 1
    maskable = (attention_mask == 1) & (special == 0)
    for seed in range(20):
        mask = compute_text_span_mask(attention_mask, special_tokens_mask=special, generator=gen(seed))
        assert not (mask & ~maskable).any()
        assert not mask[4].any()  # the only real token is special
    # mask_prob=1 with unit spans masks exactly the maskable positions
    full = compute_text_span_mask(attention_mask, 1.0, 1, special_tokens_mask=special, generator=gen(0))
    assert torch.equal(full, maskable)


def test_text_span_at_least_one_per_row():
    attention_mask = padded_mask([1, 2, 3, 4] * 8, 8)
    for seed in range(10):
        mask = compute_text_span_mask(attention_mask, generator=gen(seed))
        assert (mask.sum(1) >= 1).all()
    assert not compute_text_span_mask(attention_mask, mask_prob=0.0, generator=gen(0)).any()


def test_text_span_speed():
    attention_mask = torch.ones(64, 512, dtype=torch.long)
    compute_text_span_mask(attention_mask, generator=gen(0))
    start = time.perf_counter()
    compute_text_span_mask(attention_mask, generator=gen(0))
    # ~15 ms measured; generous bound for shared CI machines, catches pathological slowness
    assert time.perf_counter() - start < 0.5


# ------------------------------------------------------------------------------------------------------------ BERT


def test_bert_mask_ratio_and_80_10_10_split():
    g = gen(0)
    input_ids = torch.randint(10, 1000, (64, 512), generator=g)
    selected, student = compute_text_bert_mask(input_ids, torch.ones_like(input_ids), 3, 1000, generator=g)
    assert selected.dtype == torch.bool and student.shape == input_ids.shape
    assert abs(selected.float().mean().item() - 0.15) < 0.01
    assert torch.equal(student[~selected], input_ids[~selected])
    picked, original = student[selected], input_ids[selected]
    masked = (picked == 3).float().mean().item()
    unchanged = (picked == original).float().mean().item()
    randomized = ((picked != 3) & (picked != original)).float().mean().item()
    assert abs(masked - 0.8) < 0.03 and abs(unchanged - 0.1) < 0.03 and abs(randomized - 0.1) < 0.03


def test_bert_random_tokens_skip_special_ids():
    input_ids = torch.full((16, 64), 9)
    _, student = compute_text_bert_mask(
        input_ids,
        torch.ones_like(input_ids),
        0,
        10,
        mask_prob=0.5,
        random_token_prob=1.0,
        leave_unmasked_prob=0.0,
        generator=gen(0),
        special_token_ids=[0, 1, 2, 3],
    )
    assert set(student.unique().tolist()) == set(range(4, 10))


def test_bert_never_masks_padding_or_special_and_at_least_one():
    attention_mask = padded_mask([64, 10, 3, 2, 1], 64)
    special = torch.zeros_like(attention_mask)
    special[:, 0] = 1
    input_ids = torch.randint(5, 100, attention_mask.shape, generator=gen(9))
    maskable = (attention_mask == 1) & (special == 0)
    for seed in range(20):
        selected, student = compute_text_bert_mask(
            input_ids, attention_mask, 4, 100, special_tokens_mask=special, generator=gen(seed)
        )
        assert not (selected & ~maskable).any()
        assert torch.equal(student[~maskable], input_ids[~maskable])
        assert (selected.sum(1)[:4] >= 1).all() and not selected[4].any()


# ----------------------------------------------------------------------------------------------------------- audio


def test_audio_ratio_before_trimming():
    g = gen(0)
    valid = torch.ones(64, 500, dtype=torch.bool)
    masks = [compute_audio_span_mask(valid, require_same_masks=False, generator=g) for _ in range(3)]
    expected = 1 - (1 - 0.065) ** 10
    assert abs(torch.cat(masks).float().mean().item() - expected) < 0.02


def test_audio_runs_have_span_length():
    mask = compute_audio_span_mask(torch.ones(16, 500), mask_prob=0.2, require_same_masks=False, generator=gen(2))
    assert all(length >= 10 for row in mask for _, length in runs(row))


def test_audio_same_counts_and_valid_frames_only():
    valid = padded_mask([500, 420, 333, 250, 120, 0], 500).bool()
    for seed in range(5):
        mask = compute_audio_span_mask(valid, generator=gen(seed))
        assert not (mask & ~valid).any()
        counts = mask.sum(1)
        assert not mask[5].any() and (counts[:5] == counts[0]).all() and counts[0] > 0
    untrimmed = compute_audio_span_mask(valid, require_same_masks=False, generator=gen(0)).sum(1)
    assert len(set(untrimmed[:5].tolist())) > 1  # trimming is what equalizes them


def test_audio_short_row_and_min_masks():
    valid = padded_mask([4, 30], 30).bool()
    mask = compute_audio_span_mask(valid, mask_prob=0.0, min_masks=1, require_same_masks=False, generator=gen(0))
    assert torch.equal(mask[0], valid[0])  # shorter than mask_length: one span over all valid frames
    assert mask[1].sum() == 10  # mask_prob 0 still gives min_masks spans


def test_audio_receptive_field_and_frame_lengths():
    assert audio_receptive_field(BASE_KERNEL, BASE_STRIDE) == 400
    assert audio_frame_lengths(400, BASE_KERNEL, BASE_STRIDE) == 1
    assert audio_frame_lengths(399, BASE_KERNEL, BASE_STRIDE) == 0
    assert audio_frame_lengths(16000, BASE_KERNEL, BASE_STRIDE) == 49


def test_audio_helpers_match_transformers():
    from transformers import Data2VecAudioConfig, Data2VecAudioModel

    config = Data2VecAudioConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8, 8, 8),
        conv_kernel=(10, 3, 3),
        conv_stride=(5, 2, 2),
        num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2,
    )
    model = Data2VecAudioModel(config)
    kernel, stride = config.conv_kernel, config.conv_stride
    lengths = torch.arange(30, 1200, 7)
    assert torch.equal(audio_frame_lengths(lengths, kernel, stride), model._get_feat_extract_output_lengths(lengths))
    for n in (30, 31, 999, 1000):
        assert audio_frame_lengths(n, kernel, stride) == int(model._get_feat_extract_output_lengths(n))
    attention_mask = padded_mask([1000, 777, 512, 40, 39], 1000)
    num_frames = int(model._get_feat_extract_output_lengths(1000))
    expected = model._get_feature_vector_attention_mask(num_frames, attention_mask[:4])
    frame_mask = audio_frame_attention_mask(attention_mask, num_frames, kernel, stride)
    assert torch.equal(frame_mask[:4], expected)
    assert not frame_mask[4].any()  # below the receptive field: no frame (transformers would mark all valid)
    assert audio_receptive_field(kernel, stride) == 40
    assert audio_frame_lengths(40, kernel, stride) == 1 and audio_frame_lengths(39, kernel, stride) == 0


# ---------------------------------------------------------------------------------------------------------- vision


def test_vision_count_close_to_target_and_never_above():
    masks = compute_vision_block_mask(300, (14, 14), 120, generator=gen(0))
    assert masks.shape == (300, 196) and masks.dtype == torch.bool
    counts = masks.sum(1).float()
    assert counts.max() <= 120 and counts.mean() > 117, counts.mean()


def test_vision_blocks_are_row_major_rectangles():
    # aspect in [0.15, 0.19] with area 6 always gives a 1 x 6 block: one horizontal run in a single grid row
    masks = compute_vision_block_mask(50, (2, 30), 6, 6, min_aspect=0.15, max_aspect=0.19, generator=gen(0))
    for mask in masks:
        assert [length for _, length in runs(mask)] == [6]
        assert mask.view(2, 30).sum(1).tolist() in ([6, 0], [0, 6])


# ------------------------------------------------------------------------------------------------- reproducibility


CASES = {
    "text_span": lambda g: compute_text_span_mask(torch.ones(8, 128), generator=g),
    "bert": lambda g: torch.cat(
        compute_text_bert_mask(torch.ones(8, 128).long(), torch.ones(8, 128), 0, 50, generator=g)
    ),
    "audio": lambda g: compute_audio_span_mask(padded_mask([300, 250, 200], 300), generator=g),
    "vision": lambda g: compute_vision_block_mask(8, (14, 14), 120, generator=g),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_reproducible_and_global_rng_untouched(name):
    state = torch.get_rng_state()
    first, again, other = CASES[name](gen(123)), CASES[name](gen(123)), CASES[name](gen(456))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(state, torch.get_rng_state())


# ------------------------------------------------------------------------------------------------------ validation


ONES = torch.ones(2, 8)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: compute_text_span_mask(ONES, mask_prob=1.5), "1.5"),
        (lambda: compute_text_span_mask(ONES, mask_prob=-0.1), "-0.1"),
        (lambda: compute_text_span_mask(ONES, mask_length=0), "mask_length.*0"),
        (lambda: compute_text_span_mask(torch.ones(8)), r"2-D.*\(8,\)"),
        (lambda: compute_text_span_mask(ONES, special_tokens_mask=torch.ones(2, 7)), r"\(2, 7\)"),
        (lambda: compute_text_bert_mask(torch.ones(2, 7).long(), ONES, 0, 10), r"\(2, 7\).*\(2, 8\)"),
        (
            lambda: compute_text_bert_mask(ONES.long(), ONES, 0, 10, random_token_prob=0.6, leave_unmasked_prob=0.5),
            "0.6 \\+ 0.5",
        ),
        (lambda: compute_text_bert_mask(ONES.long(), ONES, 10, 10), "mask_token_id.*10"),
        (lambda: compute_text_bert_mask(ONES.long(), ONES, 0, 10, mask_prob=2.0), "mask_prob.*2.0"),
        (lambda: compute_audio_span_mask(torch.ones(2, 3, 4)), r"\(2, 3, 4\)"),
        (lambda: compute_audio_span_mask(ONES, mask_length=0), "mask_length"),
        (lambda: compute_audio_span_mask(ONES, mask_prob=1.2), "1.2"),
        (lambda: compute_vision_block_mask(2, (14, 14), 200), "200"),
        (lambda: compute_vision_block_mask(2, (14, 14), 10), "16 <= 10"),
        (lambda: compute_vision_block_mask(2, (1, 14), 10, 4), "grid height.*1"),
        (lambda: compute_vision_block_mask(2, (14, 14), 120, min_aspect=0.0), "min_aspect=0.0"),
        (lambda: audio_receptive_field((10, 3), (5,)), r"\(10, 3\)"),
        (lambda: audio_frame_lengths(100, (10, 0), (5, 2)), r"\(10, 0\)"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
