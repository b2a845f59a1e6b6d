"""
The speed levers give the reference step's results on CPU: a bf16 teacher copy with an fp32 EMA master
(`teacher_dtype`), fused AdamW (`optim="adamw_torch_fused"`), gradient checkpointing (`gradient_checkpointing`) and
torch.compile through the Trainer (`torch_compile`).
"""

import pytest
import torch

from d2v_hf import Data2VecForPretraining
from d2v_hf.backbones import encoder_layers

from .fixtures import NO_DROPOUT, make_teacher_differ, make_trainer, tiny_config, tiny_inputs


MODALITIES = ["text", "audio", "vision"]


def audio_kwargs(modality):
    return dict(hidden_dropout=0.0, attention_dropout=0.0, layerdrop=0.0) if modality == "audio" else NO_DROPOUT


def reference_and_lever(modality: str, **lever):
    """Two tiny models of the same initialisation, without dropout: the reference one and one with `lever` set."""
    kwargs = dict(backbone_kwargs=audio_kwargs(modality))
    torch.manual_seed(0)
    reference = Data2VecForPretraining(tiny_config(modality, **kwargs))
    torch.manual_seed(0)
    return reference, Data2VecForPretraining(tiny_config(modality, **lever, **kwargs))


@pytest.mark.parametrize("modality", MODALITIES)
def test_bf16_teacher_keeps_an_exact_fp32_master_and_close_targets(modality):
    reference, fast = reference_and_lever(modality, teacher_dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in fast.teacher.parameters())
    assert all(p.dtype == torch.float32 for p in fast.student.parameters())
    # the same student moves in both; the EMA of the fast one runs on its fp32 master
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        with torch.no_grad():
            for a, b in zip(reference.student.parameters(), fast.student.parameters()):
                step = torch.randn(a.shape, generator=generator) * 0.01
                a.add_(step)
                b.add_(step)
        reference.ema_step(0.9)
        fast.ema_step(0.9)
    master = fast.ema_fp32_state()
    teacher = dict(reference.teacher.named_parameters())
    shared = tuple(fast.config.teacher_shared_params)
    assert master and all(not name.startswith(shared) for name in master)
    for name, value in master.items():
        torch.testing.assert_close(value, teacher[name], atol=0, rtol=0)  # fp32 arithmetic, bitwise
        torch.testing.assert_close(dict(fast.teacher.named_parameters())[name], value.to(torch.bfloat16))
    # targets: bf16 rounding only (normalised and averaged in fp32)
    make_teacher_differ(reference)
    fast.teacher.load_state_dict({k: v.to(torch.bfloat16) for k, v in reference.teacher.state_dict().items()})
    inputs = tiny_inputs(reference.config)
    unmasked = {k: v for k, v in inputs.items() if k != "mask"}
    with torch.no_grad():
        exact, rounded = reference.compute_targets(**unmasked), fast.compute_targets(**unmasked)
    assert rounded.dtype == torch.float32
    error = (rounded - exact).abs().mean() / exact.abs().mean()
    assert error < 0.03, float(error)
    with torch.no_grad():
        loss = fast(**inputs).loss
    assert loss.isfinite()


