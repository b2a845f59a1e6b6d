"""
d2v_hf against fairseq's own data2vec outputs (`../shared/reference/fairseq_fixtures`: checkpoints, inputs, masks,
targets, predictions, losses, gradients and the teacher after one EMA step, computed by fairseq at commit 3d262bb).

Each fixture's checkpoint is converted with `d2v_hf.convert_fairseq`, fed the fixture's inputs and fairseq's masks,
and every quantity is compared; the table of maximum absolute differences is what docs/faithfulness.md shows:

    python benchmarks/fairseq_parity.py --fixtures ../shared/reference/fairseq_fixtures

The 2.0 image fixture's encoder (post-LN AltBlocks behind a prenet) has no Hugging Face class, so there the
comparable parts are measured: the masks drawn from the same RNG state, the sin-cos positions, the targets from
fairseq's teacher layer outputs, the decoder, and the loss with its CLS term. `tests/test_fairseq_parity.py` asserts
every difference below 1e-5, and that a broken mapping (two layers swapped, the teacher dropped) fails.
"""

import argparse
import contextlib
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import ViTConfig

from d2v_hf import Data2VecForPretraining, Data2VecPretrainingConfig, compute_inverse_block_mask
from d2v_hf.convert_fairseq import ConvertedModel, convert_checkpoint, fairseq_gradient
from d2v_hf.modeling_data2vec2 import Data2Vec2Decoder, sincos_2d_positions
from d2v_hf.modeling_data2vec_pretraining import average_layer_targets


def _load(folder: Path, name: str) -> dict:
    return torch.load(folder / name, map_location="cpu", weights_only=True)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if tuple(a.shape) != tuple(b.shape):
        return float("inf")
    return float((a.detach().double() - b.detach().double()).abs().max())


def _one_step(
    converted: ConvertedModel, inputs: dict, expected: dict, full_targets: Callable, patch=contextlib.nullcontext
) -> dict[str, float]:
    """
    fairseq's step on the converted model: forward, loss, backward, an SGD step of `sgd_lr` on every parameter, one
    EMA update. Returns the max |d2v_hf - fairseq| of each quantity.
    """
    model, converter = converted.model, converted.converter
    model.train()
    model.zero_grad(set_to_none=True)
    with patch(model):
        out = model(**inputs)
    out.loss.backward()
    diffs = {
        "targets (full)": full_targets(model),
        "targets (masked)": _max_diff(out.targets, expected["targets"]),
        "predictions": _max_diff(out.predictions, expected["predictions"]),
        "loss": _max_diff(out.loss, expected["loss"]),
    }
    config = model.config
    grads = expected["grads"]
    diffs["gradients (every mapped parameter)"] = max(
        _max_diff(fairseq_gradient(model, rule), grads[rule.source])
        for rule in converter.student_rules(config)
    )
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.grad is not None:
                parameter.sub_(expected["sgd_lr"] * parameter.grad)
    decay = model.ema_step()
    diffs["EMA decay of update 1"] = abs(decay - expected["ema_decay_used"])
    state = model.state_dict()
    teacher = expected["ema_after_one_step"]
    diffs["teacher after one EMA step"] = max(
        _max_diff(torch.cat([state[target] for target in rule.targets]), teacher[rule.source])
        for rule in converter.teacher_rules(config)
    )
    return diffs


def measure_text(folder: Path, convert=convert_checkpoint) -> dict[str, float]:
    """data2vec 1.0 text; the teacher sees the unmasked sentence (the paper's input: `paper_teacher_input`)."""
    inputs, outputs = _load(folder, "inputs.pt"), _load(folder, "outputs.pt")
    expected = outputs["paper_teacher_input"]
    tokens = inputs["original_tokens"]
    lengths = torch.tensor(inputs["lengths"])
    attention_mask = (torch.arange(tokens.shape[1]) < lengths[:, None]).long()
    converted = convert(folder / "checkpoint.pt")

    def full_targets(model):
        targets = model.compute_targets(input_ids=tokens, attention_mask=attention_mask)
        real = attention_mask.bool()
        return _max_diff(targets[real], expected["targets_full"][real])

    batch = {"input_ids": tokens, "attention_mask": attention_mask, "mask": inputs["mask"]}
    return _one_step(converted, batch, expected, full_targets)


def measure_audio(folder: Path, convert=convert_checkpoint) -> dict[str, float]:
    """data2vec 1.0 speech."""
    inputs, outputs = _load(folder, "inputs.pt"), _load(folder, "outputs.pt")
    converted = convert(folder / "checkpoint.pt")

    def full_targets(model):
        return _max_diff(model.compute_targets(input_values=inputs["source"]), outputs["targets_full"])

    return _one_step(converted, {"input_values": inputs["source"], "mask": inputs["mask"]}, outputs, full_targets)


def measure_text2(folder: Path, convert=convert_checkpoint) -> dict[str, float]:
    """data2vec 2.0 text, with fairseq's decoder noise at the masked slots (the only random draw of its step)."""
    inputs, outputs = _load(folder, "inputs.pt"), _load(folder, "outputs.pt")
    attention_mask = (~inputs["padding_mask"]).long()
    converted = convert(folder / "checkpoint.pt")

    @contextlib.contextmanager
    def fairseq_noise(model):
        build_input = model.head.build_input

        def with_fairseq_noise(visible_states, positions, keep, real=None):
            built = build_input(visible_states, positions, keep, real)
            return torch.where(keep.unsqueeze(-1), built, outputs["decoder_input"])

        model.head.build_input = with_fairseq_noise
        try:
            yield
        finally:
            del model.head.build_input

    def full_targets(model):
        targets = model.compute_targets(input_ids=inputs["source"], attention_mask=attention_mask)
        return _max_diff(targets, outputs["targets_full"])

    batch = {"input_ids": inputs["source"], "attention_mask": attention_mask, "mask": inputs["mask"]}
    return _one_step(converted, batch, outputs, full_targets, fairseq_noise)


