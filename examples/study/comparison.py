"""
The checkpoint comparison's protocol (`compare_checkpoints.py`): every checkpoint goes through the same steps on
every task of its modality, and every step's result is saved as soon as it exists, so an interrupted comparison
resumes where it stopped.

Per (checkpoint, task):
1. A task of another modality, or whose data cannot be reached, becomes a stated skip.
2. Frozen-feature probe, one per seed (the seed draws the probe's training subset): pooled last-layer features
   (pooling per family, `comparison_tasks.probe_pooling`), a linear model whose regularisation is chosen on a
   held-out part of the probe's training data, scored on the task's evaluation set.
3. Learning-rate sweep: one fine-tuning run per candidate rate (first seed), trained on the training data minus a
   held-out part (`--model_selection_fraction`, the same split for every rate) and scored on that part.
4. Fine-tuning with the chosen rate, one run per seed, scored on the task's evaluation set.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoImageProcessor, AutoModel, AutoTokenizer

from d2v_hf.atomic_io import atomic_write_text
from d2v_hf.finetuning import detect_modality

from comparison_tasks import (
    TASKS,
    TaskUnavailable,
    checkpoint_modality,
    classification_probe_data,
    finetune_arguments,
    finetune_score,
    glue_probe_data,
    glue_probe_score,
    prefix_tokens,
    probe_pooling,
    task_data,
)
from probes import extract_features, fit_probe, text_features
from study_utils import EXAMPLE_FOLDERS, cli_args, common_training_kwargs, environment_info, load_example


# learning-rate candidates per modality when --learning_rates is not given: the data2vec paper's GLUE sweep for text
DEFAULT_LEARNING_RATES = {"text": "1e-5,2e-5,3e-5,4e-5", "vision": "2e-5,5e-5,1e-4", "audio": "3e-5,1e-4,3e-4"}
# the settings that change results: a resumed comparison must use the same ones
RESULT_SETTINGS = (
    "seeds", "learning_rates", "max_steps", "batch_size", "max_train_samples", "max_eval_samples",
    "probe_train_samples", "model_selection_fraction", "max_seq_length", "qa_max_seq_length", "qa_doc_stride",
    "audio_clip_seconds", "digit_voices", "warmup_ratio", "weight_decay", "xquad_languages",
)  # fmt: skip


@dataclass
class CompareArguments:
    """Which checkpoints, which tasks, and the protocol's sizes. Every flag is recorded in the results."""

    checkpoints: str = field(
        metadata={
            "help": "name=path_or_hub_id pairs, comma-separated, e.g. 'data2vec=facebook/data2vec-text-base,"
            "roberta=roberta-base'; 'name=random:path_or_hub_id' is a random initialisation of that architecture "
            "(the no-pretraining baseline). The first is the reference of the paired differences (--reference)."
        }
    )
    tasks: str = field(
        default="sst2,stsb,xquad,fashion_mnist,spoken_digits",
        metadata={
            "help": "Comma-separated: GLUE (cola sst2 mrpc qqp stsb mnli qnli rte wnli), xquad, squad, squad_v2, "
            "fashion_mnist, images (--image_*_dir), spoken_digits (espeak-ng), speech (--audio_*_dir)."
        },
    )
    output_dir: str = field(default="comparison", metadata={"help": "Results, runs and the report go here."})
    data_dir: str = field(default="../shared/data", metadata={"help": "Local data: glue/, xquad/, vision/, speech/."})
    seeds: str = field(default="0,1,2", metadata={"help": "Seeds of the probes and of the final fine-tuning runs."})
    learning_rates: str | None = field(
        default=None,
        metadata={"help": "Fine-tuning candidates (comma-separated); default per modality (text: 1e-5 ... 4e-5)."},
    )
    max_steps: int = field(default=300, metadata={"help": "Optimizer steps of every fine-tuning run."})
    batch_size: int = field(default=32, metadata={"help": "Fine-tuning batch size."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Linear warmup over this share of the steps."})
    weight_decay: float = field(default=0.01, metadata={"help": "Fine-tuning weight decay."})
    max_train_samples: int | None = field(default=2000, metadata={"help": "Fine-tuning examples per task."})
    max_eval_samples: int | None = field(default=1000, metadata={"help": "Evaluation examples per task."})
    probe_train_samples: int | None = field(default=2000, metadata={"help": "Training examples of a probe."})
    model_selection_fraction: float = field(
        default=0.2, metadata={"help": "Share of the training data held out to choose the learning rate."}
    )
    max_seq_length: int = field(default=128, metadata={"help": "GLUE: tokens per example."})
    qa_max_seq_length: int = field(default=256, metadata={"help": "QA: tokens per feature."})
    qa_doc_stride: int = field(default=64, metadata={"help": "QA: overlap of context windows."})
    xquad_languages: str = field(
        default="ar,de,el,en,es,hi,ro,ru,th,tr,vi,zh", metadata={"help": "XQuAD: evaluation languages."}
    )
    audio_clip_seconds: float = field(default=1.0, metadata={"help": "Audio: seconds of each clip."})
    digit_voices: int = field(default=64, metadata={"help": "spoken_digits: training voices (of 64)."})
    probe: bool = field(default=True, metadata={"help": "Run the frozen-feature probes."})
    finetune: bool = field(default=True, metadata={"help": "Run the learning-rate sweep and fine-tuning."})
    reference: str | None = field(default=None, metadata={"help": "Checkpoint name the others are compared to."})
    glue_dir: str | None = field(default=None, metadata={"help": "Folder with train.tsv/dev.tsv (one GLUE task)."})
    image_dataset_name: str | None = field(
        default=None, metadata={"help": "Task 'images': a Hub dataset (e.g. uoft-cs/cifar10) instead of folders."}
    )
    image_column_name: str = field(
        default="image", metadata={"help": "Task 'images': the Hub dataset's image column."}
    )
    audio_dataset_name: str | None = field(
        default=None, metadata={"help": "Task 'speech': a Hub dataset instead of folders."}
    )
    audio_column_name: str = field(
        default="audio", metadata={"help": "Task 'speech': the Hub dataset's audio column."}
    )
    label_column_name: str = field(default="label", metadata={"help": "Hub image / audio datasets: label column."})
    image_train_dir: str | None = field(default=None, metadata={"help": "Task 'images': class folders."})
    image_validation_dir: str | None = field(default=None, metadata={"help": "Task 'images': evaluation folders."})
    audio_train_dir: str | None = field(default=None, metadata={"help": "Task 'speech': class folders."})
    audio_validation_dir: str | None = field(default=None, metadata={"help": "Task 'speech': evaluation folders."})
    keep_models: bool = field(default=False, metadata={"help": "Keep each fine-tuned model's weights."})
    overwrite: bool = field(default=False, metadata={"help": "Discard the results of a previous comparison."})
    report_path: str | None = field(default=None, metadata={"help": "Markdown report (default output_dir)."})
    report_note: str | None = field(default=None, metadata={"help": "A line under the report's title."})

    def __post_init__(self):
        self.checkpoint_list = parse_checkpoints(self.checkpoints)
        self.task_list = [t.strip() for t in self.tasks.split(",") if t.strip()]
        unknown = [t for t in self.task_list if t not in TASKS]
        if unknown:
            raise ValueError(f"--tasks: unknown {unknown}; known: {', '.join(TASKS)}.")
        try:
            self.seed_list = [int(s) for s in self.seeds.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"--seeds {self.seeds!r} must be comma-separated integers.") from None
        if not self.seed_list:
            raise ValueError("--seeds is empty.")
        if self.reference is not None and self.reference not in dict(self.checkpoint_list):
            raise ValueError(f"--reference {self.reference!r} is not a name in --checkpoints.")
        if not 0.0 < self.model_selection_fraction < 1.0:
            raise ValueError(f"--model_selection_fraction must be in (0, 1), got {self.model_selection_fraction}.")
        for name in ("max_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        if not (self.probe or self.finetune):
            raise ValueError("--probe false and --finetune false: there is nothing to measure.")
        self.rates = {m: parse_rates(self.learning_rates or DEFAULT_LEARNING_RATES[m]) for m in DEFAULT_LEARNING_RATES}


def parse_checkpoints(text: str) -> list[tuple[str, str]]:
    pairs = []
    for item in [part.strip() for part in text.split(",") if part.strip()]:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ValueError(f"--checkpoints: {item!r} is not name=path_or_hub_id.")
        pairs.append((name.strip(), path.strip()))
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"--checkpoints: names must be unique, got {names}.")
    if not pairs:
        raise ValueError("--checkpoints is empty.")
    return pairs


def parse_rates(text: str) -> list[float]:
    try:
        rates = [float(rate) for rate in text.split(",") if rate.strip()]
    except ValueError:
        raise ValueError(f"--learning_rates {text!r} must be comma-separated numbers.") from None
    if not rates or any(rate <= 0 for rate in rates):
        raise ValueError(f"--learning_rates {text!r}: give one or more positive rates.")
    return rates


def settings_of(args: CompareArguments) -> dict:
    values = asdict(args)
    return {name: values[name] for name in RESULT_SETTINGS}


class ResultStore:
    """`results.json` in the output folder, rewritten whole (atomically) after every finished step."""

    def __init__(self, args: CompareArguments, command: str):
        self.path = Path(args.output_dir) / "results.json"
        fresh = {"settings": settings_of(args), "pairs": {}}
        if self.path.is_file() and not args.overwrite:
            self.data = json.loads(self.path.read_text())
            if self.data.get("settings") != fresh["settings"]:
                changed = [
                    k for k in fresh["settings"] if self.data.get("settings", {}).get(k) != fresh["settings"][k]
                ]
                raise ValueError(
                    f"{self.path} holds a comparison with other settings ({', '.join(changed)}); pass the same "
                    "flags to resume it, --overwrite to discard it, or another --output_dir."
                )
        else:
            self.data = fresh
        self.data.update(command=command, environment=environment_info())
        self.data["checkpoints"] = dict(args.checkpoint_list)
        self.data["tasks"] = args.task_list
        self.data["reference"] = args.reference or args.checkpoint_list[0][0]
        self.data["seeds"] = args.seed_list

    def pair(self, name: str, task: str) -> dict:
        return self.data["pairs"].setdefault(f"{name}|{task}", {"checkpoint": name, "task": task})

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=1))