def test_bf16_teacher_from_pretrained_restarts_its_master_from_the_loaded_teacher(tmp_path):
    config = tiny_config("text", teacher_dtype="bfloat16")
    torch.manual_seed(0)
    saved = Data2VecForPretraining(config)
    make_teacher_differ(saved)
    saved.save_pretrained(tmp_path)
    loaded = Data2VecForPretraining.from_pretrained(tmp_path)
    assert next(loaded.teacher.parameters()).dtype == torch.bfloat16
    for a, b in zip(saved.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    loaded.ema_step(0.5)
    # the update started from the loaded teacher (not from the random initialisation the model was built with)
    for name, teacher in saved.teacher.named_parameters():
        if name in loaded.ema_fp32_state():
            expected = 0.5 * teacher.float() + 0.5 * dict(saved.student.named_parameters())[name]
            torch.testing.assert_close(loaded.ema_fp32_state()[name], expected)


def test_bf16_teacher_saves_and_resumes_its_master(tmp_path):
    config = tiny_config("text", teacher_dtype="bfloat16", backbone_kwargs=NO_DROPOUT)
    torch.manual_seed(0)
    full = make_trainer(tmp_path / "full", Data2VecForPretraining(config), save_strategy="steps", save_steps=2)
    full.train()
    torch.manual_seed(0)
    resumed = make_trainer(tmp_path / "resumed", Data2VecForPretraining(config))
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    for name, value in full.model.ema_fp32_state().items():
        torch.testing.assert_close(resumed.model.ema_fp32_state()[name], value, atol=0, rtol=0)


LEVER_ARGUMENTS = {
    "adamw_torch_fused": {"optim": "adamw_torch_fused"},
    "gradient_checkpointing": {"gradient_checkpointing": True},
    # the eager backend runs torch.compile's tracing (dynamo) in seconds; inductor is the GPU suite's
    "torch_compile": {"torch_compile": True, "torch_compile_backend": "eager"},
    "torch_compile_regions": {"torch_compile_regions": True, "torch_compile_backend": "eager"},
}


@pytest.mark.parametrize("lever", sorted(LEVER_ARGUMENTS))
def test_training_levers_give_the_reference_run(lever, tmp_path):
    torch.manual_seed(0)
    reference = make_trainer(tmp_path / "reference", optim="adamw_torch")
    reference.train()
    torch.manual_seed(0)
    fast = make_trainer(tmp_path / "fast", **{"optim": "adamw_torch", **LEVER_ARGUMENTS[lever]})
    fast.train()
    if lever == "gradient_checkpointing":
        assert any(getattr(m, "gradient_checkpointing", False) for m in fast.model.student.modules())
    if lever.startswith("torch_compile"):
        from accelerate.utils import has_compiled_regions, is_compiled_module

        regional = has_compiled_regions(fast.model_wrapped) and not is_compiled_module(fast.model_wrapped)
        assert regional == (lever == "torch_compile_regions") and fast.args.torch_compile
        torch._dynamo.reset()
    losses = [[e["loss"] for e in t.state.log_history if "loss" in e] for t in (reference, fast)]
    assert len(losses[0]) == 4
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), atol=1e-5, rtol=1e-5)
    for a, b in zip(reference.model.parameters(), fast.model.parameters()):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def _loss_and_grads(model, inputs):
    torch.manual_seed(0)  # the same dropout draws in both runs (audio keeps its feature projection's dropout)
    model.zero_grad(set_to_none=True)
    out = model(**inputs)
    out.loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize("modality", MODALITIES)
def test_fused_head_loss_gives_the_reference_loss_gradients_and_monitors(modality):
    reference, fused = reference_and_lever(modality, fused_head_loss=True)
    make_teacher_differ(reference)
    fused.load_state_dict(reference.state_dict())
    inputs = tiny_inputs(reference.config)  # text: padded rows, so unmasked padded positions are weighted out
    expected, expected_grads = _loss_and_grads(reference, inputs)
    out, grads = _loss_and_grads(fused, inputs)
    torch.testing.assert_close(out.loss, expected.loss, atol=1e-5, rtol=1e-5)  # fp32 sums in another order
    torch.testing.assert_close(out.target_var, expected.target_var, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.prediction_var, expected.prediction_var, atol=1e-5, rtol=1e-5)
    assert out.num_masked == expected.num_masked and out.predictions is None
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_fused_head_loss_is_refused_for_data2vec2():
    with pytest.raises(ValueError, match="fused_head_loss=True is a data2vec 1.0 lever"):
        tiny_config("text", mode="data2vec2", fused_head_loss=True)


