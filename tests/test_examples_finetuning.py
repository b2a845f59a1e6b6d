"""End-to-end runs of run_glue.py and run_qa.py (examples/) on tiny models built in code (no network)."""

import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Data2VecAudioConfig,
    Data2VecVisionConfig,
)

from .fixtures import (
    REPO,
    build_tokenizer,
    cli,
    example_script_path,
    glue_texts,
    load_example,
    save_tiny_backbone,
)


POSITIVE = ["good", "great", "fun", "lovely", "superb", "moving"]
NEGATIVE = ["bad", "dull", "awful", "boring", "poor", "messy"]
FILLER = ["the", "movie", "was", "a", "plot", "very", "and", "story", "it", "cast"]


def synthetic_sentiment(n: int, seed: int = 0):
    """Sentences whose label is given by one sentiment word among filler words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.sample(FILLER, 4) + [rng.choice(POSITIVE if label else NEGATIVE)]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_tsv(path: Path, header, rows):
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sentiment_model(tmp_path_factory):
    texts = [s for s, _ in synthetic_sentiment(200)]
    tokenizer = build_tokenizer(texts, vocab_size=300, model_max_length=64)
    return save_tiny_backbone(tmp_path_factory.mktemp("tiny_text"), tokenizer)


@pytest.fixture(scope="module")
def sentiment_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sst2_synthetic")
    train = write_tsv(folder / "train.tsv", ("sentence", "label"), synthetic_sentiment(256, seed=1))
    dev = write_tsv(folder / "dev.tsv", ("sentence", "label"), synthetic_sentiment(64, seed=2))
    return train, dev


# --------------------------------------------------------------------------------------------------------------------
# run_glue.py
# --------------------------------------------------------------------------------------------------------------------


def test_run_glue_sst2_tsv_from_a_json_argument_file(tmp_path, sentiment_model, sentiment_files):
    output_dir = tmp_path / "out"
    arguments = {
        "model_name_or_path": str(sentiment_model),
        "task_name": "sst2",
        "train_file": str(sentiment_files[0]),
        "validation_file": str(sentiment_files[1]),
        "do_train": True,
        "do_eval": True,
        "max_seq_length": 32,
        "learning_rate": 5e-3,
        "num_train_epochs": 4,
        "per_device_train_batch_size": 16,
        "output_dir": str(output_dir),
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "use_cpu": True,
        "seed": 0,
    }
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps(arguments))
    metrics = load_example("run_glue").main([str(args_file)])

    # One sentiment word decides the label: the tiny model must learn it (not just run).
    assert metrics["eval_accuracy"] >= 0.9, metrics
    config = json.loads((output_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"} and config["finetuning_task"] == "sst2"
    assert json.loads((output_dir / "all_results.json").read_text())["eval_accuracy"] == metrics["eval_accuracy"]
    card = (output_dir / "README.md").read_text()
    assert "library_name: transformers" in card and "- data2vec" in card and "model-index" in card
    assert "type: accuracy" in card and "config: sst2" in card


def test_run_glue_stsb_regression_from_csv(tmp_path, sentiment_model):
    rng = random.Random(0)
    rows = []
    for _ in range(96):
        a, b = rng.sample(FILLER, 3), rng.sample(FILLER, 3)
        rows.append((" ".join(a), " ".join(b), f"{5 * len(set(a) & set(b)) / 3:.3f}"))
    train = tmp_path / "train.csv"
    train.write_text("sentence1,sentence2,score\n" + "".join(",".join(r) + "\n" for r in rows))
    output_dir = tmp_path / "out"
    metrics = load_example("run_glue").main(
        cli(
            model_name_or_path=str(sentiment_model),
            task_name="stsb",
            train_file=str(train),
            validation_file=str(train),
            do_train=True,
            do_eval=True,
            max_steps=4,
            max_seq_length=32,
            output_dir=str(output_dir),
        )
    )
    assert {"eval_pearson", "eval_spearmanr", "eval_combined_score"} <= set(metrics)
    assert -1.0 <= metrics["eval_pearson"] <= 1.0
    config = json.loads((output_dir / "config.json").read_text())
    assert config["problem_type"] == "regression" and len(config["id2label"]) == 1


def test_run_glue_mnli_matched_and_mismatched(tmp_path, sentiment_model):
    names = ["entailment", "neutral", "contradiction"]
    rows = [(f"the movie was {w}", f"it was {w}", names[i % 3]) for i, w in enumerate(POSITIVE * 4)]
    header = ("index", "sentence1", "sentence2", "gold_label")
    train = write_tsv(tmp_path / "train.tsv", header, [(i, *r) for i, r in enumerate(rows)])
    matched = write_tsv(tmp_path / "dev_matched.tsv", header, [(i, *r) for i, r in enumerate(rows[:9])])
    mismatched = write_tsv(tmp_path / "dev_mismatched.tsv", header, [(i, *r) for i, r in enumerate(rows[3:10])])
    output_dir = tmp_path / "out"
    metrics = load_example("run_glue").main(
        cli(
            model_name_or_path=str(sentiment_model),
            task_name="mnli",
            train_file=str(train),
            validation_file=str(matched),
            validation_mismatched_file=str(mismatched),
            do_train=True,
            do_eval=True,
            max_steps=2,
            max_seq_length=32,
            output_dir=str(output_dir),
        )
    )
    assert metrics["eval_samples"] == 9 and metrics["eval_samples_mm"] == 7
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and 0.0 <= metrics["eval_accuracy_mm"] <= 1.0
    card = (output_dir / "README.md").read_text()
    assert "config: mnli\n" in card and "config: mnli-mm" in card


def test_run_glue_lora_saves_adapter_and_an_equivalent_merged_model(tmp_path, sentiment_model, sentiment_files):
    from peft import PeftModel

    output_dir = tmp_path / "out"
    load_example("run_glue").main(
        cli(
            model_name_or_path=str(sentiment_model),
            task_name="sst2",
            train_file=str(sentiment_files[0]),
            validation_file=str(sentiment_files[1]),
            do_train=True,
            do_eval=True,
            use_peft=True,
            lora_r=4,
            learning_rate=1e-2,
            max_steps=6,
            max_seq_length=32,
            output_dir=str(output_dir),
        )
    )
    assert (output_dir / "adapter_config.json").is_file()
    merged_dir = output_dir / "merged"
    assert (merged_dir / "model.safetensors").is_file() and not (merged_dir / "adapter_config.json").exists()
    merged = AutoModelForSequenceClassification.from_pretrained(merged_dir).eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    # The adapter on a fresh base (new random head: modules_to_save must restore the trained one) == merged model.
    base = AutoModelForSequenceClassification.from_pretrained(sentiment_model, num_labels=2)
    adapter = PeftModel.from_pretrained(base, output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    batch = tokenizer(["the movie was good", "a dull plot"], return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, adapter(**batch).logits, atol=1e-5, rtol=0)
    assert "lora" in (output_dir / "README.md").read_text()


@pytest.mark.parametrize(
    "config, modality",
    [
        (
            Data2VecAudioConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37),
            "audio",
        ),
        (
            Data2VecVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37),
            "vision",
        ),
    ],
)
def test_run_glue_rejects_a_checkpoint_of_another_modality(tmp_path, sentiment_files, config, modality):
    config.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(ValueError, match=f"run_glue.py fine-tunes text models, but .* is an? {modality} model"):
        load_example("run_glue").main(
            cli(
                model_name_or_path=str(tmp_path / "ckpt"),
                task_name="sst2",
                train_file=str(sentiment_files[0]),
                validation_file=str(sentiment_files[1]),
                do_train=True,
                output_dir=str(tmp_path / "out"),
            )
        )


def test_run_glue_unknown_task(tmp_path, sentiment_model, sentiment_files):
    with pytest.raises(ValueError, match="Unknown GLUE task 'sst3'; valid task names are: cola, mnli"):
        load_example("run_glue").main(
            cli(
                model_name_or_path=str(sentiment_model),
                task_name="sst3",
                train_file=str(sentiment_files[0]),
                output_dir=str(tmp_path / "out"),
            )
        )


# --------------------------------------------------------------------------------------------------------------------
# run_qa.py
# --------------------------------------------------------------------------------------------------------------------

CAPITALS = [("Paris", "France"), ("Rome", "Italy"), ("Madrid", "Spain"), ("Berlin", "Germany"), ("Lisbon", "Portugal")]


def _squad_v2_file(path: Path, with_unanswerable: bool = True) -> Path:
    articles = []
    for city, country in CAPITALS:
        context = f"The capital of {country} is {city}. It is a large city with many old houses."
        qas = [
            {
                "id": f"{country}-capital",
                "question": f"What is the capital of {country}?",
                "answers": [{"text": city, "answer_start": context.index(city)}],
            }
        ]
        if with_unanswerable:
            qas.append(
                {"id": f"{country}-moon", "question": "Who owns the moon?", "answers": [], "is_impossible": True}
            )
        articles.append({"title": country, "paragraphs": [{"context": context, "qas": qas}]})
    path.write_text(json.dumps({"version": "v2.0", "data": articles}))
    return path


@pytest.fixture(scope="module")
def qa_model(tmp_path_factory):
    texts = [f"The capital of {c} is {x}. What is the capital of {c}? Who owns the moon?" for x, c in CAPITALS] * 4
    tokenizer = build_tokenizer(texts, vocab_size=320, model_max_length=64)
    return save_tiny_backbone(tmp_path_factory.mktemp("tiny_qa"), tokenizer)


def test_run_qa_squad_v2_local_file(tmp_path, qa_model):
    data = _squad_v2_file(tmp_path / "squad_v2.json")
    output_dir = tmp_path / "out"
    metrics = load_example("run_qa").main(
        cli(
            model_name_or_path=str(qa_model),
            train_file=str(data),
            validation_file=str(data),
            version_2_with_negative=True,
            do_train=True,
            do_eval=True,
            max_steps=3,
            max_seq_length=48,
            doc_stride=16,
            output_dir=str(output_dir),
        )
    )
    for key in ("eval_exact", "eval_f1", "eval_HasAns_exact", "eval_NoAns_exact", "eval_best_f1"):
        assert 0.0 <= metrics[key] <= 100.0, key
    assert metrics["eval_total"] == 10 and metrics["eval_HasAns_total"] == 5 and metrics["eval_NoAns_total"] == 5
    predictions = json.loads((output_dir / "eval_predictions.json").read_text())
    assert len(predictions) == 10 and (output_dir / "eval_null_odds.json").is_file()
    assert "question-answering" in (output_dir / "README.md").read_text()


def test_run_qa_v1_rejects_unanswerable_questions(tmp_path, qa_model):
    data = _squad_v2_file(tmp_path / "squad_v2.json")
    with pytest.raises(ValueError, match="'France-moon'.*no answer.*version_2_with_negative"):
        load_example("run_qa").main(
            cli(
                model_name_or_path=str(qa_model), train_file=str(data), do_train=True, output_dir=str(tmp_path / "out")
            )
        )


# --------------------------------------------------------------------------------------------------------------------
# Real data (../shared/data)
# --------------------------------------------------------------------------------------------------------------------


def run_glue_on_real_data(tmp_path, shared_data, task: str, columns: list[str], epochs: int) -> dict:
    """A 2-layer hidden-32 model with a BPE tokenizer of the task's sentences, fine-tuned on 2,000 examples."""
    folder = shared_data / "glue" / task
    tokenizer = build_tokenizer(glue_texts(folder / "train.tsv", columns, 4000), vocab_size=1000)
    model = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    return load_example("run_glue").main(
        cli(
            model_name_or_path=str(model),
            task_name=task,
            train_file=str(folder / "train.tsv"),
            validation_file=str(folder / "dev.tsv"),
            do_train=True,
            do_eval=True,
            max_train_samples=2000,
            max_seq_length=64,
            pad_to_max_length="false",
            num_train_epochs=epochs,
            per_device_train_batch_size=16,
            learning_rate=2e-3,
            warmup_steps=20,
            seed=42,
            output_dir=str(tmp_path / "out"),
        )
    )


