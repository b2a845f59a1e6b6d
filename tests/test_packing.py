"""
Sequence packing for padded text corpora (issue 17's lever): `tokenize_and_group(sample_break_mode="complete_doc",
pack_documents=True)` packs whole samples into rows with `position_ids`, and the model lets every token attend only
within its own sample, so a packed batch gives the loss, targets and gradients of the same samples padded one per row.
"""

import pytest
import torch
from datasets import Dataset

from d2v_hf import Data2VecForPretraining, data_collator_for
from d2v_hf.backbones import packed_text_inputs
from d2v_hf.data import tokenize_and_group

from .fixtures import NO_DROPOUT, VOCAB_SIZE, build_tokenizer, make_teacher_differ, tiny_config, tiny_inputs


LENGTHS = (5, 9, 3, 12, 7, 4)  # packed into rows of 16: [5, 9], [3, 12], [7, 4]


def samples_and_masks(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    samples = [torch.randint(3, VOCAB_SIZE - 1, (n,), generator=generator) for n in LENGTHS]
    masks = []
    for n in LENGTHS:
        mask = torch.rand(n, generator=generator) < 0.4
        mask[torch.randint(0, n, (1,), generator=generator)] = True  # at least one masked token per sample
        masks.append(mask)
    return samples, masks


def padded_batch(samples, masks, pad_token_id):
    width = max(len(s) for s in samples)
    input_ids = torch.full((len(samples), width), pad_token_id)
    attention_mask = torch.zeros_like(input_ids)
    mask = torch.zeros_like(input_ids, dtype=torch.bool)
    for i, (sample, sample_mask) in enumerate(zip(samples, masks)):
        input_ids[i, : len(sample)], attention_mask[i, : len(sample)], mask[i, : len(sample)] = sample, 1, sample_mask
    return {"input_ids": input_ids, "attention_mask": attention_mask, "mask": mask}


def packed_batch(samples, masks, pad_token_id, row_length: int = 16):
    rows, row = [], []
    for index, sample in enumerate(samples):
        if row and sum(len(samples[i]) for i in row) + len(sample) > row_length:
            rows.append(row)
            row = []
        row.append(index)
    rows.append(row)
    input_ids = torch.full((len(rows), row_length), pad_token_id)
    attention_mask, position_ids = torch.zeros_like(input_ids), torch.zeros_like(input_ids)
    mask = torch.zeros_like(input_ids, dtype=torch.bool)
    for r, members in enumerate(rows):
        start = 0
        for i in members:
            end = start + len(samples[i])
            input_ids[r, start:end], attention_mask[r, start:end] = samples[i], 1
            position_ids[r, start:end], mask[r, start:end] = torch.arange(len(samples[i])), masks[i]
            start = end
    assert len(rows) < len(samples)  # the test packs something
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids, "mask": mask}


@pytest.mark.parametrize(
    "model_type,attn_implementation",
    # RoBERTa numbers positions after the padding index, BERT from 0
    [("data2vec-text", "sdpa"), ("data2vec-text", "eager"), ("bert", "sdpa")],
)
def test_packed_rows_give_the_padded_batch_loss_targets_and_gradients(model_type, attn_implementation):
    config = tiny_config("text", model_type=model_type, backbone_kwargs=NO_DROPOUT)
    config.backbone_config._attn_implementation = attn_implementation
    torch.manual_seed(0)
    padded_model = Data2VecForPretraining(config)
    make_teacher_differ(padded_model)
    packed_model = Data2VecForPretraining(config)
    packed_model.load_state_dict(padded_model.state_dict())
    assert packed_model.student.config._attn_implementation == attn_implementation

    samples, masks = samples_and_masks()
    pad = config.backbone_config.pad_token_id
    padded_out = padded_model(**padded_batch(samples, masks, pad))
    packed_out = packed_model(**packed_batch(samples, masks, pad))
    # the masked tokens come out in the same order (sample after sample) in both layouts
    torch.testing.assert_close(packed_out.targets, padded_out.targets, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed_out.predictions, padded_out.predictions, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed_out.loss, padded_out.loss, atol=1e-6, rtol=1e-5)
    padded_out.loss.backward()
    packed_out.loss.backward()
    for (name, a), b in zip(padded_model.student.named_parameters(), packed_model.student.parameters()):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, atol=1e-6, rtol=1e-4, msg=name)


