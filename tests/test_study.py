"""The study (examples/study/run_study.py): its data, its arms' building blocks, resumable parallel runs, the layer
probes, and a slice of it end to end on real data (every arm of every modality, a few steps). Its arguments are tested
in test_study_arguments.py, its decision rule and report in test_study_report.py."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from d2v_hf.data import espeak_ng_available

from .fixtures import (  # (fixtures puts examples/study on sys.path)
    build_tokenizer,
    tiny_text_study_arguments,
    vision_study_results,
)
from layer_probes import layer_report, layer_scores  # noqa: E402
from study import PartialResults, run_study  # noqa: E402
from study_arms import Wav2Vec2PretrainingCollator, _mae, _mae_backbone, data2vec_config  # noqa: E402
from study_config import ARMS, StudyArguments  # noqa: E402
from study_data import prepare_data, read_text_corpus  # noqa: E402
from study_report import study_report_markdown, write_study_report  # noqa: E402
from study_utils import run_jobs  # noqa: E402
from text_probe_reference import main as text_probe_reference  # noqa: E402


def test_study_refuses_missing_data_before_writing(tmp_path):
    args = StudyArguments(data_dir=str(tmp_path), modalities="vision", output_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="fashion-mnist"):
        run_study(args)
    assert not (tmp_path / "out").exists()


def test_a_stopped_corpus_preparation_leaves_no_record_for_the_next_run(tmp_path, monkeypatch):
    import gzip

    import study_data

    (tmp_path / "data" / "corpus").mkdir(parents=True)
    with gzip.open(tmp_path / "data" / "corpus" / "gcide_en.txt.gz", "wt", encoding="utf-8") as f:
        f.write("".join(f"word{i} means a thing number {i} of the list\n" for i in range(50)))
    out = tmp_path / "out"
    args = StudyArguments(data_dir=str(tmp_path / "data"), output_dir=str(out), modalities="text", corpus_lines=20,
                          tokenizer_vocab_size=300)  # fmt: skip
    prepare_data(args)

    def stopped(*args, **kwargs):
        raise RuntimeError("stopped")

    # a run with other settings stops after writing its corpus, before its tokenizer
    monkeypatch.setattr(study_data, "train_bpe_tokenizer", stopped)
    with pytest.raises(RuntimeError, match="stopped"):
        prepare_data(dataclasses.replace(args, corpus_lines=10))
    assert not (out / "corpus_settings.json").exists()
    monkeypatch.undo()
    # the next run of the first settings remakes what they need instead of trusting the other run's corpus
    again = prepare_data(args)
    assert again["corpus_info"]["lines"] == 20 and len((out / "corpus.txt").read_text().splitlines()) == 20
    assert not [path.name for path in out.iterdir() if path.name.startswith(".incomplete-")]


@pytest.mark.real_data
def test_glue_text_corpus_reads_the_training_sentences_and_remakes_the_tokenizer(shared_data, tmp_path):
    lines = read_text_corpus(shared_data, "glue")
    assert len(lines) == 67349 + 2 * 5749  # every SST-2 sentence, both STS-B sentences of every pair
    assert lines[0] == "hide new secretions from the parental units" and "A plane is taking off." in lines
    assert not any(line in ("0", "1") for line in lines[:1000])  # the labels stay out
    args = StudyArguments(data_dir=str(shared_data), output_dir=str(tmp_path), modalities="text", corpus_lines=300,
                          tokenizer_vocab_size=400, text_corpus="glue")  # fmt: skip
    first = prepare_data(args)
    assert first["corpus_info"]["lines"] == 300 and "SST-2" in first["corpus_info"]["source"]
    # a resumed study with another corpus remakes the corpus and the tokenizer
    args = dataclasses.replace(args, text_corpus="gcide")
    second = prepare_data(args)
    assert second["corpus_info"]["source"].startswith("`gcide_en.txt.gz`")
    assert (tmp_path / "corpus.txt").read_text().splitlines()[0] != lines[0]


@pytest.mark.real_data
def test_plan_only_counts_each_arms_steps_and_trains_nothing(shared_data, tmp_path, capsys):
    """--plan_only prints every arm's steps and FLOPs at equal compute and the hours at --plan_tflops, trains no arm,
    and leaves the plan in partial_results.json for the run of the same settings."""
    from run_study import main

    out = tmp_path / "out"
    flags = ["--data_dir", shared_data, "--output_dir", out, "--modalities", "text", "--arms", "data2vec,mlm,random"]
    flags += ["--corpus_lines", "300", "--tokenizer_vocab_size", "400", "--max_seq_length", "32", "--text_steps", "40"]
    plan = main([*flags, "--seeds", "0,1", "--plan_only", "--plan_tflops", "0.001"])["plan"]["text"]
    d2v, mlm = plan["arms"]["data2vec"], plan["arms"]["mlm"]
    assert set(plan["arms"]) == {"data2vec", "mlm"} and d2v["steps"] == 40
    assert d2v["flops_per_step"] > mlm["flops_per_step"] and mlm["steps"] > 40  # the teacher's forward costs steps
    assert abs(mlm["total_flops"] - plan["budget_flops"]) <= mlm["flops_per_step"] / 2
    printed = capsys.readouterr().out
    assert "plan text data2vec (d2v_hf.Data2VecForPretraining): 40 steps of 32 samples" in printed
    total = 2 * (d2v["total_flops"] + mlm["total_flops"])
    hours = total / 1e9 / 3600
    assert f"{total / 1e15:.3g} PFLOPs of pretraining over 2 seed(s), {hours:.3g} hours at 0.001" in printed
    assert not (out / "pretrain").exists() and not (out / "random").exists()
    saved = json.loads((out / "partial_results.json").read_text())["plan"]["text"]
    assert saved["budget_flops"] == plan["budget_flops"]


@pytest.mark.real_data
def test_text_probe_reference_points(shared_data, tmp_path):
    out = text_probe_reference(["--data_dir", shared_data, "--docs_dir", tmp_path, "--seeds", "0"])
    report = out.read_text()
    rows = {line.split(" | ")[0][2:]: float(line.split(" | ")[1].split(" ")[0]) for line in report.splitlines()
            if line.startswith("| words")}  # fmt: skip
    assert set(rows) == {"words", "words, projected to 64 dimensions"}
    # the words alone are far above chance; squeezed to the tiny width, close to a random backbone's probe
    assert rows["words"] > 65 and rows["words, projected to 64 dimensions"] < rows["words"] - 5
    assert "python examples/study/text_probe_reference.py --data_dir" in report


def test_layer_probes_name_a_missing_study_run(tmp_path):
    args = StudyArguments(data_dir=str(tmp_path), modalities="text", output_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="holds no finished text data2vec pretraining run of seed 0"):
        layer_scores(args, {"tokenizer": str(tmp_path / "tokenizer")})


def test_study_without_espeak_ng_names_the_tool(tmp_path, monkeypatch):
    import study_data

    (tmp_path / "speech").mkdir()
    monkeypatch.setattr(study_data, "espeak_ng_available", lambda executable="espeak-ng": False)
    args = StudyArguments(data_dir=str(tmp_path), modalities="audio", output_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="espeak-ng, which is not installed"):
        run_study(args)
    assert not (tmp_path / "out").exists()


def test_mae_encoder_exports_as_the_vit_it_pretrains():
    """The MAE arm's backbone is `ViTMAEForPreTraining`'s encoder: as a `ViTModel` it gives the same outputs."""
    backbone = data2vec_config(StudyArguments(), "vision", "data2vec").backbone_config
    torch.manual_seed(0)
    mae = _mae(backbone)
    mae.config.mask_ratio = 0.0  # nothing masked, patches kept in order: the encoder sees the whole image
    vit = _mae_backbone(mae, backbone).eval()
    mae.eval()
    pixels = torch.randn(2, backbone.num_channels, backbone.image_size, backbone.image_size)
    num_patches = (backbone.image_size // backbone.patch_size) ** 2
    noise = torch.arange(num_patches, dtype=torch.float).expand(2, -1)
    with torch.no_grad():
        expected = mae.vit(pixels, noise=noise).last_hidden_state
        got = vit(pixels).last_hidden_state
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_saved_image_processor_reads_images_as_the_study_does(tmp_path):
    """
    The processor saved beside each vision backbone gives a pipeline the study's own eval pixels, for an image of
    another size too (resized bicubic, ImageNet statistics); with the processor's default (bilinear) it would not.
    """
    from PIL import Image
    from transformers import AutoFeatureExtractor, AutoImageProcessor

    from d2v_hf.data import IMAGENET_MEAN, IMAGENET_STD, image_transform

    from study_arms import IMAGE_SIZE, save_preprocessor

    save_preprocessor("vision", tmp_path / "vision")
    save_preprocessor("audio", tmp_path / "audio")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (45, 45), dtype=np.uint8)).convert("RGB")
    expected = image_transform(IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD)(image)
    processor = AutoImageProcessor.from_pretrained(tmp_path / "vision")
    got = processor(image, return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    bilinear = processor(image, resample=Image.Resampling.BILINEAR, return_tensors="pt")["pixel_values"][0]
    assert (bilinear - expected).abs().max() > 0.05  # the comparison can tell the two resamplings apart
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path / "audio")
    assert (extractor.sampling_rate, extractor.do_normalize, extractor.return_attention_mask) == (16000, True, True)


def test_wav2vec2_collator_draws_negatives_among_masked_frames_of_the_same_clip():
    args = StudyArguments()
    d2v = data2vec_config(args, "audio", "data2vec")
    from study_arms import _wav2vec2

    model = _wav2vec2(d2v.backbone_config)
    collator = Wav2Vec2PretrainingCollator(d2v, model.config, max_samples=16000, seed=0)
    rng = np.random.default_rng(0)
    batch = collator([{"input_values": rng.normal(size=20000).astype(np.float32)} for _ in range(3)])
    mask, negatives = batch["mask_time_indices"], batch["sampled_negative_indices"]
    frames = mask.shape[1]
    assert negatives.shape == (3, frames, model.config.num_negatives)
    for clip in range(3):
        for frame in torch.nonzero(mask[clip]).flatten().tolist():
            drawn = negatives[clip, frame]
            assert ((drawn // frames) == clip).all()  # flat indices into (batch x frames): the same clip
            assert mask[clip, drawn % frames].all()  # and masked frames only
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    # numpy's global generator is left as it was
    state = np.random.get_state()[1].copy()
    collator([{"input_values": rng.normal(size=20000).astype(np.float32)} for _ in range(3)])
    assert (np.random.get_state()[1] == state).all()


def test_step_flops_count_the_teacher():
    from torch.utils.flop_counter import FlopCounterMode

    from d2v_hf import Data2VecForPretraining, data_collator_for

    from study_arms import count_step_flops

    config = data2vec_config(StudyArguments(), "vision", "data2vec")
    model = Data2VecForPretraining(config)
    batch = data_collator_for(config)([{"pixel_values": torch.randn(3, 28, 28)} for _ in range(4)])
    with FlopCounterMode(display=False) as teacher, torch.no_grad():
        model.teacher(pixel_values=batch["pixel_values"])
    step = count_step_flops(model, batch)
    # the student's forward and backward cost about 3 teacher forwards; the step counts a 4th, the teacher's own
    assert 3.7 * teacher.get_total_flops() < step < 4.5 * teacher.get_total_flops()


def test_teacher_schedule_is_the_share_of_its_initialisation_the_teacher_keeps(tmp_path):
    from d2v_hf import Data2VecForPretraining

    from study_arms import _run_config, teacher_schedule

    tokenizer = build_tokenizer(["a fine film", "a dull and tedious one", "not bad at all"] * 4, vocab_size=300)
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    args, steps = StudyArguments(mode="quick", modalities="text"), 40
    schedule = teacher_schedule(args, "text", "data2vec", steps, {"tokenizer": str(tmp_path / "tokenizer")})
    assert (schedule["ema_decay"], schedule["ema_end_decay"], schedule["ema_anneal_end_step"]) == (0.999, 0.9999, 40)
    model = Data2VecForPretraining(_run_config(args, "text", "data2vec", tokenizer, steps))
    layer = "encoder.layer.0.attention.self.query.weight"  # averaged (the embeddings are copied, not averaged)
    initial = dict(model.teacher.named_parameters())[layer].detach().clone()
    with torch.no_grad():
        for parameter in model.student.parameters():
            parameter.zero_()  # then each update keeps exactly `decay` of the teacher
    for _ in range(steps):
        model.ema_step()
    kept = dict(model.teacher.named_parameters())[layer] / initial
    torch.testing.assert_close(kept, torch.full_like(kept, schedule["init_weight"]), rtol=1e-5, atol=1e-5)
    assert 0.97 < schedule["init_weight"] < 0.99  # a 40-update run barely moves its teacher


@pytest.mark.parametrize("workers", [1, 2])
def test_run_jobs_queues_the_jobs_that_a_finished_job_returns(workers):
    """How the study probes a run while the next trains: `on_done` returns the jobs that needed this result."""
    done = []

    def on_done(key, result):
        done.append((key, result))
        return [(f"{key} then", "json:dumps", {"obj": [key]})] if not key.endswith("then") else None

    run_jobs([("a", "json:dumps", {"obj": 1}), ("b", "json:dumps", {"obj": 2})], workers, None, on_done)
    assert sorted(done) == [("a", "1"), ("a then", '["a"]'), ("b", "2"), ("b then", '["b"]')]


def _running(pid: int) -> bool:
    try:  # a process that has ended but is not reaped yet (a zombie) is not running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads process states from /proc")
def test_a_killed_study_takes_its_workers_with_it(tmp_path):
    """A worker in the middle of a job ends when the study's process is killed, instead of training on, orphaned."""
    import study_utils

    pids = tmp_path / "pids"
    job = (
        "job",
        "subprocess:run",
        {"args": ["sh", "-c", f"echo $PPID $$ > {pids}.tmp && mv {pids}.tmp {pids}; exec sleep 120"]},
    )
    folder = str(Path(study_utils.__file__).parent)
    script = (
        f"import sys; sys.path.insert(0, {folder!r}); import study_utils as s; s.run_jobs([{job!r}], 2, None, print)"
    )
    study = subprocess.Popen([sys.executable, "-c", script])
    worker = sleeper = None
    try:
        deadline = time.time() + 120
        while not pids.is_file() and time.time() < deadline and study.poll() is None:
            time.sleep(0.2)
        assert pids.is_file(), "the job never started"
        worker, sleeper = map(int, pids.read_text().split())
        assert _running(worker)
        study.kill()
        study.wait()
        deadline = time.time() + 30
        while _running(worker) and time.time() < deadline:
            time.sleep(0.2)
        assert not _running(worker), "the worker trains on after its study was killed"
    finally:
        study.kill()
        for pid in (worker, sleeper):
            if pid and _running(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_stopped_study_has_saved_its_wall_clock_while_no_run_had_finished(tmp_path):
    """A study killed before any run finished still counts that time when it resumes (the clock saves it)."""
    args = StudyArguments(mode="quick", output_dir=str(tmp_path))
    started = time.time()
    partial = PartialResults(args)
    with partial.clock(every_s=0.05):
        time.sleep(0.5)
        saved = json.loads(partial.path.read_text())["elapsed_s"]  # what a kill here would leave
        assert 0.05 <= saved <= time.time() - started
    assert PartialResults(args).elapsed_before >= saved, "a resumed study starts its clock where the last one was"
    last_write = partial.path.stat().st_mtime_ns
    time.sleep(0.2)
    assert partial.path.stat().st_mtime_ns == last_write, "the clock stops with its block"


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.skipif(not espeak_ng_available(), reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_study_slice_every_arm(shared_data, tmp_path):
    """Every arm of every modality, a few steps: losses fall, FLOPs count the teacher, the baselines are
    Transformers' classes, the report is the JSON's."""
    folders = {name: str(tmp_path / name) for name in ("out", "docs", "cards")}
    args = StudyArguments(
        mode="quick",
        data_dir=str(shared_data),
        output_dir=folders["out"],
        docs_dir=folders["docs"],
        model_cards_dir=folders["cards"],
        seeds="0,1,2",
        probe_points=2,
        corpus_lines=1500,
        tokenizer_vocab_size=1000,
        text_steps=24,
        text_batch_size=16,
        vision_steps=24,
        vision_batch_size=16,
        audio_steps=24,
        audio_batch_size=8,
        audio_max_seconds=1.0,
        probe_train_samples=200,
        probe_eval_samples=200,
        digit_voices=8,
        finetune_tasks="fashion_mnist",
        finetune_steps=4,
        finetune_train_samples=64,
        finetune_eval_samples=64,
        vision_learning_rates="1e-3",
        workers=2,
    )
    results = run_study(args, command="pytest slice")

    classes = {"mlm": "Data2VecTextForMaskedLM", "mae": "ViTMAEForPreTraining", "wav2vec2": "Wav2Vec2ForPreTraining"}
    for modality, entry in results["modalities"].items():
        plan = entry["plan"]["arms"]
        assert set(entry["arms"]) == set(ARMS[modality])
        budget = entry["plan"]["budget_flops"]
        for arm, arm_plan in plan.items():
            # equal compute: every arm's steps spend the budget to within one step
            assert abs(arm_plan["total_flops"] - budget) <= arm_plan["flops_per_step"] / 2 + 1, (modality, arm)
            for seed, seed_entry in entry["arms"][arm]["seeds"].items():
                run = seed_entry["pretraining"]
                losses = [loss for _, loss in run["loss_curve"]]
                head, tail = np.mean(losses[:2]), np.mean(losses[-2:])
                assert tail < head, (modality, arm, seed, losses)
                assert run["class"] == classes.get(arm, "Data2VecForPretraining"), (modality, arm)
                assert len(seed_entry["probes"]) == 2  # the probe points
            if arm in ("data2vec", "data2vec2"):  # a few updates: the teacher is still almost its initialisation
                teacher = arm_plan["teacher"]
                assert 0.98 < teacher["init_weight"] < 1.0 and teacher["updates"] == arm_plan["steps"], teacher
        # (that a data2vec step's count includes the teacher's forward: test_step_flops_count_the_teacher)
    assert set(results["finetune"]["fashion_mnist"]) == set(ARMS["vision"])

    # the report is the JSON's: regenerated from an edited JSON, it shows the edit
    saved = json.loads((tmp_path / "docs" / "study_results.json").read_text())
    report = (tmp_path / "docs" / "study.md").read_text()
    assert report == study_report_markdown(saved, {m: f"img/study_{m}_probes.png" for m in saved["modalities"]})
    assert "pytest slice" in report and "## Conclusions" in report
    assert report.count("Share of the teacher's averaged weights still at their random initialisation") == 3
    for modality in ("text", "vision", "audio"):
        assert (tmp_path / "docs" / "img" / f"study_{modality}_probes.png").is_file()
    for seed in saved["modalities"]["vision"]["arms"]["mae"]["seeds"].values():
        for point in seed["probes"].values():
            point["fashion_mnist"] = 99.0
    write_study_report(saved, tmp_path / "edited")
    assert (
        "99.0 ± 0.0" not in report and "| MAE | 99.0 ± 0.0 (n=3) |" in (tmp_path / "edited" / "study.md").read_text()
    )
    cards = sorted(p.parent.name for p in (tmp_path / "cards").glob("*/README.md"))
    assert len(cards) == sum(len(arms) for arms in ARMS.values())
    assert "mae-vision-tiny-study" in cards

    # a second call finds every run done and only rewrites the report
    again = run_study(args, command="pytest slice")
    assert again["modalities"] == json.loads(json.dumps(results["modalities"]))

    # the layer probes (examples/study/layer_probes.py) read the same final checkpoints: their last layer gives the
    # study's own probe scores, and every layer from the embeddings up is scored
    text_args = dataclasses.replace(args, modalities="text", seeds="0")
    scores, along = layer_scores(text_args, prepare_data(text_args))
    assert set(scores) == set(ARMS["text"])
    text = results["modalities"]["text"]["arms"]
    for arm, seeds in scores.items():
        by_layer = seeds["0"]
        assert sorted(by_layer) == [0, 1, 2, 3, 4]
        probes = text[arm]["seeds"]["0"]["probes"]
        final = probes[str(max(map(int, probes)))]
        for probe, value in by_layer[4].items():
            if probe != "token_identity":  # the layer probes' own
                # the same features read through another code path: equal up to float rounding (scores in points;
                # a ridge fit on them differed by 1.2e-6 with transformers 5.24)
                assert value == pytest.approx(final[probe], abs=1e-4), (arm, probe)
        assert all(0 <= by_layer[layer]["token_identity"] <= 100 for layer in by_layer)
    assert {arm: sorted(seeds["0"]) for arm, seeds in along.items()} == {
        arm: [0] if arm == "random" else list(range(1, args.probe_points + 1)) for arm in ARMS["text"]
    }
    for arm, seeds in along.items():  # the study's own probe beside token identity, at every point of the run
        assert all(0 <= point["token_identity"] <= 100 for point in seeds["0"].values())
        assert seeds["0"][max(seeds["0"])]["sst2"] == pytest.approx(scores[arm]["0"][4]["sst2"], abs=1e-6)
    markdown = layer_report(scores, "pytest layers", along)
    assert "pytest layers" in markdown and markdown.count("| 4 |") == 5  # one table per text probe, token identity
    assert "## Token identity of the last layer along each run" in markdown


@pytest.mark.real_data
@pytest.mark.slow
def test_study_fine_tunes_the_text_tasks_of_the_standard_and_full_modes(shared_data, tmp_path):
    """SST-2, STS-B and XQuAD (with its zero-shot languages) through the study, its report and its cards, at a few
    steps: the quick mode leaves them out, so nothing else runs them before a 3-hour or GPU run would."""
    args = tiny_text_study_arguments(
        shared_data,
        tmp_path,
        arms="data2vec,random",
        probe_points=1,
        text_steps=2,
        probe_train_samples=40,
        probe_eval_samples=40,
        finetune_tasks="sst2,stsb,xquad",
        finetune_steps=2,
        finetune_batch_size=4,
        finetune_train_samples=16,
        finetune_eval_samples=8,
        text_learning_rates="1e-4,1e-3",
        qa_max_seq_length=64,
        qa_doc_stride=16,
        workers=2,
    )
    results = run_study(args, command="pytest text tasks")
    for task in ("sst2", "stsb", "xquad"):
        for arm in ("data2vec", "random"):
            entry = results["finetune"][task][arm]
            assert set(entry["sweep"]) == {"0.0001", "0.001"} and entry["chosen_learning_rate"] in (1e-4, 1e-3)
            assert set(entry["seeds"]) == {"0"}, (task, arm)
    xquad = results["finetune"]["xquad"]["data2vec"]["seeds"]["0"]["scores"]
    assert {"score", "zero_shot_f1", "de_f1", "zh_f1"} <= set(xquad)
    report = (tmp_path / "docs" / "study.md").read_text()
    assert "zero-shot F1 (11 languages)" in report and report.count("### Fine-tuning") == 3
    card = (tmp_path / "cards" / "data2vec-text-tiny-study" / "README.md").read_text()
    assert "question-answering" in card and "XQuAD" in card


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.skipif(not espeak_ng_available(), reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_study_dry_run_builds_every_arm_at_full_size(shared_data, tmp_path):
    args = StudyArguments(
        mode="full",
        dry_run=True,
        data_dir=str(shared_data),
        output_dir=str(tmp_path / "out"),
        corpus_lines=300,
        max_seq_length=32,
        digit_voices=2,
    )
    results = run_study(args)["dry_run"]
    assert set(results) == {f"{m}|{a}" for m in ("text", "vision", "audio") for a in ARMS[m] if a != "random"}
    for key, record in results.items():
        assert record["steps"] == 2 and record["final_loss"] is not None, key
        folder = record["snapshots"]["2"]
        config = json.loads(open(f"{folder}/config.json").read())
        assert config["hidden_size"] == 768 and config["num_hidden_layers"] == 12, key


def test_push_refuses_missing_checkpoints_before_uploading(tmp_path, monkeypatch):
    import huggingface_hub

    from study_model_cards import push_study_models

    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, *a, **k: calls.append(a))
    results = vision_study_results({"data2vec": {1: [1.0]}, "random": {0: [1.0]}})
    results["config"] = {"seed_list": [0], "model_size": "tiny"}
    results["modalities"]["vision"]["arms"]["data2vec"]["seeds"]["0"]["probes"]["1"]["checkpoint"] = str(tmp_path)
    with pytest.raises(ValueError, match="'x'"):
        push_study_models(results, hub_org="org")
    assert calls == []  # nothing uploaded, not even the folders that exist
