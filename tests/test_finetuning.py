"""Fine-tuning library logic: GLUE data/label checks, modality checks, LoRA, model cards."""

from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import (
    AutoModelForSequenceClassification,
    Data2VecAudioConfig,
    Data2VecAudioForSequenceClassification,
    Data2VecTextConfig,
    Data2VecTextForQuestionAnswering,
    Data2VecTextForSequenceClassification,
    Data2VecVisionConfig,
    Data2VecVisionForImageClassification,
    Trainer,
    TrainingArguments,
)

from d2v_hf.finetuning import (
    GLUE_TASKS,
    ClassificationTrainer,
    apply_lora,
    check_head_size,
    check_model_modality,
    default_lora_target_modules,
    detect_modality,
    disable_loss_kwargs,
    encode_glue_labels,
    get_glue_label_info,
    load_glue_datasets,
    merge_and_save,
    save_and_push_model_card,
    task_to_keys,
)
from d2v_hf.modelcard import build_model_card, save_model_card


TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------------------------
# GLUE data and labels
# --------------------------------------------------------------------------------------------------------------------


def test_task_to_keys_covers_the_nine_glue_tasks():
    assert (
        set(task_to_keys) == set(GLUE_TASKS) == {"cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb", "wnli"}
    )
    assert task_to_keys["stsb"] == ("sentence1", "sentence2") and task_to_keys["sst2"] == ("sentence", None)


def test_unknown_task_lists_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="Unknown GLUE task 'sst3'; valid task names are: cola, mnli, mrpc"):
        load_glue_datasets("sst3", train_file=str(tmp_path / "x.tsv"))


def test_sst2_tsv_labels_map_to_hub_ids(tmp_path):
    # GLUE TSV: unbalanced quotes must not swallow lines (no quoting).
    train = write(tmp_path / "train.tsv", 'sentence\tlabel\na " quoted start\t1\nplain\t0\n')
    raw = load_glue_datasets("sst2", train_file=str(train), validation_file=str(train))
    assert raw["train"]["sentence"] == ['a " quoted start', "plain"]
    info = get_glue_label_info(raw, "sst2")
    assert not info.is_regression and info.label_list == ["negative", "positive"] and info.num_labels == 2
    assert encode_glue_labels(raw, info)["validation"]["label"] == [1, 0]


