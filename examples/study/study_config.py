"""
What the study runs: its modalities and arms, the Hugging Face class behind each baseline, the probes and
fine-tuning tasks, the sizes of its `quick`, `standard` and `full` modes, and [`StudyArguments`] (every knob; a
field left at `None` takes its mode's value). The rest of the study reads these names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from transformers import CONFIG_MAPPING

from d2v_hf.argument_parsing import split_overrides
from d2v_hf.configuration_data2vec_pretraining import TEXT_MASK_STRATEGIES, Data2VecPretrainingConfig

from study_utils import comma_list, load_example


MODALITIES = ("text", "vision", "audio")

# Per modality: data2vec 1.0 and 2.0, the modality's own self-supervised objective, and no pretraining at all.
ARMS = {
    "text": ("data2vec", "data2vec2", "mlm", "random"),
    "vision": ("data2vec", "data2vec2", "mae", "random"),
    "audio": ("data2vec", "data2vec2", "wav2vec2", "random"),
}
DATA2VEC_ARMS = ("data2vec", "data2vec2")  # the arms trained by Data2VecForPretraining (with an EMA teacher)
# the flag that sets each of these arms' recipe fields over the released ones
RECIPE_OVERRIDES = {"data2vec": "data2vec_overrides", "data2vec2": "data2vec2_overrides"}
ALL_ARMS = (*DATA2VEC_ARMS, "mlm", "mae", "wav2vec2", "random")

ARM_TITLES = {
    "data2vec": "data2vec 1.0",
    "data2vec2": "data2vec 2.0",
    "mlm": "RoBERTa-style MLM",
    "mae": "MAE",
    "wav2vec2": "wav2vec 2.0",
    "random": "random init",
}

# The Hugging Face class each pretraining arm trains (the baselines are Transformers' own implementations).
PRETRAINING_CLASSES = {
    "data2vec": "d2v_hf.Data2VecForPretraining",
    "data2vec2": "d2v_hf.Data2VecForPretraining (mode=data2vec2)",
    "mlm": "transformers.Data2VecTextForMaskedLM",
    "mae": "transformers.ViTMAEForPreTraining",
    "wav2vec2": "transformers.Wav2Vec2ForPreTraining",
}

# One backbone family per modality, shared by every arm, so that only the objective differs: RoBERTa's
# architecture (Data2VecTextModel) for text, ViT for images (the encoder MAE pretrains), wav2vec 2.0 for speech.
BACKBONE_TYPES = {"text": "data2vec-text", "vision": "vit", "audio": "wav2vec2"}

# The probes of each modality: (key, title). The first is the modality's main probe, the one the decision reads.
PROBES = {
    "text": (
        ("sst2", "SST-2 accuracy, logistic regression"),
        ("sst2_knn", "SST-2 accuracy, 20-NN (cosine)"),
        ("stsb", "STS-B (Pearson + Spearman) / 2, ridge regression on the absolute difference and product"),
        ("stsb_cosine", "STS-B Spearman of the cosine similarity (no training)"),
    ),
    "vision": (
        ("fashion_mnist", "Fashion-MNIST accuracy, logistic regression"),
        ("fashion_mnist_knn", "Fashion-MNIST accuracy, 20-NN (cosine)"),
    ),
    "audio": (
        ("spoken_digits", "spoken-digit accuracy (unseen voices), logistic regression"),
        ("spoken_digits_knn", "spoken-digit accuracy (unseen voices), 20-NN (cosine)"),
    ),
}
MAIN_PROBE = {modality: probes[0][0] for modality, probes in PROBES.items()}

# The text arms' pretraining corpora: GCIDE's dictionary prose, or the training sentences of the GLUE tasks the text
# arms are probed on (labels unused), the in-domain choice the other modalities make (images pretrain on the
# Fashion-MNIST training images, speech on the recordings plus the training voices' digits).
TEXT_CORPORA = {
    "gcide": "`gcide_en.txt.gz` (dictionary prose)",
    "glue": "the SST-2 and STS-B training sentences (labels unused)",
}


# Fine-tuning tasks (names of comparison_tasks.TASKS) per modality.
FINETUNE_TASKS = {"text": ("sst2", "stsb", "xquad"), "vision": ("fashion_mnist",), "audio": ("spoken_digits",)}
MODALITY_OF_TASK = {task: modality for modality, tasks in FINETUNE_TASKS.items() for task in tasks}


# Sizes of the modes. `quick` fits a shared 2-core CPU in 30 minutes; `standard` is sized for about 3 hours (not yet
# timed end to end); `full` is base size for one GPU. Pretraining budgets are the steps of the data2vec 1.0 arm;
# every other arm gets its FLOPs.
_PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(
        model_size="tiny",
        seeds="0,1,2",
        probe_points=4,
        text_corpus="gcide",
        text_mask_strategy="span",
        corpus_lines=12000,
        tokenizer_vocab_size=4000,
        max_seq_length=64,
        text_steps=400,
        text_batch_size=32,
        text_learning_rate=1e-3,
        vision_steps=300,
        vision_batch_size=64,
        vision_learning_rate=1e-3,
        audio_steps=250,
        audio_batch_size=8,
        audio_learning_rate=5e-4,
        audio_max_seconds=2.0,
        probe_train_samples=2000,
        probe_eval_samples=1000,
        finetune_tasks="fashion_mnist,spoken_digits",
        finetune_steps=150,
        finetune_batch_size=32,
        finetune_train_samples=2000,
        finetune_eval_samples=1000,
        text_learning_rates="3e-4,1e-3",
        vision_learning_rates="3e-4,1e-3",
        audio_learning_rates="3e-4,1e-3",
        qa_max_seq_length=256,
        qa_doc_stride=64,
        audio_clip_seconds=1.0,
        digit_voices=64,
        torch_threads=1,
        workers=2,
    ),
    "full": dict(
        model_size="base",
        seeds="0,1,2",
        probe_points=10,
        text_corpus="gcide",
        text_mask_strategy="span",
        corpus_lines=None,
        tokenizer_vocab_size=32000,
        max_seq_length=256,
        text_steps=50000,
        text_batch_size=64,
        text_learning_rate=5e-4,
        vision_steps=20000,
        vision_batch_size=256,
        vision_learning_rate=1e-3,
        audio_steps=10000,
        audio_batch_size=32,
        audio_learning_rate=5e-4,
        audio_max_seconds=5.0,
        probe_train_samples=10000,
        probe_eval_samples=None,
        finetune_tasks="sst2,stsb,xquad,fashion_mnist,spoken_digits",
        finetune_steps=3000,
        finetune_batch_size=32,
        finetune_train_samples=None,
        finetune_eval_samples=None,
        text_learning_rates="1e-5,2e-5,4e-5",
        vision_learning_rates="2e-5,5e-5,1e-4",
        audio_learning_rates="3e-5,1e-4,3e-4",
        qa_max_seq_length=384,
        qa_doc_stride=128,
        audio_clip_seconds=1.0,
        digit_voices=64,
        torch_threads=0,
        workers=1,
    ),
}


# standard: the quick mode with 10x the text pretraining (at twice the length), the image and speech budgets, more
# probe points and data, and every fine-tuning task
_PRESETS["standard"] = {
    **_PRESETS["quick"],
    "probe_points": 6,
    "corpus_lines": 60000,
    "tokenizer_vocab_size": 8000,
    "max_seq_length": 128,
    "text_steps": 2000,
    "vision_steps": 3000,
    "audio_steps": 2500,
    "probe_train_samples": 4000,
    "probe_eval_samples": None,
    "finetune_tasks": "sst2,stsb,xquad,fashion_mnist,spoken_digits",
    "finetune_steps": 400,
    "finetune_train_samples": 4000,
    "finetune_eval_samples": None,
}


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class StudyArguments:
    """What the study runs. Fields left at `None` take the value of the `mode` preset (quick, standard, full)."""

    mode: str = field(
        default="quick", metadata=_help("quick (2-core CPU, 30 min), standard (~3 h, untimed) or full (GPU).")
    )
    data_dir: str = field(default="../shared/data", metadata=_help("The real-data folder (see its README)."))
    output_dir: str = field(default="outputs/study", metadata=_help("Checkpoints, runs and partial results."))
    docs_dir: str = field(default="docs", metadata=_help("Where study.md, study_results.json and img/ go."))
    model_cards_dir: str = field(default="model_cards", metadata=_help("One folder per model, with README.md."))
    modalities: str = field(default="text,vision,audio", metadata=_help("Comma-separated: text, vision, audio."))
    arms: str = field(
        default=",".join(ALL_ARMS),
        metadata=_help("Comma-separated: data2vec, data2vec2, mlm (text), mae (vision), wav2vec2 (audio), random."),
    )
    seeds: str | None = field(default=None, metadata=_help("Seeds (pretraining, init, probe and fine-tuning)."))
    dry_run: bool = field(
        default=False,
        metadata=_help(
            "Build every arm at the mode's size and run 2 pretraining steps of each at batch 4 (no probes, no report)."
        ),
    )
    plan_only: bool = field(
        default=False,
        metadata=_help(
            "Count each arm's FLOPs per step at the mode's size, print the pretraining compute plan (steps, FLOPs, "
            "hours at --plan_tflops) and stop before any training; the plan is kept for the run of these settings."
        ),
    )
    plan_tflops: float = field(
        default=300.0,
        metadata=_help(
            "Sustained TFLOP/s that --plan_only turns FLOPs into hours with (300: about 0.3 of an H100's dense "
            "bf16 peak, an assumption, not a measurement)."
        ),
    )
    model_size: str | None = field(default=None, metadata=_help("tiny (4 x 64) or base (12 x 768)."))
    backbone_overrides: str | None = field(
        default=None,
        metadata=_help(
            "Backbone fields set for every arm over --model_size's, e.g. "
            "'hidden_size=256,intermediate_size=1024,num_attention_heads=4' (a wider backbone, same data and steps)."
        ),
    )
    data2vec_overrides: str | None = field(
        default=None,
        metadata=_help(
            "Recipe fields of the data2vec 1.0 arm set over the released ones (the other arms unchanged), e.g. "
            "data2vec 2.0's teacher decays: 'ema_decay=0.9999,ema_end_decay=0.99999'."
        ),
    )
    data2vec2_overrides: str | None = field(
        default=None,
        metadata=_help(
            "Recipe fields of the data2vec 2.0 arm set over the released ones (the other arms unchanged), e.g. "
            "'clone_batch=1': one masked copy of each sample, which then takes the other arms' samples per step."
        ),
    )
    probe_points: int | None = field(default=None, metadata=_help("Probed checkpoints along each pretraining run."))
    text_corpus: str | None = field(
        default=None,
        metadata=_help("Text: pretraining corpus, gcide (dictionary prose) or glue (SST-2 + STS-B train sentences)."),
    )
    text_mask_strategy: str | None = field(
        default=None,
        metadata=_help(
            "Text: data2vec 1.0's masks, span (the released recipe: spans of 4 tokens, all <mask>) or bert (the "
            "paper's main row, as the MLM arm masks: 15% of tokens, 80% <mask>, 10% random, 10% unchanged)."
        ),
    )
    corpus_lines: int | None = field(default=None, metadata=_help("Text: corpus lines used (evenly spaced); 0 = all."))
    tokenizer_vocab_size: int | None = field(default=None, metadata=_help("Text: BPE vocabulary size."))
    max_seq_length: int | None = field(default=None, metadata=_help("Text: pretraining block and GLUE length."))
    text_steps: int | None = field(default=None, metadata=_help("Text: data2vec 1.0 steps (sets the FLOP budget)."))
    text_batch_size: int | None = field(default=None, metadata=_help("Text: pretraining blocks per step."))
    text_learning_rate: float | None = field(default=None, metadata=_help("Text: peak pretraining lr."))
    vision_steps: int | None = field(default=None, metadata=_help("Images: data2vec 1.0 steps (the FLOP budget)."))
    vision_batch_size: int | None = field(default=None, metadata=_help("Images: pretraining images per step."))
    vision_learning_rate: float | None = field(default=None, metadata=_help("Images: peak pretraining lr."))
    audio_steps: int | None = field(default=None, metadata=_help("Speech: data2vec 1.0 steps (the FLOP budget)."))
    audio_batch_size: int | None = field(default=None, metadata=_help("Speech: pretraining clips per step."))
    audio_learning_rate: float | None = field(default=None, metadata=_help("Speech: peak pretraining lr."))
    audio_max_seconds: float | None = field(default=None, metadata=_help("Speech: pretraining crop (seconds)."))
    probe_train_samples: int | None = field(default=None, metadata=_help("Probes: training examples."))
    probe_eval_samples: int | None = field(default=None, metadata=_help("Probes: evaluation examples (None: all)."))
    finetune_tasks: str | None = field(
        default=None, metadata=_help("Fine-tuned tasks: sst2, stsb, xquad, fashion_mnist, spoken_digits ('' = none).")
    )
    finetune_steps: int | None = field(default=None, metadata=_help("Steps of every fine-tuning run."))
    finetune_batch_size: int | None = field(default=None, metadata=_help("Fine-tuning batch size."))
    finetune_train_samples: int | None = field(default=None, metadata=_help("Fine-tuning training examples."))
    finetune_eval_samples: int | None = field(default=None, metadata=_help("Fine-tuning evaluation examples."))
    text_learning_rates: str | None = field(default=None, metadata=_help("Text: fine-tuning lr candidates."))
    vision_learning_rates: str | None = field(default=None, metadata=_help("Images: fine-tuning lr candidates."))
    audio_learning_rates: str | None = field(default=None, metadata=_help("Speech: fine-tuning lr candidates."))
    qa_max_seq_length: int | None = field(default=None, metadata=_help("XQuAD: tokens per feature."))
    qa_doc_stride: int | None = field(default=None, metadata=_help("XQuAD: overlap of context windows."))
    audio_clip_seconds: float | None = field(default=None, metadata=_help("Spoken digits: seconds per clip."))
    digit_voices: int | None = field(default=None, metadata=_help("Spoken digits: training voices (of 64)."))
    torch_threads: int | None = field(
        default=None, metadata=_help("torch.set_num_threads per run (0: torch's default); 1 on a shared CPU.")
    )
    workers: int | None = field(
        default=None, metadata=_help("Runs side by side (processes); 2 on a 2-core CPU, 1 on a GPU.")
    )
    resume_checkpoints: int = field(
        default=10,
        metadata=_help(
            "Full Trainer checkpoints (optimizer, schedule, RNG, teacher) along each pretraining run, the last two "
            "kept until the run ends: a study stopped mid-run resumes that run from its last one (0: none, a "
            "stopped run starts over)."
        ),
    )
    longer_budget_results: str | None = field(
        default=None,
        metadata=_help(
            "Comma-separated study_results.json of runs with larger budgets, the same seeds and settings otherwise "
            "(steps and probe points may differ): the report says at which budget an arm that does not beat random "
            "init here does."
        ),
    )
    push_to_hub: bool = field(default=False, metadata=_help("Upload the final models with their cards."))
    hub_org: str | None = field(default=None, metadata=_help("Hub user or organisation for --push_to_hub."))
    hub_token: str | None = field(default=None, metadata=_help("Hub token (default: the logged-in one)."))

    def __post_init__(self):
        if self.mode not in _PRESETS:
            raise ValueError(f"--mode {self.mode!r}; expected one of {sorted(_PRESETS)}.")
        for key, value in _PRESETS[self.mode].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.resume_checkpoints < 0:
            raise ValueError(f"--resume_checkpoints {self.resume_checkpoints}: expected 0 (none) or more.")
        if self.corpus_lines is not None and self.corpus_lines < 0:
            raise ValueError(f"--corpus_lines {self.corpus_lines}; expected 0 (every line) or more.")
        if self.corpus_lines == 0:
            self.corpus_lines = None
        if self.plan_only and self.dry_run:
            raise ValueError("--plan_only and --dry_run: choose one (the plan counts the mode's batches, not 4).")
        if not self.plan_tflops > 0:
            raise ValueError(f"--plan_tflops {self.plan_tflops}: expected a sustained throughput above 0.")
        if self.dry_run:  # the mode's models, 4 samples a step (one for data2vec 2.0's masked copies), 1 s of audio
            for modality in MODALITIES:
                setattr(self, f"{modality}_batch_size", 4)
            self.audio_max_seconds = 1.0
            self.probe_points = 1  # the backbone saved once, at step 2
        if self.text_corpus not in TEXT_CORPORA:
            raise ValueError(f"--text_corpus {self.text_corpus!r}; expected one of {', '.join(TEXT_CORPORA)}.")
        if self.text_mask_strategy not in TEXT_MASK_STRATEGIES:
            raise ValueError(
                f"--text_mask_strategy {self.text_mask_strategy!r}; expected one of {', '.join(TEXT_MASK_STRATEGIES)}."
            )
        unknown_modalities = sorted(set(self.modality_list) - set(MODALITIES))
        if unknown_modalities or not self.modality_list:
            raise ValueError(f"--modalities {self.modalities!r}; expected some of {', '.join(MODALITIES)}.")
        unknown = sorted(set(self.arm_list) - set(ALL_ARMS))
        if unknown or not self.arm_list:
            raise ValueError(f"--arms {self.arms!r}: unknown {unknown}; expected some of {', '.join(ALL_ARMS)}.")
        unknown = sorted(set(self.finetune_task_list) - set(MODALITY_OF_TASK))
        if unknown:
            raise ValueError(f"--finetune_tasks: unknown {unknown}; expected some of {', '.join(MODALITY_OF_TASK)}.")
        try:
            seeds = self.seed_list
        except ValueError:
            raise ValueError(f"--seeds {self.seeds!r} must be comma-separated integers.") from None
        if not seeds:
            raise ValueError("--seeds is empty.")
        if len(set(seeds)) < len(seeds):
            raise ValueError(f"--seeds {self.seeds!r} repeats a seed; paired differences need distinct seeds.")
        if self.model_size not in ("tiny", "base"):
            raise ValueError(f"--model_size {self.model_size!r}; expected tiny or base.")
        self._check_backbone_overrides()
        self._check_recipe_overrides()
        self._check_sizes()
        for modality in MODALITIES:
            rates = self.learning_rates(modality)
            if not rates or any(rate <= 0 for rate in rates):
                text = getattr(self, f"{modality}_learning_rates")
                raise ValueError(f"--{modality}_learning_rates {text!r}; expected one or more positive numbers.")
        self._check_longer_runs()
        if self.push_to_hub and not self.hub_org:
            raise ValueError("--push_to_hub needs --hub_org (the Hub user or organisation to upload to).")

    def _check_sizes(self) -> None:
        """Counts and lengths a run needs at least one of (`None` = all, where the help says so)."""
        at_least_one = ["probe_points", "workers", "probe_train_samples", "finetune_steps", "finetune_batch_size"]
        at_least_one += [f"{m}_{what}" for m in MODALITIES for what in ("steps", "batch_size")]
        at_least_one += ["tokenizer_vocab_size", "max_seq_length", "qa_max_seq_length", "qa_doc_stride"]
        at_least_one += ["digit_voices"]
        optional = ["probe_eval_samples", "finetune_train_samples", "finetune_eval_samples"]
        for name in at_least_one + [name for name in optional if getattr(self, name) is not None]:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} {getattr(self, name)}; expected at least 1.")
        if self.torch_threads < 0:
            raise ValueError(f"--torch_threads {self.torch_threads}; expected 0 (torch's default) or more.")
        for name in ("audio_max_seconds", "audio_clip_seconds", *(f"{m}_learning_rate" for m in MODALITIES)):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name} {getattr(self, name)}; expected a positive number.")

    def _check_backbone_overrides(self) -> None:
        """Every override is `field=value` and names a field of each modality's backbone that runs."""
        for item in self.backbone_override_items:
            name = item.split("=", 1)[0].strip()
            if "=" not in item or not name:
                raise ValueError(f"--backbone_overrides item {item!r} is not of the form field=value.")
            for modality in self.modality_list:  # checked after --modalities
                config_class = CONFIG_MAPPING[BACKBONE_TYPES[modality]]
                if name not in config_class().to_dict():
                    raise ValueError(
                        f"--backbone_overrides {name!r}: the {modality} backbone ({config_class.__name__}) has no "
                        "such field."
                    )

    def _check_recipe_overrides(self) -> None:
        """Every item of --data2vec_overrides / --data2vec2_overrides is `field=value` with a value that the data2vec
        1.0 / 2.0 recipe of each modality that runs accepts."""
        for mode, flag in RECIPE_OVERRIDES.items():
            overrides = getattr(self, flag)
            if not overrides:
                continue
            try:
                recipe, backbone = load_example("pretraining_utils").parse_config_overrides(overrides)
                if backbone or "mode" in recipe:
                    raise ValueError("backbone fields go in --backbone_overrides, and the mode is the arm's own.")
                for modality in self.modality_list:  # checked after --modalities
                    Data2VecPretrainingConfig.from_preset(modality, **recipe, mode=mode)
            except ValueError as err:
                reason = str(err).removeprefix("--config_overrides: ")  # the script's flag is not the one given here
                raise ValueError(f"--{flag} {overrides!r}: {reason}") from None

    @property
    def backbone_override_items(self) -> list[str]:
        """`'a=1,b=[8,8]'` -> `['a=1', 'b=[8,8]']`: split at the commas before a `field=`, so lists keep theirs."""
        return split_overrides(self.backbone_overrides)

    def _check_longer_runs(self) -> None:
        """
        A longer run is this study at a larger budget: the same seeds and pretraining and probe settings of every
        modality both ran, more steps. Anything else would make "the budget at which it does" a different question.
        """
        for path in self.longer_budget_result_list:
            if not Path(path).is_file():
                raise ValueError(f"--longer_budget_results {path}: no such file.")
            try:
                longer = json.loads(Path(path).read_text(encoding="utf-8"))
                config, ran = longer["config"], longer["modalities"]
            except (ValueError, KeyError, TypeError):
                raise ValueError(
                    f"--longer_budget_results {path}: not the study_results.json of a study run."
                ) from None
            shared = [modality for modality in self.modality_list if modality in ran]
            if not shared:
                raise ValueError(f"--longer_budget_results {path}: it ran none of --modalities {self.modalities!r}.")
            preset = preset_values(config.get("mode"))
            for modality in shared:
                steps = f"{modality}_steps"
                compared = [name for name in PRETRAINING_FIELDS[modality] if name not in (steps, "probe_points")]
                for name in ["seed_list", *compared, *PROBE_FIELDS]:
                    theirs = config.get(name, preset.get(name))  # a run saved before a field existed ran its preset
                    if theirs != getattr(self, name):
                        raise ValueError(
                            f"--longer_budget_results {path}: it ran {modality} with {name}={theirs!r}, this run with "
                            f"{getattr(self, name)!r}; only the steps and probe points may differ."
                        )
                if not config.get(steps, 0) > getattr(self, steps):
                    raise ValueError(
                        f"--longer_budget_results {path}: its {steps}={config.get(steps)} is not larger than this "
                        f"run's {getattr(self, steps)}."
                    )

    @property
    def longer_budget_result_list(self) -> list[str]:
        return comma_list(self.longer_budget_results)

    @property
    def modality_list(self) -> list[str]:
        return comma_list(self.modalities)

    @property
    def arm_list(self) -> list[str]:
        return comma_list(self.arms)

    @property
    def seed_list(self) -> list[int]:
        return [int(seed) for seed in comma_list(self.seeds)]

    @property
    def finetune_task_list(self) -> list[str]:
        return comma_list(self.finetune_tasks)

    def arms_of(self, modality: str) -> list[str]:
        """The arms of `modality` that run, in the report's order."""
        return [arm for arm in ARMS[modality] if arm in self.arm_list]

    def learning_rates(self, modality: str) -> list[float]:
        text = getattr(self, f"{modality}_learning_rates")
        try:
            return [float(rate) for rate in comma_list(text)]
        except ValueError:
            raise ValueError(f"--{modality}_learning_rates {text!r} must be comma-separated numbers.") from None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "hub_token"}


