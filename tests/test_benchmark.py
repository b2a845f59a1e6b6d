"""The fast data2vec 1.0 path against the straightforward one, gradient checkpointing, the benchmark smoke run."""

from pathlib import Path

import pytest
import torch

from d2v_hf import Data2VecForPretraining

from .fixtures import NO_DROPOUT, make_teacher_differ, manual_text_layers, tiny_config, tiny_inputs
from reference_steps import python_loop_ema_, straightforward_loss, straightforward_targets


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("modality", ["text", "audio", "vision"])
def test_fast_path_matches_straightforward_path_for_block_targets(modality):
    overrides = {} if modality == "vision" else {"target_feature": "block"}
    model = Data2VecForPretraining(tiny_config(modality, num_layers=3, average_top_k_layers=2, **overrides)).eval()
    make_teacher_differ(model)
    inputs = tiny_inputs(model.config, pad=False)
    unmasked = {k: v for k, v in inputs.items() if k != "mask"}
    with torch.no_grad():
        torch.testing.assert_close(
            model.compute_targets(**unmasked), straightforward_targets(model, **unmasked), atol=1e-5, rtol=1e-5
        )
        out = model(**inputs)
        loss, predictions, targets = straightforward_loss(model, **inputs)
    torch.testing.assert_close(out.targets, targets, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.predictions, predictions, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, loss, atol=1e-5, rtol=1e-5)


def test_straightforward_targets_refuse_ffn():
    model = Data2VecForPretraining(tiny_config("text"))
    with pytest.raises(ValueError, match="target_feature='ffn'"):
        straightforward_targets(model, input_ids=torch.ones(1, 4, dtype=torch.long))


def test_fast_ffn_loss_matches_manual_computation():
    """The text preset (FFN outputs through hooks, LayerNorm per layer, smooth L1 beta 4) against a manual pass."""
    model = Data2VecForPretraining(tiny_config("text", num_layers=3, average_top_k_layers=2)).eval()
    make_teacher_differ(model)
    inputs = tiny_inputs(model.config, pad=True)
    with torch.no_grad():
        out = model(**inputs)
        ffn, _ = manual_text_layers(model.teacher, inputs["input_ids"], inputs["attention_mask"])
        targets = torch.stack([torch.nn.functional.layer_norm(y, (32,)) for y in ffn[-2:]]).mean(0)[inputs["mask"]]
        diff = (out.predictions - targets).abs()
        expected = torch.where(diff < 4, 0.5 * diff**2 / 4, diff - 2).sum(-1).mean()
    torch.testing.assert_close(out.targets, targets, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, expected, atol=1e-5, rtol=1e-5)


def test_fused_ema_matches_python_loop():
    fast = Data2VecForPretraining(tiny_config("text"))  # the preset shares the embeddings
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in fast.student.parameters():
            p.add_(torch.randn(p.shape, generator=generator))
    slow = Data2VecForPretraining(fast.config)
    slow.load_state_dict(fast.state_dict())
    for _ in range(2):
        assert fast.ema_step(0.9) == python_loop_ema_(slow, 0.9) == 0.9
    for (name, a), b in zip(fast.teacher.state_dict().items(), slow.teacher.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-7, msg=name)
    assert int(fast.ema_num_updates) == int(slow.ema_num_updates) == 2


@pytest.mark.parametrize("mode", ["data2vec", "data2vec2"])
def test_gradient_checkpointing_gives_the_same_gradients(mode):
    extra = {"mode": "data2vec2", "clone_batch": 2, "decoder_input_dropout": 0.0, "mask_noise_std": 0.0}
    config = tiny_config("text", backbone_kwargs=NO_DROPOUT, **(extra if mode == "data2vec2" else {}))
    model = Data2VecForPretraining(config).train()
    inputs = tiny_inputs(config, pad=False)
    if mode == "data2vec2":
        inputs.pop("mask")  # drawn from the global RNG
    grads = []
    for checkpointing in (False, True):
        if checkpointing:
            model.gradient_checkpointing_enable()  # what the Trainer's --gradient_checkpointing calls
        torch.manual_seed(0)
        model(**inputs).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        model.zero_grad(set_to_none=True)
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.student.encoder.layer)
    assert grads[0].keys() == grads[1].keys() and not any(n.startswith("teacher.") for n in grads[0])
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-5, msg=name)


