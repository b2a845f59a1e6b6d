"""The study's arguments (examples/study/study_config.py): presets, bad values named by their flag, the settings that
change one arm's recipe or every arm's backbone (and key the runs that a resumed study keeps), and the longer runs a
report may link."""

import json
from pathlib import Path

import pytest

from . import fixtures  # noqa: F401  (puts examples/study on sys.path)
from study import _key  # noqa: E402
from study_arms import batch_size, data2vec_config  # noqa: E402
from study_config import StudyArguments  # noqa: E402
from study_report import _setup  # noqa: E402


def _setup_text(args: StudyArguments) -> str:
    """The report's setup lines for a text run of `args`, from the config run_study saves (no run needed)."""
    results = {"config": {**args.to_dict(), "seed_list": args.seed_list}, "finished": "now", "wall_time_s": 60.0}
    results.update(environment={"device": "CPU", "torch": "t", "transformers": "t"}, modalities={"text": {}})
    results["finetune"] = {}
    return "\n".join(_setup(results))


def test_study_arguments_presets_and_bad_values():
    quick = StudyArguments(mode="quick")
    assert quick.model_size == "tiny" and len(quick.seed_list) >= 3
    assert StudyArguments(mode="full").model_size == "base"
    assert StudyArguments(mode="standard").finetune_task_list == [
        "sst2",
        "stsb",
        "xquad",
        "fashion_mnist",
        "spoken_digits",
    ]
    assert StudyArguments(mode="quick", text_steps=7).text_steps == 7
    assert StudyArguments(arms="data2vec,mae,random").arms_of("vision") == ["data2vec", "mae", "random"]
    assert StudyArguments(mode="full", dry_run=True).vision_batch_size == 4
    bad = [
        ("mode", "huge", "--mode"),
        ("arms", "data2vec,bert", "--arms"),
        ("modalities", "text,video", "--modalities"),
        ("finetune_tasks", "mnli", "--finetune_tasks"),
        ("seeds", "0,x", "--seeds"),
        ("probe_points", 0, "--probe_points"),
        ("vision_learning_rates", "1e-3,-1", "--vision_learning_rates"),
        ("longer_budget_results", "missing/study_results.json", "--longer_budget_results missing"),
        ("text_corpus", "wiki", "--text_corpus 'wiki'"),
        ("text_mask_strategy", "whole_word", "--text_mask_strategy 'whole_word'"),
        ("seeds", "1,1", "--seeds '1,1' repeats a seed"),
        ("model_size", "small", "--model_size 'small'"),
        ("corpus_lines", -5, "--corpus_lines -5; expected 0"),
        ("finetune_batch_size", 0, "--finetune_batch_size 0"),
        ("torch_threads", -1, "--torch_threads -1"),
        ("audio_clip_seconds", 0.0, "--audio_clip_seconds 0.0"),
        ("backbone_overrides", "hidden_size", "--backbone_overrides item 'hidden_size' is not of the form"),
        ("backbone_overrides", "hiden_size=8", "'hiden_size': the text backbone \\(Data2VecTextConfig\\) has no"),
        ("data2vec_overrides", "ema_decay", "--data2vec_overrides 'ema_decay': .*not of the form key=value"),
        ("data2vec_overrides", "ema_decai=0.9", "--data2vec_overrides 'ema_decai=0.9': unknown recipe field"),
        ("data2vec_overrides", "ema_decay=1.5", "--data2vec_overrides 'ema_decay=1.5': ema_decay=1.5 must be in"),
        ("data2vec_overrides", "mode=data2vec2", "--data2vec_overrides 'mode=data2vec2': .*the mode is the arm's"),
        ("data2vec_overrides", "backbone.hidden_size=8", "--data2vec_overrides .*go in --backbone_overrides"),
        ("data2vec2_overrides", "clone_batch=0", "--data2vec2_overrides 'clone_batch=0': clone_batch=0 must be an"),
        ("data2vec2_overrides", "mode=data2vec", "--data2vec2_overrides 'mode=data2vec': .*the mode is the arm's"),
        ("plan_tflops", 0.0, "--plan_tflops 0.0: expected a sustained throughput above 0"),
    ]
    for name, value, message in bad:
        with pytest.raises(ValueError, match=message):
            StudyArguments(**{name: value})
    with pytest.raises(ValueError, match="hub_org"):
        StudyArguments(push_to_hub=True)
    with pytest.raises(ValueError, match="--plan_only and --dry_run: choose one"):
        StudyArguments(plan_only=True, dry_run=True)