def _mean_pooling_config(args, checkpoint: str, model_type: str) -> str | None:
    """BEiT-style checkpoints fine-tune with mean pooling of the patch tokens: a config folder that turns it on."""
    if model_type not in ("beit", "data2vec-vision"):
        return None
    config = AutoConfig.from_pretrained(checkpoint)
    if getattr(config, "use_mean_pooling", True):
        return None
    config.use_mean_pooling = True
    folder = Path(args.output_dir) / "configs" / checkpoint.replace("/", "--").strip(".-")
    config.save_pretrained(folder)
    return str(folder)


def run_finetuning(args, checkpoint, task, data, rate, seed, model_selection, output_dir, config_name=None) -> dict:
    """One fine-tuning run through the task's example script; its scores, command and time."""
    script, arguments = finetune_arguments(args, task, data, model_selection)
    argv = cli_args(
        model_name_or_path=checkpoint,
        config_name=config_name,
        do_train=True,
        do_eval=True,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=rate,
        warmup_steps=max(1, int(args.warmup_ratio * args.max_steps)),
        weight_decay=args.weight_decay,
        seed=seed,
        output_dir=output_dir,
        **arguments,
        **common_training_kwargs(),
    )
    start = time.time()
    metrics = load_example(script).main(argv)
    if not args.keep_models:  # the scores are kept; base-size weights would fill the disk
        for path in Path(output_dir).glob("*.safetensors"):
            path.unlink()
    return {
        "scores": finetune_score(task, metrics),
        "wall_time_s": time.time() - start,
        "command": f"python examples/{EXAMPLE_FOLDERS[script]}/{script}.py " + shlex.join(argv),
    }