def test_stsb_tsv_score_column_is_a_regression_label(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    train = write(tmp_path / "train.tsv", header + "0\tg\tf\ty\t1\tn\tn\tA plane.\tAn air plane.\t5.000\n")
    raw = load_glue_datasets("stsb", train_file=str(train))
    info = get_glue_label_info(raw, "stsb")
    assert info.is_regression and info.num_labels == 1
    encoded = encode_glue_labels(raw, info)
    assert encoded["train"]["label"] == [5.0] and encoded["train"].features["label"].dtype == "float32"
    bad = write(tmp_path / "bad.tsv", header + "0\tg\tf\ty\t1\tn\tn\tA.\tB.\thigh\n")
    with pytest.raises(ValueError, match="Label 'high' \\(row 0 of the train data\\) is not a number"):
        encode_glue_labels(load_glue_datasets("stsb", train_file=str(bad)), info)


def test_mnli_tsv_string_labels_and_columns(tmp_path):
    text = "index\tsentence1\tsentence2\tgold_label\n0\tA man.\tA person.\tentailment\n1\tA.\tB.\tcontradiction\n"
    train = write(tmp_path / "train.tsv", text)
    raw = load_glue_datasets("mnli", train_file=str(train), validation_file=str(train))
    assert {"premise", "hypothesis", "label"} <= set(raw["train"].column_names)
    assert "validation_matched" in raw
    encoded = encode_glue_labels(raw, get_glue_label_info(raw, "mnli"))
    assert encoded["train"]["label"] == [0, 2]  # Hub ids: entailment 0, neutral 1, contradiction 2


def test_label_outside_the_label_set(tmp_path):
    train = write(tmp_path / "train.tsv", "sentence\tlabel\ngood\t1\nodd\t2\n")
    raw = load_glue_datasets("sst2", train_file=str(train))
    with pytest.raises(ValueError, match=r"Label '2' \(row 1 of the train data\) is not in the label set"):
        encode_glue_labels(raw, get_glue_label_info(raw, "sst2"))
    mnli = write(tmp_path / "mnli.tsv", "sentence1\tsentence2\tgold_label\nA.\tB.\tmaybe\n")
    raw = load_glue_datasets("mnli", train_file=str(mnli))
    with pytest.raises(ValueError, match="Label 'maybe'.*'entailment', 'neutral', 'contradiction'"):
        encode_glue_labels(raw, get_glue_label_info(raw, "mnli"))


def test_custom_csv_labels_from_train_set_and_unseen_validation_label(tmp_path):
    train = write(tmp_path / "train.csv", "text,label\nyes,spam\nno,ham\n")
    validation = write(tmp_path / "dev.csv", "text,label\nmaybe,eggs\n")
    raw = load_glue_datasets(None, train_file=str(train), validation_file=str(validation))
    info = get_glue_label_info(raw, None)
    assert info.label_list == ["ham", "spam"]
    with pytest.raises(ValueError, match="Label 'eggs' \\(row 0 of the validation data\\)"):
        encode_glue_labels(raw, info)


def test_json_lines_file(tmp_path):
    train = write(tmp_path / "train.json", '{"sentence": "fine", "label": 1}\n{"sentence": "meh", "label": 0}\n')
    raw = load_glue_datasets("sst2", train_file=str(train))
    assert raw["train"]["sentence"] == ["fine", "meh"]


def test_missing_text_or_label_columns_are_named(tmp_path):
    no_text = write(tmp_path / "no_text.tsv", "text\tlabel\nfine\t1\n")
    with pytest.raises(ValueError, match=r"lacks the text column 'sentence'.*columns present: \['text', 'label'\]"):
        load_glue_datasets("sst2", train_file=str(no_text))
    no_label = write(tmp_path / "no_label.tsv", "index\tsentence1\tsentence2\n0\tA.\tB.\n")
    with pytest.raises(ValueError, match=r"lacks a label column.*'score'.*columns present: \['index', 'sentence1'"):
        load_glue_datasets("stsb", train_file=str(no_label))


def test_empty_validation_file(tmp_path):
    train = write(tmp_path / "train.tsv", "sentence\tlabel\nfine\t1\n")
    header_only = write(tmp_path / "dev.tsv", "sentence\tlabel\n")
    with pytest.raises(ValueError, match="validation file .*dev.tsv' has no rows"):
        load_glue_datasets("sst2", train_file=str(train), validation_file=str(header_only))
    empty = write(tmp_path / "empty.tsv", "")
    with pytest.raises(ValueError, match="validation file .*empty.tsv' is empty"):
        load_glue_datasets("sst2", train_file=str(train), validation_file=str(empty))
    with pytest.raises(ValueError, match="Unsupported validation file extension '.txt'"):
        load_glue_datasets("sst2", train_file=str(train), validation_file=str(write(tmp_path / "d.txt", "x")))


@pytest.mark.real_data
def test_real_glue_files_load(shared_data):
    raw = load_glue_datasets(
        "stsb",
        train_file=str(shared_data / "glue" / "stsb" / "train.tsv"),
        validation_file=str(shared_data / "glue" / "stsb" / "dev.tsv"),
    )
    assert (len(raw["train"]), len(raw["validation"])) == (5749, 1500)
    encoded = encode_glue_labels(raw, get_glue_label_info(raw, "stsb"))
    assert 0.0 <= min(encoded["validation"]["label"]) and max(encoded["validation"]["label"]) <= 5.0


# --------------------------------------------------------------------------------------------------------------------
# Modality and head checks
# --------------------------------------------------------------------------------------------------------------------


def test_detect_modality():
    assert detect_modality(Data2VecTextConfig(**TINY)) == "text"
    assert detect_modality(Data2VecAudioConfig(**TINY)) == "audio"
    assert detect_modality(Data2VecVisionConfig(**TINY)) == "vision"


@pytest.mark.parametrize(
    "config, found", [(Data2VecAudioConfig(**TINY), "audio"), (Data2VecVisionConfig(**TINY), "vision")]
)
def test_check_model_modality_names_what_it_found(config, found):
    with pytest.raises(ValueError, match=f"run_glue.py fine-tunes text models, but .* is an? {found} model"):
        check_model_modality(config, "text", "run_glue.py")
    check_model_modality(Data2VecTextConfig(**TINY), "text")


def test_check_head_size():
    config = Data2VecTextConfig(num_labels=2, architectures=["Data2VecTextForSequenceClassification"], **TINY)
    with pytest.raises(ValueError, match="2-label classification head.*needs 1.*--ignore_mismatched_sizes"):
        check_head_size(config, 1)
    check_head_size(config, 1, ignore_mismatched_sizes=True)
    check_head_size(Data2VecTextConfig(architectures=["Data2VecTextModel"], **TINY), 1)


# --------------------------------------------------------------------------------------------------------------------
# LoRA
# --------------------------------------------------------------------------------------------------------------------


def _tiny_classifier(seed=0):
    torch.manual_seed(seed)
    config = Data2VecTextConfig(vocab_size=50, max_position_embeddings=34, num_labels=3, **TINY)
    return Data2VecTextForSequenceClassification(config).eval()


def _trainable_names(model):
    return [name for name, p in model.named_parameters() if p.requires_grad]


def test_lora_trains_only_adapters_and_head():
    model = apply_lora(_tiny_classifier(), r=4)
    trainable = _trainable_names(model)
    assert trainable and all("lora_" in name or "modules_to_save" in name for name in trainable)
    assert any("query.lora_A" in name for name in trainable) and any("value.lora_B" in name for name in trainable)
    assert not any("key.lora" in name for name in trainable)
    assert any("classifier.modules_to_save" in name for name in trainable)
    total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for n, p in model.named_parameters() if n in trainable) < total / 2


