"""
The inputs users get wrong, each with an error that names the value, file or flag (and writes nothing), and the
inputs that used to pass silently wrong (a NaN batch, a misplaced answer_start, a 16-bit PNG).
"""

import importlib
import json

import numpy as np
import pytest
from PIL import Image
from transformers import pipeline

from d2v_hf import Data2VecForPretraining, data_collator_for
from d2v_hf.data import load_image_folder
from d2v_hf.finetuning import load_squad_json

from .fixtures import EXAMPLE_FOLDERS, build_tokenizer, load_example, save_tiny_backbone, tiny_config, tiny_inputs


run_pretraining = load_example("run_pretraining")
run_glue = load_example("run_glue")
run_qa = load_example("run_qa")
pretraining_utils = load_example("pretraining_utils")

TINY = "backbone.hidden_size=32,backbone.intermediate_size=64,backbone.num_hidden_layers=2,average_top_k_layers=2"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(f"sentence number {i} about teachers and students" for i in range(200)) + "\n")
    return path


def pretraining_args(corpus, output_dir, *extra):
    return [
        "--modality=text", "--model_size=tiny", f"--config_overrides={TINY}", f"--train_file={corpus}",
        "--train_tokenizer", "--tokenizer_vocab_size=300", "--max_seq_length=32", f"--output_dir={output_dir}",
        "--per_device_train_batch_size=8", "--use_cpu", "--report_to=none", "--eval_strategy=no", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def sst2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sst2")
    rows = ["sentence\tlabel"] + [f"{'good fun' if i % 2 else 'dull bad'} film {i}\t{i % 2}" for i in range(40)]
    (folder / "train.tsv").write_text("\n".join(rows) + "\n")
    (folder / "dev.tsv").write_text("\n".join(rows[:11]) + "\n")
    tokenizer = build_tokenizer([row.split("\t")[0] for row in rows[1:]], vocab_size=300, model_max_length=64)
    return folder, save_tiny_backbone(folder / "model", tokenizer)


def glue_args(sst2, output_dir, *extra):
    folder, model = sst2
    return [
        f"--model_name_or_path={model}", "--task_name=sst2", f"--train_file={folder / 'train.tsv'}",
        f"--validation_file={folder / 'dev.tsv'}", "--do_train", "--do_eval", "--max_seq_length=32", "--max_steps=2",
        f"--output_dir={output_dir}", "--use_cpu", "--report_to=none", *extra,
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# The model and the collators
# --------------------------------------------------------------------------------------------------------------------


def test_float_input_ids_are_named():
    model = Data2VecForPretraining(tiny_config("text"))
    inputs = tiny_inputs(model.config)
    inputs["input_ids"] = inputs["input_ids"].float()
    with pytest.raises(ValueError, match="input_ids must be integer token ids; got dtype torch.float32"):
        model(**inputs)


@pytest.mark.parametrize("modality", ["text", "audio", "vision"])
def test_empty_batch_is_named(modality):
    model = Data2VecForPretraining(tiny_config(modality))
    inputs = tiny_inputs(model.config)
    name = model.main_input_name
    with pytest.raises(ValueError, match=f"`{name}` holds no example .*the batch is empty"):
        model(**{name: inputs[name][:0], "mask": inputs["mask"][:0]})
    tokenizer = build_tokenizer(["a b c"], vocab_size=300) if modality == "text" else None
    with pytest.raises(ValueError, match="DataCollatorForData2Vec.* got an empty batch"):
        data_collator_for(model.config, tokenizer)([])


@pytest.mark.parametrize("modality, bad", [("audio", float("nan")), ("vision", float("inf"))])
def test_nan_or_inf_input_is_refused(modality, bad):
    model = Data2VecForPretraining(tiny_config(modality))
    inputs = tiny_inputs(model.config)
    name = model.main_input_name
    inputs[name][1].view(-1)[7] = bad  # example 1 of the batch
    with pytest.raises(ValueError, match=f"{name} contains NaN or inf values \\(example 1 of the batch\\)"):
        model(**inputs)


# --------------------------------------------------------------------------------------------------------------------
# Script arguments: each error names the flag or the file, and nothing is written
# --------------------------------------------------------------------------------------------------------------------


def test_config_override_of_the_wrong_type(corpus, tmp_path):
    out = tmp_path / "out"
    bad = pretraining_args(corpus, out, "--max_steps=1")
    bad[2] = "--config_overrides=average_top_k_layers=two"
    with pytest.raises(ValueError, match="average_top_k_layers='two' must be int"):
        run_pretraining.main(bad)
    assert not out.exists()


@pytest.mark.parametrize("script", ["pretraining", "glue"])
def test_malformed_json_arguments_file_is_named(script, tmp_path):
    path = tmp_path / "args.json"
    path.write_text('{"output_dir": "out", "max_steps": 3,}')
    main = run_pretraining.main if script == "pretraining" else run_glue.main
    with pytest.raises(ValueError, match="Cannot read the arguments file .*args.json"):
        main([str(path)])


def test_batch_size_zero_is_named(corpus, sst2, tmp_path):
    with pytest.raises(ValueError, match="--per_device_train_batch_size 0: expected a whole number >= 1"):
        run_pretraining.main(
            pretraining_args(corpus, tmp_path / "a", "--max_steps=1", "--per_device_train_batch_size=0")
        )
    with pytest.raises(ValueError, match="--per_device_train_batch_size 0"):
        run_glue.main(glue_args(sst2, tmp_path / "b", "--per_device_train_batch_size=0"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("--learning_rate=-1", "--learning_rate -1.0: expected a number >= 0"),
        ("--weight_decay=-0.1", "--weight_decay -0.1: expected a number >= 0"),
        ("--adam_beta2=1.0", "--adam_beta2 1.0: expected in \\[0, 1\\)"),
        ("--adam_epsilon=-1e-8", "--adam_epsilon -1e-08: expected a number >= 0"),
    ],
)
def test_optimizer_values_torch_would_reject_are_named_before_the_data_is_built(flag, expected, corpus, tmp_path):
    with pytest.raises(ValueError, match=expected):
        run_pretraining.main(pretraining_args(corpus, tmp_path / "out", "--max_steps=1", flag))
    assert not (tmp_path / "out").exists()


def test_adam_betas_are_not_checked_for_an_optimizer_without_them():
    from transformers import TrainingArguments

    from d2v_hf.argument_parsing import check_training_arguments

    check_training_arguments(TrainingArguments(output_dir="unused", optim="sgd", adam_beta1=1.5))
    with pytest.raises(ValueError, match="--adam_beta1 1.5"):
        check_training_arguments(TrainingArguments(output_dir="unused", adam_beta1=1.5))


def test_glue_max_seq_length_zero_is_named(sst2, tmp_path):
    with pytest.raises(ValueError, match="--max_seq_length 0: too short"):
        run_glue.main([*glue_args(sst2, tmp_path / "out"), "--max_seq_length=0"])
    with pytest.raises(ValueError, match="--doc_stride 500"):
        run_qa.main(["--model_name_or_path=x", "--output_dir=out", "--max_seq_length=384", "--doc_stride=500"])


@pytest.mark.parametrize("script", ["pretraining", "glue"])
@pytest.mark.parametrize("folder", ["missing", "without config.json"])
def test_missing_model_folder_is_named(script, folder, corpus, sst2, tmp_path):
    missing = tmp_path / "no" / "such" / "model"
    if folder != "missing":
        missing.mkdir(parents=True)
    if script == "pretraining":
        arguments = pretraining_args(corpus, tmp_path / "out", "--max_steps=1", f"--model_name_or_path={missing}")
        arguments.remove("--train_tokenizer")
        main = run_pretraining.main
    else:
        arguments, main = [*glue_args(sst2, tmp_path / "out"), f"--model_name_or_path={missing}"], run_glue.main
    expected = "no such folder" if folder == "missing" else r"the folder has no config.json \(it is not a saved"
    with pytest.raises(ValueError, match=f"--model_name_or_path {missing}: {expected}"):
        main(arguments)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def text_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("text_run") / "run"
    run_pretraining.main(pretraining_args(corpus, out, "--max_steps=2", "--save_steps=2"))
    return out


def test_resuming_another_modality_is_named(text_run, tmp_path):
    arguments = ["--modality=vision", "--model_size=tiny", f"--train_file={tmp_path}", f"--output_dir={tmp_path}/o"]
    with pytest.raises(ValueError, match="holds a text model; --modality is vision"):
        run_pretraining.main([*arguments, f"--resume_from_checkpoint={text_run / 'checkpoint-2'}", "--use_cpu"])
    assert not (tmp_path / "o").exists()


def test_pretraining_folder_given_to_run_glue_points_at_student(text_run, sst2, tmp_path):
    with pytest.raises(ValueError, match="full data2vec pretraining checkpoint.*`student/`"):
        run_glue.main([*glue_args(sst2, tmp_path / "out"), f"--model_name_or_path={text_run}"])
    metrics = run_glue.main([*glue_args(sst2, tmp_path / "out"), f"--model_name_or_path={text_run / 'student'}"])
    assert "eval_accuracy" in metrics


# --------------------------------------------------------------------------------------------------------------------
# Inputs that used to pass silently wrong
# --------------------------------------------------------------------------------------------------------------------


def test_answer_start_that_misses_the_answer_is_refused(tmp_path):
    context = "The teacher follows the student with an exponential moving average."
    record = {"id": "q1", "question": "What follows?", "answers": [{"text": "The teacher", "answer_start": 0}]}
    squad = {"data": [{"title": "t", "paragraphs": [{"context": context, "qas": [record]}]}]}
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(squad))
    assert load_squad_json(path)[0]["answers"]["answer_start"] == [0]
    record["answers"][0]["answer_start"] = 4  # points at "teacher follo"
    path.write_text(json.dumps(squad))
    with pytest.raises(
        ValueError, match="Question 'q1' .*'The teacher' is not at answer_start=4 .*found 'teacher fol'"
    ):
        load_squad_json(path)


def test_sixteen_bit_png_keeps_its_grey_levels(tmp_path):
    folder = tmp_path / "images" / "ramp"
    folder.mkdir(parents=True)
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(folder / "ramp.png")
    assert Image.open(folder / "ramp.png").mode == "I;16"
    decoded = np.asarray(load_image_folder(tmp_path / "images")[0]["image"])
    assert decoded.shape == (32, 32, 3) and (decoded == 255).mean() < 0.01  # PIL's own convert: 99.6% white
    np.testing.assert_allclose(decoded[..., 0], ramp / 257.0, atol=0.51)


# --------------------------------------------------------------------------------------------------------------------
# Exported students in pipelines
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_size", ["tiny", "base"])
def test_student_takes_the_tokenizers_longest_input_in_a_pipeline(model_size, tmp_path):
    tokenizer = build_tokenizer(["teachers and students"] * 10, vocab_size=300, model_max_length=512)
    assert tokenizer.model_max_length == 512
    model_args = pretraining_utils.Data2VecModelArguments(modality="text", model_size=model_size)
    model = Data2VecForPretraining(pretraining_utils.build_pretraining_config(model_args, tokenizer))
    model.export_student(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    extract = pipeline("feature-extraction", model=str(tmp_path), tokenizer=str(tmp_path), device="cpu")
    features = extract("teachers and students " * 400, truncation=True)  # far longer than 512 tokens
    assert np.asarray(features).shape == (1, 512, model.config.hidden_size)
    assert np.isfinite(np.asarray(features)).all()


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"checkpoints": "roberta-base"}, "'roberta-base' is not name=path_or_hub_id"),
        ({"checkpoints": "a=x,a=y"}, "names must be unique"),
        ({"tasks": "sst2,imagenet"}, r"--tasks: unknown \['imagenet'\]"),
        ({"seeds": "0,one"}, "--seeds '0,one' must be comma-separated integers"),
        ({"reference": "c"}, "--reference 'c' is not a name in --checkpoints"),
        ({"learning_rates": "1e-3,-1"}, "give one or more positive rates"),
        ({"model_selection_fraction": 1.0}, "--model_selection_fraction must be in \\(0, 1\\)"),
        ({"max_steps": 0}, "--max_steps must be >= 1"),
        ({"probe": False, "finetune": False}, "there is nothing to measure"),
    ],
)
def test_compare_checkpoints_arguments_name_the_bad_flag(flags, message):
    from comparison import CompareArguments

    with pytest.raises(ValueError, match=message):
        CompareArguments(**{"checkpoints": "a=x,b=y", **flags})