def test_text_mask_strategy_changes_only_the_data2vec_text_masks():
    """--text_mask_strategy bert gives data2vec 1.0 the paper's main-row masks; 2.0 keeps its own, span is the key's
    default (the runs saved before the flag, all with spans, still resume)."""
    bert, span = StudyArguments(text_mask_strategy="bert"), StudyArguments()
    assert span.text_mask_strategy == "span"
    config = data2vec_config(bert, "text", "data2vec")
    assert (config.text_mask_strategy, config.mask_prob) == ("bert", 0.15)
    assert (config.mask_random_token_prob, config.mask_leave_unmasked_prob) == (0.1, 0.1)
    released = data2vec_config(span, "text", "data2vec")
    assert (released.text_mask_strategy, released.mask_prob, released.mask_length) == ("span", 0.35, 4)
    assert data2vec_config(bert, "text", "data2vec2").to_dict() == data2vec_config(span, "text", "data2vec2").to_dict()
    assert "text_mask_strategy" not in _key(span, "text") and _key(bert, "text")["text_mask_strategy"] == "bert"
    for args, said in ((bert, True), (span, False)):  # the report says which masks data2vec 1.0 trained with
        assert ("the BERT way" in _setup_text(args)) == said


def test_backbone_overrides_widen_every_arm_and_key_the_runs():
    """--backbone_overrides sets the backbone of every arm (data2vec 1.0 / 2.0, and the baselines, which read the
    data2vec 1.0 config's backbone); a resumed study keeps no run of another width, and the report names the width."""
    wide = StudyArguments(modalities="text", backbone_overrides="hidden_size=128,intermediate_size=512")
    assert wide.backbone_override_items == ["hidden_size=128", "intermediate_size=512"]
    for mode in ("data2vec", "data2vec2"):
        backbone = data2vec_config(wide, "text", mode).backbone_config
        assert (backbone.hidden_size, backbone.intermediate_size, backbone.num_hidden_layers) == (128, 512, 4)
    assert data2vec_config(StudyArguments(), "text", "data2vec").backbone_config.hidden_size == 64
    assert _key(wide, "text")["backbone_overrides"] != _key(StudyArguments(), "text").get("backbone_overrides")
    assert "tiny (hidden_size=128,intermediate_size=512) size" in _setup_text(wide)


def test_data2vec_overrides_change_only_the_data2vec_1_recipe_and_key_the_runs():
    """--data2vec_overrides sets fields of data2vec 1.0's recipe (here data2vec 2.0's teacher decays) and no other
    arm's; a resumed study keeps no run of another recipe, and the report says the recipe was changed."""
    changed = StudyArguments(modalities="text", data2vec_overrides="ema_decay=0.9999,ema_end_decay=0.99999")
    released = StudyArguments(modalities="text")
    config = data2vec_config(changed, "text", "data2vec")
    assert (config.ema_decay, config.ema_end_decay) == (0.9999, 0.99999)
    assert data2vec_config(released, "text", "data2vec").ema_decay == 0.999
    two = [data2vec_config(args, "text", "data2vec2").to_dict() for args in (changed, released)]
    assert two[0] == two[1]
    # MLM and random init read the data2vec 1.0 config's backbone, which the recipe overrides leave alone
    assert data2vec_config(changed, "text", "data2vec").backbone_config.to_dict() == (
        data2vec_config(released, "text", "data2vec").backbone_config.to_dict()
    )
    assert "data2vec_overrides" not in _key(released, "text")
    assert _key(changed, "text")["data2vec_overrides"] == "ema_decay=0.9999,ema_end_decay=0.99999"
    for args, said in ((changed, True), (released, False)):
        assert ("changed from the released one: `ema_decay=0.9999" in _setup_text(args)) == said