@pytest.mark.parametrize(
    "model_class, config, targets, head",
    [
        (
            Data2VecVisionForImageClassification,
            Data2VecVisionConfig(image_size=32, patch_size=8, **TINY),
            ["query", "value"],
            "classifier",
        ),
        (
            Data2VecAudioForSequenceClassification,
            Data2VecAudioConfig(conv_dim=(32, 32), conv_kernel=(8, 8), conv_stride=(4, 4), **TINY),
            ["q_proj", "v_proj"],
            "classifier",
        ),
        (
            Data2VecTextForQuestionAnswering,
            Data2VecTextConfig(vocab_size=50, **TINY),
            ["query", "value"],
            "qa_outputs",
        ),
    ],
)
def test_lora_default_targets_per_backbone(model_class, config, targets, head):
    model = model_class(config)
    assert default_lora_target_modules(model) == targets
    trainable = _trainable_names(apply_lora(model, r=2))
    assert all("lora_" in n or "modules_to_save" in n for n in trainable)
    assert {t for t in targets if any(f"{t}.lora_A" in n for n in trainable)} == set(targets)
    assert any(f"{head}.modules_to_save" in n for n in trainable)


def test_lora_bad_target_module():
    with pytest.raises(ValueError, match=r"LoRA target module\(s\) \['q_proj'\] not found"):
        apply_lora(_tiny_classifier(), target_modules=["q_proj"])