def test_without_the_sample_boundaries_the_packed_rows_would_differ():
    """The test above can fail: the same rows read as one sample each (no position_ids) give other targets."""
    config = tiny_config("text", backbone_kwargs=NO_DROPOUT)
    torch.manual_seed(0)
    model = Data2VecForPretraining(config)
    samples, masks = samples_and_masks()
    pad = config.backbone_config.pad_token_id
    packed = packed_batch(samples, masks, pad)
    with torch.no_grad():
        reference = model(**padded_batch(samples, masks, pad)).targets
        unpacked = model(**{k: v for k, v in packed.items() if k != "position_ids"}).targets
    assert not torch.allclose(unpacked, reference, atol=1e-3)


def test_tokenize_and_group_complete_doc_and_packing():
    texts = ["one two three four five six seven eight nine ten eleven twelve", "a b", "", "red green blue"] * 3
    tokenizer = build_tokenizer(texts, vocab_size=300)
    dataset = Dataset.from_dict({"text": texts})
    docs = tokenize_and_group(dataset, tokenizer, max_seq_length=12, sample_break_mode="complete_doc")
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts if t]
    expected = [[bos, *ids[i : i + 10], eos] for ids in encoded for i in range(0, len(ids), 10)]
    assert docs["input_ids"] == expected  # never across a text, at most 12 tokens, each its own sample
    assert any(len(row) < 12 for row in docs["input_ids"]) and any(len(ids) > 10 for ids in encoded)

    packed = tokenize_and_group(dataset, tokenizer, max_seq_length=12, sample_break_mode="complete_doc",
                                pack_documents=True)  # fmt: skip
    assert len(packed) < len(docs)
    assert [t for row in packed["input_ids"] for t in row] == [t for row in expected for t in row]
    for row, positions in zip(packed["input_ids"], packed["position_ids"]):
        assert len(row) == len(positions) <= 12
        starts = [i for i, p in enumerate(positions) if p == 0]
        pieces = [row[a:b] for a, b in zip(starts, starts[1:] + [len(row)])]
        assert all(piece in expected for piece in pieces)  # whole samples, positions restarting at each

    # the collator pads the packed rows' position_ids; the model takes the batch as it comes
    vocabulary = dict(backbone_kwargs=dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id),
                      mask_token_id=tokenizer.mask_token_id)  # fmt: skip
    config = tiny_config("text", **vocabulary)
    batch = data_collator_for(config, tokenizer)([packed[i] for i in range(len(packed))])
    assert batch["position_ids"].shape == batch["input_ids"].shape
    assert batch["position_ids"][batch["attention_mask"] == 0].eq(0).all()
    assert Data2VecForPretraining(config)(**batch).loss.isfinite()
    two = tiny_config("text", mode="data2vec2", clone_batch=2, **vocabulary)
    with pytest.raises(ValueError, match="data2vec 2.0 trains on unpacked rows"):
        data_collator_for(two, tokenizer)([packed[0]])


def test_packing_refuses_what_it_cannot_do():
    texts = ["a b c", "d e f"]
    tokenizer = build_tokenizer(texts * 10, vocab_size=300)
    with pytest.raises(ValueError, match="sample_break_mode='complete_doc'"):
        tokenize_and_group(Dataset.from_dict({"text": texts}), tokenizer, max_seq_length=8, pack_documents=True)
    with pytest.raises(ValueError, match="sample_break_mode='whole'"):
        tokenize_and_group(Dataset.from_dict({"text": texts}), tokenizer, max_seq_length=8, sample_break_mode="whole")

    config = tiny_config("text")
    inputs = tiny_inputs(config, pad=False)
    positions = torch.arange(16).repeat(3, 1)
    model = Data2VecForPretraining(config)
    with pytest.raises(ValueError, match="count up by 1"):
        model(**inputs, position_ids=torch.tensor([0, 1, 3, *range(3, 16)]).repeat(3, 1))
    with pytest.raises(ValueError, match="start at 0"):
        model(**inputs, position_ids=positions + 1)
    with pytest.raises(ValueError, match="input_ids' shape"):
        model(**inputs, position_ids=positions[:, :8])
    with pytest.raises(ValueError, match="'sdpa' or 'eager'"):
        packed_text_inputs(config, inputs["input_ids"], positions, None, "flash_attention_2")
    with pytest.raises(ValueError, match="instance-normalised"):
        packed = tiny_config("text", instance_norm_target_layer=True)
        Data2VecForPretraining(packed)(**inputs, position_ids=positions)
    with pytest.raises(ValueError, match="data2vec 1.0 text only"):
        vision = tiny_config("vision")
        Data2VecForPretraining(vision)(**tiny_inputs(vision), position_ids=positions)
    with pytest.raises(ValueError, match="data2vec 1.0 text only"):
        two = tiny_config("text", mode="data2vec2", clone_batch=2)
        two_inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
        Data2VecForPretraining(two)(**two_inputs, position_ids=positions)