def image2_config(cfg: dict) -> Data2VecPretrainingConfig:
    """The d2v_hf data2vec 2.0 image recipe of the fixture's sizes (a ViT backbone: its encoder is not compared)."""
    model, image = cfg["model"], cfg["model"]["modalities"]["image"]
    decoder = image["decoder"]
    dim = model["embed_dim"]
    backbone = ViTConfig(
        hidden_size=dim,
        num_hidden_layers=model["depth"],
        num_attention_heads=model["num_heads"],
        intermediate_size=int(dim * model["mlp_ratio"]),
        image_size=image["input_size"],
        patch_size=image["patch_size"],
    )
    return Data2VecPretrainingConfig.from_preset(
        "vision",
        backbone,
        mode="data2vec2",
        average_top_k_layers=model["average_top_k_layers"],
        clone_batch=model["clone_batch"],
        mask_prob=image["mask_prob"],
        mask_length=image["mask_length"],
        mask_prob_adjust=image["mask_prob_adjust"],
        cls_loss=model["cls_loss"],
        decoder_dim=decoder["decoder_dim"],
        decoder_kernel=decoder["decoder_kernel"],
        decoder_layers=decoder["decoder_layers"],
        decoder_groups=decoder["decoder_groups"],
        decoder_residual=decoder["decoder_residual"],
        decoder_input_dropout=decoder["input_dropout"],
    )


def measure_image2(folder: Path, convert=None) -> dict[str, float]:
    """data2vec 2.0 images: the parts whose fairseq and Hugging Face forms are comparable."""
    checkpoint, inputs, outputs = (
        _load(folder, "checkpoint.pt"),
        _load(folder, "inputs.pt"),
        _load(folder, "outputs.pt"),
    )
    config = image2_config(checkpoint["cfg"])
    batch, clone_batch = inputs["source"].shape[0], config.clone_batch
    grid = config.backbone_config.image_size // config.backbone_config.patch_size
    diffs = {}

    # 1. masks: fairseq draws them from the global RNG, seeded 2 before its forward
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        mask = compute_inverse_block_mask(
            grid, config.mask_prob, config.mask_length, config.mask_prob_adjust, num_copies=batch * clone_batch
        )
    diffs["masks (mismatched positions)"] = float((mask != inputs["mask"].bool()).sum())
    mask = inputs["mask"].bool()

    # 2. fixed 2-D sin-cos positions
    diffs["sin-cos positions"] = _max_diff(sincos_2d_positions(grid, config.hidden_size), outputs["pos_embed"][0])

    # 3. targets from fairseq's teacher layer outputs
    targets_full = average_layer_targets(outputs["teacher_layer_results"], config)
    diffs["targets (full)"] = _max_diff(targets_full, outputs["targets_full"])
    rows, columns = mask.nonzero(as_tuple=True)
    targets = targets_full[torch.div(rows, clone_batch, rounding_mode="floor"), columns]
    diffs["targets (masked)"] = _max_diff(targets, outputs["targets"])

    # 4. the decoder (Decoder2d) on fairseq's decoder input
    decoder = Data2Vec2Decoder(config).eval()
    weights = checkpoint["model"]
    prefix = "modality_encoders.IMAGE.decoder."
    state = {f"blocks.{i}.conv.{p}": weights[f"{prefix}blocks.{i}.0.{p}"] for i in range(config.decoder_layers)
             for p in ("weight", "bias")}  # fmt: skip
    state.update({f"projection.0.{p}": weights[f"{prefix}proj.{p}"] for p in ("weight", "bias")})
    decoder.load_state_dict(state)
    with torch.no_grad():
        decoder_output = decoder(outputs["decoder_input"])
    diffs["decoder output"] = _max_diff(decoder_output, outputs["decoder_output"])
    predictions = decoder_output[mask]
    diffs["predictions"] = _max_diff(predictions, outputs["predictions"])

    # 5. the loss: per-patch L2 over the masked patches plus the CLS term, as Data2VecForPretraining computes it
    model = Data2VecForPretraining(config)
    cls_targets = targets_full.mean(1).repeat_interleave(clone_batch, 0)
    loss = model.regression_loss(predictions, targets) / mask.sum()
    loss = loss + config.cls_loss * model.regression_loss(outputs["cls_prediction"], cls_targets)
    diffs["loss (with the CLS term)"] = _max_diff(loss, outputs["loss"])
    return diffs


MEASURES = {
    "data2vec_text": measure_text,
    "data2vec_audio": measure_audio,
    "data2vec2_text": measure_text2,
    "data2vec2_image": measure_image2,
}


def report(fixtures: Path) -> str:
    lines = ["| fixture | quantity | max abs difference |", "|---|---|---|"]
    for name, measure in MEASURES.items():
        for quantity, diff in measure(fixtures / name).items():
            lines.append(f"| `{name}` | {quantity} | {diff:.1e} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", default="../shared/reference/fairseq_fixtures", type=Path)
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    print(report(args.fixtures))


if __name__ == "__main__":
    main()