@pytest.mark.real_data
def test_run_glue_real_sst2_above_chance(tmp_path, shared_data):
    metrics = run_glue_on_real_data(tmp_path, shared_data, "sst2", ["sentence"], epochs=2)
    print(f"SST-2 dev accuracy of a 2-layer hidden-32 model after 250 steps: {metrics['eval_accuracy']:.4f}")
    assert metrics["eval_samples"] == 872
    # Measured 0.638-0.662 (seeds 1, 7, 42); the majority class is 0.509 (one standard error of chance: 0.017).
    assert metrics["eval_accuracy"] > 0.58


@pytest.mark.real_data
def test_run_glue_real_stsb_above_chance(tmp_path, shared_data):
    metrics = run_glue_on_real_data(tmp_path, shared_data, "stsb", ["sentence1", "sentence2"], epochs=3)
    print(f"STS-B dev Pearson {metrics['eval_pearson']:.4f}, Spearman {metrics['eval_spearmanr']:.4f}")
    assert metrics["eval_samples"] == 1500
    # 375 steps. Measured Pearson 0.098-0.148, Spearman 0.073-0.124 (seeds 1, 7, 42); with no correlation the
    # standard error on 1,500 pairs is 0.026.
    assert metrics["eval_pearson"] > 0.05 and metrics["eval_spearmanr"] > 0.03