def test_compare_checkpoints_missing_checkpoint_names_it(tmp_path):
    from comparison import CompareArguments, run_comparison

    args = CompareArguments(checkpoints=f"a={tmp_path / 'missing'}", tasks="sst2", output_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="--checkpoints"):
        run_comparison(args, "test")


def test_bad_teacher_dtype_and_backbone_type_are_refused(tmp_path):
    with pytest.raises(ValueError, match="teacher_dtype='int8'; expected one of"):
        tiny_config("text", teacher_dtype="int8")
    folder = save_tiny_backbone(tmp_path / "d2v", build_tokenizer(["a b c"], vocab_size=300))
    args = pretraining_utils.Data2VecModelArguments(model_name_or_path=str(folder), backbone_type="bert")
    with pytest.raises(ValueError, match="--backbone_type bert differs from .*'data2vec-text'"):
        pretraining_utils.load_or_build_model(args)


@pytest.mark.parametrize(
    "script",
    ["run_pretraining", "run_glue", "run_qa", "run_image_classification", "run_audio_classification", "run_study",
     "layer_probes", "text_probe_reference", "compare_checkpoints", "study_budgets"],
)  # fmt: skip
def test_help_of_every_script_prints(script, capsys):
    # the study's help says "15% of tokens": argparse read it as a %-format template and `--help` raised a TypeError
    main = (importlib.import_module(script) if script not in EXAMPLE_FOLDERS else load_example(script)).main
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:")
    assert "15% of tokens" in out or script not in ("run_study", "layer_probes")