def test_merged_model_equals_adapter_model(tmp_path):
    inputs = {"input_ids": torch.randint(3, 50, (4, 12), generator=torch.Generator().manual_seed(1))}
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    inputs["attention_mask"][0, 8:] = 0
    with torch.no_grad():
        original = _tiny_classifier()(**inputs).logits

    model = apply_lora(_tiny_classifier(), r=4, lora_dropout=0.0)
    # A few optimizer steps so the adapters (LoRA B starts at zero) and the head copy really change the outputs.
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    model.train()
    for _ in range(5):
        loss = model(**inputs, labels=torch.tensor([0, 1, 2, 0])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        adapted = model(**inputs).logits
    assert (adapted - original).abs().max() > 1e-2

    merge_and_save(model, tmp_path / "merged")
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    assert type(merged) is Data2VecTextForSequenceClassification
    assert not any("lora" in name for name in merged.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(merged(**inputs).logits, adapted, atol=1e-5, rtol=0)
        # merge_and_save merged a copy: the adapter model is unchanged and still usable.
        torch.testing.assert_close(model(**inputs).logits, adapted, atol=0, rtol=0)


def test_disable_loss_kwargs_is_read_by_trainer(tmp_path):
    model = apply_lora(_tiny_classifier(), r=2)
    disable_loss_kwargs(model)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    assert Trainer(model=model, args=args).model_accepts_loss_kwargs is False
    assert Trainer(model=_tiny_classifier(), args=args).model_accepts_loss_kwargs is True  # the default it fixes


# --------------------------------------------------------------------------------------------------------------------
# Model cards
# --------------------------------------------------------------------------------------------------------------------


def test_finetuning_model_card_has_model_index(tmp_path):
    card = build_model_card(
        model_name="tiny-sst2",
        base_model="facebook/data2vec-text-base",
        task_type="text-classification",
        task_name="GLUE SST2",
        dataset_name="GLUE SST2",
        dataset_type="nyu-mll/glue",
        dataset_config="sst2",
        dataset_split="validation",
        datasets=["nyu-mll/glue"],
        eval_results={"eval_accuracy": 0.875, "eval_loss": 0.3, "eval_runtime": 1.5, "epoch": 3.0},
        training_details={"learning_rate": 2e-5, "unused": None},
    )
    path = save_model_card(card, tmp_path / "out")
    loaded = ModelCard.load(path)
    assert loaded.data.library_name == "transformers" and "data2vec" in loaded.data.tags
    assert loaded.data.base_model == "facebook/data2vec-text-base" and loaded.data.datasets == ["nyu-mll/glue"]
    results = loaded.data.eval_results
    assert [(r.metric_type, r.metric_value, r.dataset_config) for r in results] == [("accuracy", 0.875, "sst2")]
    assert "| accuracy | 0.875 |" in loaded.text and "| loss | 0.3 |" in loaded.text and "unused" not in loaded.text


def test_model_card_with_several_configs_and_a_pretraining_card():
    card = build_model_card(
        model_name="xquad",
        task_type="question-answering",
        dataset_name="XQuAD",
        dataset_type="google/xquad",
        eval_results={"en": {"exact_match": 50.0, "f1": 60.0}, "de": {"exact_match": 40.0, "f1": 55.0}},
    )
    assert sorted((r.dataset_config, r.metric_type) for r in card.data.eval_results)[:2] == [
        ("de", "exact_match"),
        ("de", "f1"),
    ]
    assert "| config | exact_match | f1 |" in card.text
    pretraining = build_model_card(
        model_name="data2vec-text-tiny",
        training_details={"recipe": "data2vec text, EMA 0.999 -> 0.9999", "final_loss": 0.12},
        extra_markdown="## Losses\n\nsmooth L1 regression on top-8 teacher layers",
        tags=["pretraining"],
    )
    assert pretraining.data.eval_results is None and "model-index" not in str(pretraining)
    assert "## Losses" in pretraining.text and "| final_loss | 0.12 |" in pretraining.text
    with pytest.raises(ValueError, match="task_type"):
        build_model_card(model_name="x", eval_results={"accuracy": 1.0})


def test_push_to_hub_uploads_our_card(tmp_path):
    card = build_model_card(model_name="ours", training_details={"marker": "d2v-card"})
    model = Data2VecTextForSequenceClassification(Data2VecTextConfig(vocab_size=50, **TINY))

    class OfflineTrainer(ClassificationTrainer):
        def push_to_hub(self, **kwargs):
            self.create_model_card(**kwargs)  # as Trainer.push_to_hub does before uploading the output folder
            return (Path(self.args.output_dir) / "README.md").read_text()

    def trainer(output_dir):
        args = TrainingArguments(output_dir=str(output_dir), report_to="none", use_cpu=True)
        offline = OfflineTrainer(model=model, args=args)
        offline.args.push_to_hub = True  # after __init__, which would create the Hub repo
        return offline

    ours = trainer(tmp_path / "ours")
    save_and_push_model_card(ours, card, finetuned_from="base")
    assert "d2v-card" in (tmp_path / "ours" / "README.md").read_text()
    assert "d2v-card" in ours.push_to_hub(finetuned_from="base")  # the card the Trainer uploads is ours
    plain = trainer(tmp_path / "plain")
    plain.create_model_card(model_name="plain")  # no card written by the script: the Trainer's own card
    assert "d2v-card" not in (tmp_path / "plain" / "README.md").read_text()
