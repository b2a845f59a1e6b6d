"""
`examples/study/compare_checkpoints.py` end to end, offline: tiny checkpoints of nine families (BERT, RoBERTa,
data2vec-text, ViT (as DINO is one), BEiT, data2vec-vision, wav2vec 2.0, HuBERT, data2vec-audio), saved to folders,
through probes, the learning-rate sweep and fine-tuning on slices of ../shared/data; every (checkpoint, task) pair
yields scores or a stated skip, the report is generated from the JSON, and a second call resumes without rerunning.
"""

import json

import pytest
import torch

from .fixtures import build_tokenizer, glue_texts, save_tiny_checkpoints


pytestmark = pytest.mark.real_data

compare_checkpoints = pytest.importorskip("compare_checkpoints")
TASKS = ["sst2", "stsb", "xquad", "fashion_mnist", "spoken_digits"]


@pytest.fixture(scope="module")
def comparison(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    texts = glue_texts(shared_data / "glue" / "sst2" / "train.tsv", ["sentence"], 1000)
    texts += glue_texts(shared_data / "glue" / "stsb" / "train.tsv", ["sentence1", "sentence2"], 500)
    folders = save_tiny_checkpoints(root / "checkpoints", build_tokenizer(texts, vocab_size=400, model_max_length=128))
    argv = [
        "--checkpoints", ",".join(f"{name}={folder}" for name, folder in folders.items()),
        "--tasks", ",".join(TASKS),
        "--data_dir", str(shared_data),
        "--output_dir", str(root / "out"),
        "--seeds", "0,1",
        "--learning_rates", "1e-3,3e-3",
        "--max_steps", "4",
        "--batch_size", "8",
        "--max_train_samples", "48",
        "--max_eval_samples", "24",
        "--probe_train_samples", "40",
        "--max_seq_length", "48",
        "--qa_max_seq_length", "96",
        "--qa_doc_stride", "32",
        "--digit_voices", "8",
        "--xquad_languages", "en,de,es",  # a BPE trained on English splits other scripts into many byte tokens
        "--report_note", "Example from a small local run (tiny random checkpoints): it shows the format, not results.",
    ]  # fmt: skip
    results = compare_checkpoints.main(argv)
    return results, argv, root / "out", folders


def test_every_pair_yields_scores_or_a_stated_skip(comparison):
    results, _, _, folders = comparison
    modality = {"bert": "text", "roberta": "text", "data2vec-text": "text", "vit": "vision", "beit": "vision"}
    modality.update({"data2vec-vision": "vision", "wav2vec2": "audio", "hubert": "audio", "data2vec-audio": "audio"})
    task_modality = {"sst2": "text", "stsb": "text", "xquad": "text", "fashion_mnist": "vision"}
    task_modality["spoken_digits"] = "audio"
    for name in folders:
        for task in TASKS:
            record = results["pairs"][f"{name}|{task}"]
            if modality[name] != task_modality[task]:
                article = "an" if modality[name] == "audio" else "a"
                assert record["status"] == "skipped" and f"is {article} {modality[name]} model" in record["reason"]
                continue
            assert record["status"] == "done", record
            assert record["model_type"] == name
            assert len(record["sweep"]) == 2 and record["chosen_learning_rate"] in (1e-3, 3e-3)
            chosen = max(record["sweep"], key=lambda rate: record["sweep"][rate]["scores"]["score"])
            assert float(chosen) == record["chosen_learning_rate"]  # chosen on the held-out part, not on dev
            assert sorted(record["finetune"]) == ["0", "1"]
            for run in [*record["sweep"].values(), *record["finetune"].values()]:
                # percent; STS-B's correlations and CoLA's Matthews coefficient can be negative
                assert -100 <= run["scores"]["score"] <= 100 and run["command"].startswith("python examples/")
            if task == "xquad":
                assert "probe" not in record and "zero_shot_f1" in record["finetune"]["0"]["scores"]
            else:
                assert sorted(record["probe"]) == ["0", "1"]
                assert all(-100 <= p["score"] <= 100 and p["train_examples"] == 40 for p in record["probe"].values())
    sweep_command = results["pairs"]["bert|sst2"]["sweep"]["0.001"]["command"]
    assert "--model_selection_fraction 0.2" in sweep_command
    assert "--model_selection_fraction" not in results["pairs"]["bert|sst2"]["finetune"]["0"]["command"]
    assert "--model_selection_fraction 0.2" in results["pairs"]["vit|fashion_mnist"]["sweep"]["0.001"]["command"]
    assert "--validation_dir" in results["pairs"]["vit|fashion_mnist"]["sweep"]["0.001"]["command"]  # replaced
    # mean pooling of the patch tokens for BEiT-style models: turned on where the checkpoint's config has it off
    assert "--config_name" in results["pairs"]["data2vec-vision|fashion_mnist"]["finetune"]["0"]["command"]
    assert "--config_name" not in results["pairs"]["beit|fashion_mnist"]["finetune"]["0"]["command"]


def test_report_comes_from_the_json_and_a_rerun_resumes(comparison):
    results, argv, out, _ = comparison
    saved = json.loads((out / "results.json").read_text())
    assert saved["pairs"] == results["pairs"]
    report = (out / "comparison.md").read_text()
    assert "Example from a small local run" in report and results["command"] in report
    score = saved["pairs"]["roberta|sst2"]["finetune"]["0"]["scores"]["score"]
    assert "| roberta | roberta |" in report and "92.3" in report  # the paper's RoBERTa SST-2, beside it
    assert "- vit: skipped, vit is a vision model; sst2 is a text task." in report
    assert "Paired differences against bert" in report and "2 seed(s): too few for an interval" in report
    # a second call finds every step done: nothing reruns, the scores stay
    again = compare_checkpoints.main(argv)
    assert again["pairs"]["roberta|sst2"]["finetune"]["0"]["scores"]["score"] == score
    assert again["pairs"] == results["pairs"]
    with pytest.raises(ValueError, match="other settings \\(max_steps\\)"):
        compare_checkpoints.main([*argv[:-2], "--max_steps", "5"])


def test_random_baseline_has_the_architecture_and_files_not_the_weights(shared_data, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from comparison import CompareArguments, resolve_checkpoint

    texts = glue_texts(shared_data / "glue" / "sst2" / "train.tsv", ["sentence"], 300)
    folders = save_tiny_checkpoints(tmp_path / "checkpoints", build_tokenizer(texts, vocab_size=300))
    args = CompareArguments(checkpoints=f"r=random:{folders['roberta']}", output_dir=str(tmp_path / "out"))
    folder = resolve_checkpoint(args, "r", f"random:{folders['roberta']}")
    assert resolve_checkpoint(args, "x", str(folders["roberta"])) == str(folders["roberta"])
    source, random = AutoModel.from_pretrained(folders["roberta"]), AutoModel.from_pretrained(folder)
    assert type(random) is type(source) and random.config.to_dict() | {"_name_or_path": ""} == (
        source.config.to_dict() | {"_name_or_path": ""}
    )
    key = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(random.state_dict()[key], source.state_dict()[key])
    vocabulary = AutoTokenizer.from_pretrained(folders["roberta"]).get_vocab()
    assert AutoTokenizer.from_pretrained(folder).get_vocab() == vocabulary


def test_model_selection_holds_out_training_data_in_every_script_loader(shared_data):
    from d2v_hf.finetuning import ImageDataArguments, hold_out_for_model_selection, load_glue_datasets
    from d2v_hf.finetuning.classification_data import load_image_classification_datasets
    from d2v_hf.finetuning.qa_data import hold_out_articles_for_model_selection, load_xquad

    glue = shared_data / "glue" / "sst2"
    raw = load_glue_datasets("sst2", train_file=glue / "train.tsv", validation_file=glue / "dev.tsv")
    held = hold_out_for_model_selection(raw, 0.2)
    assert len(held["validation"]) == round(0.2 * len(raw["train"])) and len(held["train"]) + len(
        held["validation"]
    ) == len(raw["train"])
    assert set(held["validation"]["sentence"]) <= set(raw["train"]["sentence"])  # not the dev sentences
    again = hold_out_for_model_selection(raw, 0.2)
    assert again["validation"]["sentence"] == held["validation"]["sentence"]  # the same split in every run

    folder = shared_data / "vision" / "fashion-mnist"
    args = ImageDataArguments(train_dir=str(folder), validation_dir=str(folder), model_selection_fraction=0.2)
    data = load_image_classification_datasets(args, 28, seed=3)
    assert data.validation_split == "train (held out for model selection)"
    total = len(data.train) + len(data.validation)  # the training images only (the t10k test files are not read)
    assert total > 10000 and len(data.validation) == round(0.2 * total)

    english = load_xquad(shared_data / "xquad", ["en"])["en"]
    train, evaluation = hold_out_articles_for_model_selection(english, 0.25, "en")
    assert not set(train["title"]) & set(evaluation["en"]["title"])