@pytest.mark.real_data
def test_run_qa_xquad_zero_shot_all_languages(tmp_path, shared_data):
    from d2v_hf.finetuning import XQUAD_LANGUAGES

    xquad = shared_data / "xquad"
    texts = []
    for language in XQUAD_LANGUAGES:
        with gzip.open(xquad / f"xquad.{language}.json.gz", "rt", encoding="utf-8") as f:
            article = json.load(f)["data"][0]
        texts += [p["context"] for p in article["paragraphs"]]
    tokenizer = build_tokenizer(texts, vocab_size=2000, model_max_length=128)
    model = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    output_dir = tmp_path / "out"
    metrics = load_example("run_qa").main(
        cli(
            model_name_or_path=str(model),
            xquad_dir=str(xquad),
            xquad_test_fraction=0.5,
            do_train=True,
            do_eval=True,
            max_train_samples=64,
            max_steps=6,
            max_eval_samples=3,
            max_seq_length=128,
            doc_stride=32,
            output_dir=str(output_dir),
        )
    )
    summary = json.loads((output_dir / "xquad_results.json").read_text())
    assert list(summary["languages"]) == list(XQUAD_LANGUAGES)
    for language, values in summary["languages"].items():
        assert 0.0 <= values["exact_match"] <= 100.0 and 0.0 <= values["f1"] <= 100.0, language
        assert values["f1"] == metrics[f"eval_{language}_f1"]
    table = (output_dir / "xquad_results.md").read_text()
    print(table)
    assert all(f"| {language} |" in table for language in XQUAD_LANGUAGES) and "**average**" in table
    # Held-out questions are the same in every language (parallel files, same articles).
    english = json.loads((output_dir / "eval_en_predictions.json").read_text())
    thai = json.loads((output_dir / "eval_th_predictions.json").read_text())
    assert list(english) == list(thai) and len(english) == 3
    assert "XQuAD zero-shot results" in (output_dir / "README.md").read_text()