def test_data2vec2_overrides_change_only_the_data2vec_2_recipe_and_one_copy_takes_the_others_batch():
    """--data2vec2_overrides sets fields of data2vec 2.0's recipe and no other arm's; with one masked copy of each
    sample (clone_batch=1) it takes the other arms' samples per step, with several a quarter of them."""
    one_copy = StudyArguments(modalities="text", data2vec2_overrides="clone_batch=1")
    released = StudyArguments(modalities="text")
    assert data2vec_config(one_copy, "text", "data2vec2").clone_batch == 1
    assert data2vec_config(released, "text", "data2vec2").clone_batch == 8
    one = [data2vec_config(args, "text", "data2vec").to_dict() for args in (one_copy, released)]
    assert one[0] == one[1]
    assert [batch_size(one_copy, "text", arm) for arm in ("data2vec", "data2vec2")] == [32, 32]
    assert [batch_size(released, "text", arm) for arm in ("data2vec", "data2vec2")] == [32, 8]
    two_copies = StudyArguments(modalities="text", data2vec2_overrides="clone_batch=2")
    assert batch_size(two_copies, "text", "data2vec2") == 8
    assert "data2vec2_overrides" not in _key(released, "text") and "data2vec2_overrides" in _key(one_copy, "text")
    for args, said in ((one_copy, True), (released, False)):
        setup = _setup_text(args)
        assert ("data2vec 2.0's recipe, changed from the released one: `clone_batch=1`" in setup) == said
        assert ("data2vec 2.0 takes the same samples per step (one masked copy of each)" in setup) == said
        assert ("data2vec 2.0 takes a quarter of the samples per step" in setup) != said


def test_longer_runs_must_be_this_study_at_a_larger_budget(tmp_path):
    def saved_run(name, **changes):
        args = StudyArguments(mode="quick", modalities="text")
        config = {**args.to_dict(), "seed_list": args.seed_list, **changes}  # as run_study saves it
        path = tmp_path / name / "study_results.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"config": config, "command": "python run_study.py", "modalities": {"text": {}}}))
        return str(path)

    longer = saved_run("longer", text_steps=3200, probe_points=8)
    assert StudyArguments(mode="quick", longer_budget_results=longer).longer_budget_result_list == [longer]
    old = saved_run("old", text_steps=3200)
    config = json.loads(Path(old).read_text())
    del config["config"]["text_corpus"]  # saved before the field existed: it ran the preset's corpus
    del config["config"]["text_mask_strategy"]  # and the preset's (released) masks
    Path(old).write_text(json.dumps(config))
    StudyArguments(mode="quick", longer_budget_results=f"{longer}, {old}")
    (tmp_path / "notes.json").write_text("[]")
    bad = [
        (saved_run("other_corpus", text_steps=3200, corpus_lines=None), "it ran text with corpus_lines=None"),
        (saved_run("other_seeds", text_steps=3200, seed_list=[0, 1]), r"seed_list=\[0, 1\]"),
        (saved_run("bert", text_steps=3200, text_mask_strategy="bert"), "text_mask_strategy='bert', this run"),
        (saved_run("shorter", text_steps=400), "its text_steps=400 is not larger than this run's 400"),
        (str(tmp_path / "notes.json"), "notes.json: not the study_results.json of a study run"),
        (f"{longer},{tmp_path / 'missing.json'}", "missing.json: no such file"),
    ]
    for paths, message in bad:
        with pytest.raises(ValueError, match=message):
            StudyArguments(mode="quick", longer_budget_results=paths)
    with pytest.raises(ValueError, match="it ran none of --modalities 'vision'"):
        StudyArguments(mode="quick", modalities="vision", longer_budget_results=longer)