def test_target_tap_is_registered_once_and_records_only_for_targets():
    import copy

    model = Data2VecForPretraining(tiny_config("text", backbone_kwargs=NO_DROPOUT))
    inputs = tiny_inputs(model.config)
    unmasked = {k: v for k, v in inputs.items() if k != "mask"}
    hooks = lambda m: sum(len(module._forward_hooks) for module in m.teacher.modules())  # noqa: E731
    before = hooks(model)
    first = model.compute_targets(**unmasked)
    assert hooks(model) == before == model.config.backbone_config.num_hidden_layers  # one per layer, top K kept
    model.teacher(unmasked["input_ids"])  # the teacher run outside compute_targets records nothing
    assert model._target_tap.collect() == [None] * before
    torch.testing.assert_close(model.compute_targets(**unmasked), first, atol=0, rtol=0)
    # a copy records into its own tap
    twin = copy.deepcopy(model)
    torch.testing.assert_close(twin.compute_targets(**unmasked), first, atol=0, rtol=0)
    assert twin._target_tap is not model._target_tap and model._target_tap.collect() == [None] * before
    # a changed K keeps the tap and averages the new top K; a changed target feature moves the tap
    model.config.average_top_k_layers = 1
    top = model.compute_targets(**unmasked)
    assert top.shape == first.shape and not torch.allclose(top, first) and hooks(model) == before
    model.config.target_feature = "block"
    assert model.compute_targets(**unmasked).shape == first.shape and hooks(model) == before
    assert all(len(layer._forward_hooks) == 1 for layer in encoder_layers(model.teacher))


@pytest.mark.parametrize("modality", MODALITIES)
def test_regional_compilation_gives_the_eager_loss(modality):
    """
    accelerate's regional compilation (`compile_regions`, `ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION=1` with
    `--torch_compile`) compiles the layers one by one into one shared code: with a tap on the top K layers only, the
    layers below (compiled first, without a hook) would hand their code to the tapped ones and no target be recorded.
    With a list shared by the layers, each layer recompiled (dynamo guards on its length): each module keeps its own.
    """
    from accelerate.utils import compile_regions

    torch._dynamo.reset()
    kwargs = dict(backbone_kwargs=audio_kwargs(modality), num_layers=4, average_top_k_layers=2)
    torch.manual_seed(0)
    model = Data2VecForPretraining(tiny_config(modality, **kwargs))
    make_teacher_differ(model)
    inputs = tiny_inputs(model.config)
    expected = model(**inputs).loss
    from measurement import counting_backend  # benchmarks/ is on sys.path (tests/fixtures.py)

    graphs = []
    regional = compile_regions(model, backend=counting_backend("eager", "default", graphs))
    assert any(isinstance(m, torch._dynamo.eval_frame.OptimizedModule) for m in regional.teacher.modules())
    torch.testing.assert_close(regional(**inputs).loss, expected, atol=1e-5, rtol=1e-4)
    before = len(graphs)
    regional(**inputs)
    assert len(graphs) == before  # nothing recompiles at the next step
    if modality == "text":  # embeddings and layer, student (with grad) and teacher, the head: not one per layer
        assert len(graphs) <= 6, len(graphs)
    torch._dynamo.reset()


def _graph_breaks_in_d2v_hf(explanation) -> list[str]:
    """The graph breaks whose innermost user frame is in the package's own code."""
    breaks = []
    for reason in explanation.break_reasons:
        frame = reason.user_stack[-1] if reason.user_stack else None
        if frame is not None and "/d2v_hf/" in frame.filename:
            breaks.append(f"{frame.filename}:{frame.lineno}: {reason.reason.splitlines()[0]}")
    return breaks