# --------------------------------------------------------------------------------------------------------------------
# accelerate launch, 2 CPU processes
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_glue_under_accelerate_launch_two_cpu_processes(tmp_path, sentiment_model, sentiment_files):
    accelerate = Path(sys.executable).parent / "accelerate"
    if not accelerate.is_file():
        pytest.skip("the accelerate CLI is not installed next to this Python")
    output_dir = tmp_path / "out"
    # `accelerate launch --cpu` runs a single process whatever --num_processes says; `--multi_gpu` starts the
    # processes (torchrun) and `--use_cpu` makes each of them join a gloo group on the CPU.
    command = [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", str(example_script_path("run_glue")),
    ]  # fmt: skip
    command += cli(
        model_name_or_path=sentiment_model, task_name="sst2", train_file=sentiment_files[0],
        validation_file=sentiment_files[1], do_train=True, do_eval=True, max_train_samples=64, max_steps=3,
        per_device_train_batch_size=8, max_seq_length=32, output_dir=output_dir,
    )  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Process rank: 1, world size: 2" in output
    # 3 steps x 8 examples x 2 processes = 48 of 64 examples: epoch 0.75 (a single process would be at 0.375).
    assert json.loads((output_dir / "trainer_state.json").read_text())["epoch"] == pytest.approx(0.75)
    eval_results = json.loads((output_dir / "eval_results.json").read_text())
    # Near ln 2 for a nearly untrained binary classifier; Trainer's num_processes loss scaling would double it.
    assert 0.0 <= eval_results["eval_accuracy"] <= 1.0 and eval_results["eval_loss"] < 1.0
    assert (output_dir / "README.md").is_file()