def test_benchmark_script_reports_every_variant(capsys):
    import pretraining_throughput as script  # benchmarks/ is on sys.path (tests/fixtures.py)

    tiny = ["--batch_size=2", "--length=16", "--steps=1", "--warmup=0", "--threads=1", "--clone_batch=2"]
    report = script.main(["--modality=text", *tiny, "--amortisation"])
    assert report == capsys.readouterr().out.strip()
    assert report.startswith("Hardware: CPU")
    for row in ("(a) HF RobertaForMaskedLM", "(b) data2vec 1.0", "(c) data2vec 2.0", "(d) data2vec 1.0"):
        assert sum(line.startswith(f"| {row}") for line in report.splitlines()) == 1, row
    assert "teacher per copy" in report and "| 8 |" in report
    vision = script.main(["--modality=vision", "--length=16", *tiny, "--variants=hf,data2vec"])
    assert "(a) HF BeitForMaskedImageModeling" in vision and "(c)" not in vision
    with pytest.raises(ValueError, match="unknown"):
        script.main(["--variants=hf,bogus"])


def test_gpu_suite_names_bad_flags_before_writing(tmp_path):
    import subprocess

    import gpu_suite

    out = tmp_path / "suite"
    bad = [
        (["--smoke", "--steps", "0"], "--steps 0"),
        (["--smoke", "--time_budget_s", "-5"], "--time_budget_s -5.0"),
        (["--smoke", "--modalities", "text,video"], "--modalities 'text,video'"),
    ]
    if not torch.cuda.is_available():
        bad.append(([], "needs a CUDA device; --smoke runs it on CPU"))
    for flags, message in bad:
        with pytest.raises(ValueError, match=message):
            gpu_suite.main(["--output_dir", str(out), *flags])
    assert not out.exists()
    # the wrapper's first argument is the folder: a flag there gets the usage, not a folder named "--smoke"
    script = Path(gpu_suite.__file__).with_name("gpu_suite.sh")
    run = subprocess.run(["bash", str(script), "--smoke"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and "usage: bash benchmarks/gpu_suite.sh OUTPUT_DIR" in run.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_gpu_suite_smoke_writes_every_table(tmp_path):
    """benchmarks/gpu_suite.sh --smoke: the GPU suite's code at tiny size on CPU (torch.compile, eager backend)."""
    import gpu_suite  # benchmarks/ is on sys.path (tests/fixtures.py)

    out = gpu_suite.main(["--output_dir", str(tmp_path), "--smoke"])
    names = sorted(path.name for path in out.iterdir())
    expected = [
        f"{m}_{kind}.md"
        for m in ("text", "audio", "vision")
        for kind in ("amortisation", "compiled", "data2vec2_breakdown", "eager", "levers")
    ]
    profiles = ["text_data2vec_compiled", "vision_data2vec_eager", "vision_hf_eager", "audio_data2vec_compiled"]
    assert names == sorted(["README.md", "text_packing.md", *expected, *(f"{name}_profile.md" for name in profiles)])
    assert "aten::" in (out / "vision_hf_eager_profile.md").read_text()
    summary = (out / "README.md").read_text()
    assert summary.count("| on, (b) with every lever |") == 3 and summary.count("| off |") == 3
    assert "Hardware: CPU" in summary and "## Speed levers" in summary
    sections = [line for line in summary.splitlines() if line.startswith("| ") and line.endswith(" done |")]
    assert len(sections) == 21 and "failed" not in summary and "skipped" not in summary
    packing = (out / "text_packing.md").read_text()
    assert "| padded, one document per row |" in packing
    assert "| packed rows, attention within each document |" in packing
    breakdown = (out / "vision_data2vec2_breakdown.md").read_text()
    for row in (
        "| whole forward (loss) |",
        "gather of visible positions",
        "decoder input: scatter",
        "| teacher targets",
    ):
        assert row in breakdown, row
    for modality in ("text", "audio", "vision"):
        levers = (out / f"{modality}_levers.md").read_text()
        for row in ("| none |", "| bf16 teacher copy |", "| fused AdamW |", "| fused head + loss |"):
            assert row in levers, row
        assert "| gradient checkpointing, 2x batch |" in levers and "nan" not in levers
        compiled = [line for line in levers.splitlines() if "torch.compile" in line]
        assert len(compiled) == 3 and "CUDA graphs" not in levers  # CUDA graphs: on a GPU only
        graphs = {line.split(" | ")[0][2:]: int(line.split(" | ")[-2]) for line in compiled}  # ..., graphs, first step
        assert graphs.pop("all of them + regional torch.compile") > 1  # one per compiled module and grad mode
        if modality != "audio":  # one graph per step (audio: Transformers' LayerDrop and feature encoder break it)
            assert set(graphs.values()) == {1}, compiled
    for name in expected:
        if name.endswith(("compiled.md", "eager.md")):
            table = (out / name).read_text()
            assert all(row in table for row in ("(a) HF", "(b) data2vec 1.0", "(c) data2vec 2.0", "(d) data2vec 1.0"))


@pytest.mark.slow
def test_gpu_suite_smoke_compiles_every_compiled_variant_layer_by_layer_when_asked(tmp_path):
    import gpu_suite

    out = gpu_suite.main(["--output_dir", str(tmp_path), "--smoke", "--modalities", "text", "--compile_regions"])
    summary = (out / "README.md").read_text()
    assert "compiled layer by layer (--compile_regions)" in summary and "failed" not in summary
    compiled = [line for line in (out / "text_levers.md").read_text().splitlines() if "torch.compile" in line]
    graphs = [int(line.split(" | ")[-2]) for line in compiled]
    assert len(graphs) == 3 and min(graphs) > 1, compiled  # regional: one graph per compiled module and grad mode


def test_comparison_cost_counts_the_training_step_of_each_head():
    import comparison_cost
    from transformers import BertConfig, ViTConfig

    tiny = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    text = [comparison_cost.step_flops(BertConfig(**tiny), "glue", batch, 16, 32, 1.0) for batch in (2, 4)]
    qa = comparison_cost.step_flops(BertConfig(**tiny), "qa", 2, 16, 32, 1.0)
    image = comparison_cost.step_flops(ViTConfig(image_size=32, patch_size=8, **tiny), "image", 2, 16, 32, 1.0)
    assert text[1] == 2 * text[0] > 0  # linear in the batch
    assert qa > text[0] and image > 0  # longer QA windows cost more
    # a forward + backward of the encoder: about 6 FLOPs per weight per token for the dense layers
    dense = 2 * (4 * 32 * 32 + 2 * 32 * 64)
    assert 6 * dense * 2 * 16 <= text[0] <= 3 * 6 * dense * 2 * 16


def test_memory_table_counts_the_states_a_training_step_allocates():
    """The replicated (DDP) accounting against the tensors one AdamW step of a tiny model really holds: weights of
    student, head and teacher, gradients (counted twice: DDP's buckets copy them) and AdamW's two moments."""
    from memory_per_gpu import ParameterCounts, bytes_per_gpu, count_parameters, main

    model = Data2VecForPretraining(tiny_config("text", backbone_kwargs=NO_DROPOUT))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    model(**tiny_inputs(model.config)).loss.backward()
    optimizer.step()
    counts = ParameterCounts.of(model)
    states = bytes_per_gpu(counts, "DDP", num_gpus=1)
    assert states["weights"] == sum(p.nbytes for p in model.parameters())
    assert states["gradients"] == 2 * sum(p.grad.nbytes for p in model.parameters() if p.grad is not None)
    moments = [s[k] for s in optimizer.state.values() for k in ("exp_avg", "exp_avg_sq")]
    assert states["optimizer"] == sum(m.nbytes for m in moments)
    # the counts of a model built on the meta device are those of the real one; sharding divides by the GPUs
    from d2v_hf import Data2VecPretrainingConfig
    from d2v_hf.recipes import tiny_backbone_config

    config = Data2VecPretrainingConfig.from_preset("text", tiny_backbone_config("text"), average_top_k_layers=2)
    assert count_parameters("text", "tiny") == ParameterCounts.of(Data2VecForPretraining(config))
    assert bytes_per_gpu(counts, "ZeRO-3", 8)["optimizer"] * 8 == bytes_per_gpu(counts, "ZeRO-3", 1)["optimizer"]
    text = main(["--num_gpus", "4"])
    assert "| FSDP2 |" in text and "text large" in text and "4 GPUs" in text


def test_profile_step_writes_the_busiest_operators(tmp_path):
    import profile_step

    out = tmp_path / "profile.md"
    report = profile_step.main(["--modality", "text", "--batch_size", "2", "--length", "16", "--steps", "1",
                                "--levers", "all", "--output", str(out)])  # fmt: skip
    assert out.read_text() == report and "(b) data2vec 1.0" in report and "aten::addmm" in report