@pytest.mark.parametrize("modality", MODALITIES)
def test_compiled_step_has_no_graph_break_of_its_own_and_gives_the_eager_step(modality):
    """
    torch.compile traces the whole 1.0 step (student, teacher targets, head, loss) as one graph for text and images;
    audio keeps the breaks of Transformers' own audio code (LayerDrop's random branch, the feature encoder's
    `requires_grad` switch), none of d2v_hf's. The compiled step (aot_eager: the traced forward and backward graphs,
    run without code generation) gives the eager loss and gradients.
    """
    explain = torch._dynamo.explain
    torch.manual_seed(0)
    config = tiny_config(modality, fused_head_loss=True, backbone_kwargs=audio_kwargs(modality))
    model = Data2VecForPretraining(config).train()
    inputs = tiny_inputs(config)
    explanation = explain(model)(**inputs)
    assert _graph_breaks_in_d2v_hf(explanation) == []
    if modality != "audio":
        assert explanation.graph_count == 1, [r.reason for r in explanation.break_reasons]
    torch._dynamo.reset()
    expected, expected_grads = _loss_and_grads(model, inputs)
    compiled = torch.compile(model, backend="aot_eager")
    out, grads = _loss_and_grads(compiled, inputs)
    torch._dynamo.reset()
    torch.testing.assert_close(out.loss, expected.loss, atol=1e-5, rtol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name.removeprefix("_orig_mod.")], atol=1e-5, rtol=1e-4)


def test_the_unfused_step_breaks_the_graph_where_it_gathers_masked_positions():
    """The test above can fail: without the lever, the gather of masked positions is a break in d2v_hf's code."""
    model = Data2VecForPretraining(tiny_config("text", backbone_kwargs=NO_DROPOUT)).train()
    explanation = torch._dynamo.explain(model)(**tiny_inputs(model.config))
    torch._dynamo.reset()
    assert any("modeling_data2vec_pretraining.py" in b for b in _graph_breaks_in_d2v_hf(explanation))


def test_fused_head_loss_through_the_compiled_trainer_gives_the_reference_run(tmp_path):
    """The switch users set (`config_overrides fused_head_loss=True`) with `--torch_compile`: the reference losses."""
    torch.manual_seed(0)
    reference = make_trainer(tmp_path / "reference")
    reference.train()
    torch.manual_seed(0)
    model = Data2VecForPretraining(tiny_config("text", backbone_kwargs=NO_DROPOUT, fused_head_loss=True))
    fast = make_trainer(tmp_path / "fast", model, **LEVER_ARGUMENTS["torch_compile"])
    fast.train()
    torch._dynamo.reset()  # no compiled entries left for later tests
    losses = [[e["loss"] for e in t.state.log_history if "loss" in e] for t in (reference, fast)]
    assert len(losses[1]) == 4
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), atol=1e-5, rtol=1e-5)
    monitors = [[e["target_var"] for e in t.state.log_history if "target_var" in e] for t in (reference, fast)]
    assert len(monitors[1]) == 4
    torch.testing.assert_close(torch.tensor(monitors[1]), torch.tensor(monitors[0]), atol=1e-4, rtol=1e-4)


def test_full_text_blocks_reach_attention_without_a_mask(monkeypatch):
    """Packed blocks (no padding): no mask reaches SDPA (flash-eligible on a GPU); a padded row does give one."""
    import torch.nn.functional as F

    seen, sdpa = [], F.scaled_dot_product_attention

    def spy(*args, attn_mask=None, **kwargs):
        seen.append(attn_mask)
        return sdpa(*args, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    model = Data2VecForPretraining(tiny_config("text", backbone_kwargs=NO_DROPOUT))
    assert model.config.backbone_config._attn_implementation == "sdpa"
    model(**tiny_inputs(model.config, pad=False))
    layers = model.config.backbone_config.num_hidden_layers
    assert len(seen) == 2 * layers and all(mask is None for mask in seen)  # student and teacher
    seen.clear()
    model(**tiny_inputs(model.config, pad=True))
    assert seen and all(mask is not None for mask in seen)