def preset_values(mode: str | None) -> dict[str, Any]:
    """The values `--mode mode` gives the fields left unset (none for an unknown mode): what a saved run whose
    config lacks a field (saved before the field existed) ran with."""
    return dict(_PRESETS.get(mode, {}))


def backbone_size(config: dict[str, Any]) -> str:
    """The backbones' size a saved run's config names: `tiny`, or `tiny (hidden_size=256, ...)` with overrides."""
    overrides = config.get("backbone_overrides")  # absent from runs saved before the field existed
    return f"{config['model_size']} ({overrides})" if overrides else config["model_size"]


def one_masked_copy(data2vec2_overrides: str | None) -> bool:
    """Whether --data2vec2_overrides trains data2vec 2.0 on one masked copy of each sample (`clone_batch=1`)."""
    recipe, _ = load_example("pretraining_utils").parse_config_overrides(data2vec2_overrides)
    return recipe.get("clone_batch") == 1


# The settings that change a modality's pretrained checkpoints; a resumed study keeps a run only when they are equal.
PRETRAINING_FIELDS = {
    "text": ("model_size", "backbone_overrides", "data2vec_overrides", "data2vec2_overrides",
             "text_corpus", "text_mask_strategy",
             "corpus_lines", "tokenizer_vocab_size", "max_seq_length", "text_steps", "text_batch_size",
             "text_learning_rate", "probe_points"),
    "vision": ("model_size", "backbone_overrides", "data2vec_overrides", "data2vec2_overrides",
             "vision_steps", "vision_batch_size",
               "vision_learning_rate", "probe_points"),
    "audio": ("model_size", "backbone_overrides", "data2vec_overrides", "data2vec2_overrides",
             "audio_steps", "audio_batch_size",
              "audio_learning_rate", "audio_max_seconds", "probe_points"),
}  # fmt: skip
PROBE_FIELDS = ("probe_train_samples", "probe_eval_samples", "max_seq_length", "audio_clip_seconds", "digit_voices")
FINETUNE_FIELDS = (
    "finetune_steps", "finetune_batch_size", "finetune_train_samples", "finetune_eval_samples", "qa_max_seq_length",
    "qa_doc_stride", "audio_clip_seconds", "digit_voices", "max_seq_length",
)  # fmt: skip


__all__ = [
    "ALL_ARMS",
    "ARMS",
    "ARM_TITLES",
    "BACKBONE_TYPES",
    "FINETUNE_FIELDS",
    "FINETUNE_TASKS",
    "MAIN_PROBE",
    "MODALITIES",
    "MODALITY_OF_TASK",
    "PRETRAINING_CLASSES",
    "PRETRAINING_FIELDS",
    "PROBES",
    "PROBE_FIELDS",
    "StudyArguments",
    "TEXT_CORPORA",
    "backbone_size",
    "preset_values",
]