def run_probe(args, checkpoint, model_type, task, data, seed) -> dict:
    """One frozen-feature probe: its score (percent), the regularisation chosen, the pooling and the sizes."""
    pooling, _ = probe_pooling(task.modality, model_type)
    start = time.time()
    if task.kind == "glue":
        train_texts, eval_texts, train_targets, eval_targets = glue_probe_data(args, task, data, seed)
        length = args.max_seq_length
        train = (text_features(checkpoint, *train_texts, max_length=length), train_targets)
        test = (text_features(checkpoint, *eval_texts, max_length=length), eval_targets)
        result = fit_probe(train, test, glue_probe_score(task), regression=task.name == "stsb", seed=seed)
    else:
        train_set, test_set = classification_probe_data(args, task, data, checkpoint, seed)
        kwargs = dict(max_seconds=args.audio_clip_seconds, pooling=pooling, prefix_tokens=prefix_tokens(model_type))
        train = extract_features(checkpoint, task.modality, train_set, **kwargs)
        test = extract_features(checkpoint, task.modality, test_set, **kwargs)
        result = fit_probe(train, test, lambda p, t: 100 * float(np.mean(p == t)), seed=seed)
    return {
        **result,
        "train_examples": len(train[1]),
        "eval_examples": len(test[1]),
        "wall_time_s": time.time() - start,
    }


