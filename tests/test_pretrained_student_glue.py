"""The product's path on real data: briefly pretrain with data2vec, export the student, fine-tune it on GLUE."""

import json

import pytest

from .fixtures import cli, glue_texts, load_example


pytestmark = pytest.mark.real_data


@pytest.fixture
def pretrained_student(shared_data, tmp_path_factory):
    """
    250 data2vec steps (about 20 s) of a 2-layer hidden-32 model on the (unlabelled) SST-2 and STS-B training
    sentences. Much shorter runs are worse than no pretraining here: at 60 steps the student's last layer sits in the
    early transient where its outputs barely vary across tokens (the standard deviation over tokens of the last
    layer's features on the first 64 SST-2 dev sentences: 0.171 at 60 steps, 0.775 at 250, 0.751 for a random init
    of the same config), and SST-2 fine-tuning from it never leaves the majority class.
    """
    root = tmp_path_factory.mktemp("pretrained")
    glue = shared_data / "glue"
    texts = glue_texts(glue / "sst2" / "train.tsv", ["sentence"], 4000)
    texts += glue_texts(glue / "stsb" / "train.tsv", ["sentence1", "sentence2"], 2000)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    overrides = (
        "backbone.hidden_size=32,backbone.intermediate_size=64,backbone.num_hidden_layers=2,average_top_k_layers=2"
    )
    load_example("run_pretraining").main([
        "--modality=text", "--model_size=tiny", f"--config_overrides={overrides}", f"--train_file={corpus}",
        "--train_tokenizer", "--tokenizer_vocab_size=1000", "--max_seq_length=64", f"--output_dir={root / 'run'}",
        "--max_steps=250", "--per_device_train_batch_size=16", "--learning_rate=1e-3", "--warmup_steps=25",
        "--eval_strategy=no", "--save_strategy=no", "--use_cpu", "--seed=0", "--report_to=none",
    ])  # fmt: skip
    history = json.loads((root / "run" / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert losses[-1] < 0.5 * losses[0], losses  # it did pretrain
    return root / "run" / "student"


def finetune(student, glue, task, tmp_path, epochs, learning_rate):
    return load_example("run_glue").main(
        cli(
            model_name_or_path=str(student),
            task_name=task,
            train_file=str(glue / task / "train.tsv"),
            validation_file=str(glue / task / "dev.tsv"),
            do_train=True,
            do_eval=True,
            max_train_samples=2000,
            max_seq_length=64,
            pad_to_max_length="false",
            num_train_epochs=epochs,
            per_device_train_batch_size=16,
            learning_rate=learning_rate,
            warmup_steps=20,
            seed=42,
            output_dir=str(tmp_path / task),
        )
    )


def test_sst2_and_stsb_from_a_pretrained_student(pretrained_student, shared_data, tmp_path):
    glue = shared_data / "glue"
    sst2 = finetune(pretrained_student, glue, "sst2", tmp_path, epochs=2, learning_rate=2e-3)
    stsb = finetune(pretrained_student, glue, "stsb", tmp_path, epochs=3, learning_rate=2e-3)
    print(f"SST-2 accuracy {sst2['eval_accuracy']:.4f}; STS-B Pearson {stsb['eval_pearson']:.4f}")
    # Measured SST-2 0.628 and STS-B Pearson 0.116 (the random-init runs of test_examples_finetuning.py: 0.64-0.66 and
    # 0.10-0.15; at this scale pretraining neither helps nor hurts, see docs/study.md). Chance: 0.509 (majority class,
    # one standard error 0.017) and 0 (standard error 0.026 on 1,500 pairs).
    assert sst2["eval_accuracy"] > 0.58
    assert stsb["eval_pearson"] > 0.05