RANDOM_PREFIX = "random:"


def resolve_checkpoint(args, name: str, checkpoint: str) -> str:
    """
    The folder or Hub id to load. `random:<path_or_id>` is a random initialisation of that checkpoint's
    architecture (seeded, with its tokenizer / processor files): the no-pretraining baseline of the same model.
    """
    if not checkpoint.startswith(RANDOM_PREFIX):
        return checkpoint
    source = checkpoint[len(RANDOM_PREFIX) :]
    folder = Path(args.output_dir) / "checkpoints" / name
    if not (folder / "config.json").is_file():
        config = AutoConfig.from_pretrained(source)
        torch.manual_seed(0)
        AutoModel.from_config(config).save_pretrained(folder)
        # the source's tokenizer / image processor / feature extractor, so that the scripts read inputs alike
        preprocessor = {"text": AutoTokenizer, "vision": AutoImageProcessor, "audio": AutoFeatureExtractor}
        try:
            preprocessor[detect_modality(config)].from_pretrained(source).save_pretrained(folder)
        except (OSError, KeyError, ValueError):  # none saved with the source: the scripts use their defaults
            pass
    return str(folder)


def _article(word: str | None) -> str:
    return "an" if word and word[0] in "aeiou" else "a"


def compare_pair(args, store: ResultStore, name: str, checkpoint: str, task_name: str) -> None:
    """Steps 1-4 of the module docstring for one (checkpoint, task); finished steps are not run again."""
    task, record = TASKS[task_name], store.pair(name, task_name)
    if record.get("path", checkpoint) != checkpoint:  # the name now stands for another checkpoint: start it again
        record.clear()
        record.update(checkpoint=name, task=task_name)
    record["path"] = checkpoint
    checkpoint = resolve_checkpoint(args, name, checkpoint)
    modality, model_type = checkpoint_modality(checkpoint)
    record.update(model_type=model_type, modality=modality)
    if modality != task.modality:
        modality = modality or "unknown-modality"
        reason = f"{name} is {_article(modality)} {modality} model; {task_name} is {_article(task.modality)} "
        record.update(status="skipped", reason=f"{reason}{task.modality} task")
        return store.save()
    try:
        data = task_data(args, task)
    except TaskUnavailable as reason:
        record.update(status="skipped", reason=str(reason))
        return store.save()
    record["pooling"] = probe_pooling(modality, model_type)[1]
    run_dir = Path(args.output_dir) / "runs" / name / task_name
    if args.probe and task.kind in ("glue", "image", "audio"):
        probes = record.setdefault("probe", {})
        for seed in args.seed_list:
            if str(seed) not in probes:
                probes[str(seed)] = run_probe(args, checkpoint, model_type, task, data, seed)
                store.save()
    if args.finetune:
        config_name = _mean_pooling_config(args, checkpoint, model_type)
        sweep = record.setdefault("sweep", {})
        for rate in args.rates[modality]:
            if str(rate) not in sweep:
                out = run_dir / f"sweep-lr{rate}"
                sweep[str(rate)] = run_finetuning(
                    args, checkpoint, task, data, rate, args.seed_list[0], True, out, config_name
                )
                store.save()
        chosen = max(args.rates[modality], key=lambda rate: sweep[str(rate)]["scores"]["score"])
        record["chosen_learning_rate"] = chosen
        runs = record.setdefault("finetune", {})
        for seed in args.seed_list:
            if str(seed) not in runs:
                out = run_dir / f"seed{seed}"
                runs[str(seed)] = run_finetuning(args, checkpoint, task, data, chosen, seed, False, out, config_name)
                store.save()
    record["status"] = "done"
    store.save()


def run_comparison(args: CompareArguments, command: str) -> dict:
    """Every (checkpoint, task) pair, in order; returns the results (also in `output_dir/results.json`)."""
    store = ResultStore(args, command)
    for name, checkpoint in args.checkpoint_list:
        for task_name in args.task_list:
            compare_pair(args, store, name, checkpoint, task_name)
    return store.data


__all__ = ["CompareArguments", "ResultStore", "compare_pair", "parse_checkpoints", "run_comparison"]
