"""
The pretraining arms of the study. Every arm of a modality trains the same backbone (family, size, data, optimizer,
schedule, batch), so that only the objective differs, for the same number of counted training FLOPs:

- `data2vec` / `data2vec2`: [`~d2v_hf.Data2VecForPretraining`] with the 1.0 / 2.0 recipe of the modality (the same
  configuration `run_pretraining.py --backbone_type ...` builds) and its collator and Trainer.
- `mlm`: `Data2VecTextForMaskedLM` + `DataCollatorForLanguageModeling` (RoBERTa: 15%, 80/10/10).
- `mae`: `ViTMAEForPreTraining` (75% of the patches masked, normalised-pixel loss, a light decoder).
- `wav2vec2`: `Wav2Vec2ForPreTraining` (contrastive loss over quantised targets, 100 negatives, diversity loss).
- `random`: no pretraining; the backbone as initialised (one per seed).

Along each run the backbone is saved at `probe_points` evenly spaced steps (`step-<N>/`, as the family's own class
with the tokenizer or processor), for the probes' score-vs-compute curves; the last one is fine-tuned. A run given a
`resume_key` also saves the Trainer's full state `resume_checkpoints` times along it, so an interrupted run resumes
from its last checkpoint instead of from step 0 (the Trainer restores weights, optimizer, schedule, RNG and data
order; the data2vec trainer adds the teacher), but only when the run folder was written by the same settings.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import send_to_device
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    AutoTokenizer,
    Data2VecTextForMaskedLM,
    DataCollatorForLanguageModeling,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    ViTMAEConfig,
    ViTMAEForPreTraining,
    ViTModel,
    Wav2Vec2ForPreTraining,
    set_seed,
)
from transformers.models.wav2vec2.modeling_wav2vec2 import _sample_negative_indices

from d2v_hf import Data2VecForPretraining, Data2VecPretrainingTrainer, data_collator_for
from d2v_hf.atomic_io import atomic_write_dir
from d2v_hf.backbones import backbone_class, export_backbone
from d2v_hf.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_audio_folder,
    load_fashion_mnist,
    load_text_dataset,
    pretraining_image_transform,
    tokenize_and_group,
)
from d2v_hf.ema import get_annealed_rate
from d2v_hf.finetuning.checkpoints import AUDIO_PROCESSOR_SETTINGS, make_processor
from d2v_hf.trainer import Data2VecPretrainingArguments

from study_config import BACKBONE_TYPES, DATA2VEC_ARMS, RECIPE_OVERRIDES, one_masked_copy
from study_utils import device_kwargs, load_example, series


IMAGE_SIZE, PATCH_SIZE = 28, 4  # Fashion-MNIST at its own size, 7 x 7 patches
# data2vec 2.0 amortises each teacher forward over M masked copies of a sample (8 or 16): at the other arms' batch
# a step would cost 4-8x theirs and the arm would get a handful of steps. It takes a quarter of the samples per step
# (the paper's ImageNet ratio: 512 images for 2.0 against 2048 for 1.0), and the FLOP budget gives it the steps;
# with one copy (--data2vec2_overrides clone_batch=1) a step costs about the others', and it takes their batch.
DATA2VEC2_BATCH_DIVISOR = 4
WAV2VEC2_NEGATIVES = 100  # distractors per masked frame, as wav2vec 2.0 base


def batch_size(args, modality: str, arm: str) -> int:
    """Samples per pretraining step of an arm."""
    size = getattr(args, f"{modality}_batch_size")
    several_copies = not one_masked_copy(args.data2vec2_overrides)
    return max(1, size // DATA2VEC2_BATCH_DIVISOR) if arm == "data2vec2" and several_copies else size


def text_tokenizer(modality: str, data: dict):
    """The study's tokenizer for text, `None` for the other modalities (their arms read no tokenizer)."""
    return AutoTokenizer.from_pretrained(data["tokenizer"]) if modality == "text" else None


def data2vec_config(args, modality: str, mode: str, tokenizer=None):
    """The data2vec 1.0 / 2.0 configuration `run_pretraining.py` builds for the study's backbone."""
    pretraining_utils = load_example("pretraining_utils")
    overrides = [f"mode={mode}"]
    if modality == "text" and mode == "data2vec" and args.text_mask_strategy == "bert":
        overrides.append("text_mask_strategy=bert,mask_prob=0.15")  # the paper's main row (15%, 80/10/10)
    if getattr(args, RECIPE_OVERRIDES[mode]):
        overrides.append(getattr(args, RECIPE_OVERRIDES[mode]))
    if modality == "vision":
        overrides.append(f"backbone.patch_size={PATCH_SIZE}")
    if modality == "audio" and args.model_size == "tiny":
        # a 3-layer CNN with a wide first kernel (40 samples, stride 20; 160 samples = 10 ms per frame), 4x cheaper
        # per clip than the 7-layer one, for every arm
        overrides.append("backbone.conv_dim=[64,64,64],backbone.conv_kernel=[40,4,2],backbone.conv_stride=[20,4,2]")
    overrides += [f"backbone.{item}" for item in args.backbone_override_items]  # every arm's backbone
    model_args = pretraining_utils.Data2VecModelArguments(
        modality=modality,
        model_size=args.model_size,
        backbone_type=BACKBONE_TYPES[modality],
        config_overrides=",".join(overrides),
    )
    image_size = IMAGE_SIZE if modality == "vision" else None
    return pretraining_utils.build_pretraining_config(model_args, tokenizer, image_size)


def backbone_config(args, modality: str, tokenizer=None):
    """The backbone every arm of `modality` trains."""
    return data2vec_config(args, modality, "data2vec", tokenizer).backbone_config


def save_preprocessor(modality: str, folder: str | Path, tokenizer=None) -> None:
    """What the probes and fine-tuning scripts read the inputs with: the same for every arm of a modality."""
    if modality == "text":
        tokenizer.save_pretrained(folder)
        return
    # the fine-tuning scripts' own constructor: ImageNet statistics (as both data2vec releases) and bicubic resizing
    # (as the study's image transform), or 16 kHz normalised audio with an attention mask
    settings = (
        {"image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD)}
        if modality == "vision"
        else AUDIO_PROCESSOR_SETTINGS
    )
    make_processor(modality, settings, IMAGE_SIZE if modality == "vision" else None).save_pretrained(folder)


def save_backbone(backbone, modality: str, folder: str | Path, tokenizer=None) -> None:
    """The backbone with its preprocessor, whole or not at all (a stopped run never leaves weights without config)."""

    def write(tmp):
        backbone.save_pretrained(tmp)
        save_preprocessor(modality, tmp, tokenizer)

    atomic_write_dir(folder, write)


def random_backbone(args, modality: str, seed: int, output_dir: str | Path, tokenizer=None) -> str:
    """The `random` arm: the backbone as its family's class initialises it (seeded), saved with its preprocessor."""
    if not Path(output_dir, "config.json").is_file():
        config = backbone_config(args, modality, tokenizer)
        torch.manual_seed(seed)
        save_backbone(backbone_class(config)(config), modality, output_dir, tokenizer)
    return str(output_dir)


class Wav2Vec2PretrainingCollator:
    """
    Raw clips cropped, normalised and span-masked as data2vec's audio collator does (wav2vec 2.0 masks alike: p=0.65,
    spans of 10 frames), plus the 100 distractors per masked frame that `Wav2Vec2ForPreTraining` contrasts against,
    drawn from the other masked frames of the same clip (transformers' `_sample_negative_indices`).
    """

    def __init__(self, data2vec_audio_config, model_config, max_samples: int, seed: int):
        self.crop_and_mask = data_collator_for(data2vec_audio_config, max_samples=max_samples, seed=seed)
        self.num_negatives = model_config.num_negatives
        self.rng = np.random.default_rng(seed)

    def __call__(self, examples):
        batch = self.crop_and_mask(examples)
        mask = batch.pop("mask")
        state = np.random.get_state()  # _sample_negative_indices draws from numpy's global generator
        np.random.seed(int(self.rng.integers(2**31)))
        negatives = _sample_negative_indices(tuple(mask.shape), self.num_negatives, mask.numpy())
        np.random.set_state(state)
        batch["mask_time_indices"] = mask
        batch["sampled_negative_indices"] = torch.from_numpy(negatives).long()
        return batch


class Wav2Vec2PretrainingTrainer(Trainer):
    """`Wav2Vec2ForPreTraining` sums its loss over the masked frames; as Transformers' wav2vec2 pretraining example
    (and fairseq), the step's loss is divided by their number."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        loss = outputs.loss / inputs["mask_time_indices"].sum().clamp(min=1)
        return (loss, outputs) if return_outputs else loss


def _mae(backbone):
    """MAE at the study's ViT size: 75% of the patches masked, normalised pixels, a light decoder (2 layers when
    tiny, MAE's 8 x 512 at base size)."""
    config = ViTMAEConfig(
        hidden_size=backbone.hidden_size,
        num_hidden_layers=backbone.num_hidden_layers,
        num_attention_heads=backbone.num_attention_heads,
        intermediate_size=backbone.intermediate_size,
        image_size=backbone.image_size,
        patch_size=backbone.patch_size,
        num_channels=backbone.num_channels,
        layer_norm_eps=backbone.layer_norm_eps,
        decoder_hidden_size=backbone.hidden_size if backbone.hidden_size < 512 else 512,
        decoder_num_hidden_layers=2 if backbone.hidden_size < 512 else 8,
        decoder_num_attention_heads=backbone.num_attention_heads if backbone.hidden_size < 512 else 16,
        decoder_intermediate_size=backbone.intermediate_size if backbone.hidden_size < 512 else 2048,
        mask_ratio=0.75,
        norm_pix_loss=True,
    )
    return ViTMAEForPreTraining(config)


def _mae_backbone(model: ViTMAEForPreTraining, backbone_config) -> ViTModel:
    """The MAE encoder as a `ViTModel` (the same parameter names; strict, so a renamed weight fails loudly)."""
    vit = ViTModel(backbone_config, add_pooling_layer=False)
    vit.load_state_dict(model.vit.state_dict(), strict=True)
    return vit


def _wav2vec2(backbone):
    """`Wav2Vec2ForPreTraining` on the study's backbone; a tiny backbone gets a proportionally smaller quantiser."""
    config = type(backbone)(**backbone.to_dict())
    if backbone.hidden_size < 256:
        config.codevector_dim = config.proj_codevector_dim = backbone.hidden_size
        config.num_codevectors_per_group = 64
    config.num_negatives = WAV2VEC2_NEGATIVES
    return Wav2Vec2ForPreTraining(config)


def build_arm(args, modality: str, arm: str, seed: int, data: dict, steps: int | None = None):
    """
    `(model, collator, train_dataset, trainer_class, arguments_class, backbone_of)` of a pretraining arm of `steps`
    optimizer steps: `backbone_of(model)` is the backbone to save (with the pretrained weights).
    """
    tokenizer = text_tokenizer(modality, data)
    d2v = _run_config(args, modality, arm, tokenizer, steps)
    backbone = d2v.backbone_config
    torch.manual_seed(seed)
    if modality == "text":
        dataset = tokenize_and_group(load_text_dataset(data["corpus"]), tokenizer, max_seq_length=args.max_seq_length)
    elif modality == "vision":
        mode = "data2vec" if arm == "data2vec" else "data2vec2"  # MAE's augmentation is 2.0's: crop 0.2-1, flip
        transform = pretraining_image_transform(mode, IMAGE_SIZE, train=True, seed=seed)
        dataset = load_fashion_mnist(data["fashion_mnist"], "train", transform=transform)
    else:
        dataset = load_audio_folder(data["speech_corpus"], sampling_rate=16000, max_seconds=args.audio_max_seconds)
    max_samples = int(args.audio_max_seconds * 16000)
    audio_kwargs = {"max_samples": max_samples} if modality == "audio" else {}
    if arm in DATA2VEC_ARMS:
        model = Data2VecForPretraining(d2v)
        collator = data_collator_for(d2v, tokenizer, seed=seed, **audio_kwargs)
        return model, collator, dataset, Data2VecPretrainingTrainer, Data2VecPretrainingArguments, _student
    if arm == "mlm":
        model = Data2VecTextForMaskedLM(backbone)
        collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=0.15)  # masks from torch RNG
        return model, collator, dataset, Trainer, TrainingArguments, lambda m: m.data2vec_text
    if arm == "mae":
        model = _mae(backbone)
        return model, _stack_pixels, dataset, Trainer, TrainingArguments, lambda m: _mae_backbone(m, backbone)
    if arm == "wav2vec2":
        model = _wav2vec2(backbone)
        collator = Wav2Vec2PretrainingCollator(d2v, model.config, max_samples, seed)
        return model, collator, dataset, Wav2Vec2PretrainingTrainer, TrainingArguments, lambda m: m.wav2vec2
    raise ValueError(f"{arm!r} is not a pretraining arm of {modality}.")


def _run_config(args, modality: str, arm: str, tokenizer, steps: int | None):
    """The data2vec configuration of a run of `steps` (the other arms read its backbone, masks and crops)."""
    d2v = data2vec_config(args, modality, "data2vec2" if arm == "data2vec2" else "data2vec", tokenizer)
    if steps is not None:  # a short run's teacher reaches its final decay at the end, as run_pretraining.py does
        d2v.ema_anneal_end_step = min(d2v.ema_anneal_end_step, steps)
    return d2v


def teacher_schedule(args, modality: str, arm: str, steps: int, data: dict) -> dict:
    """
    The EMA of a data2vec arm's teacher over its `steps` updates: its schedule, and `init_weight`, the product of the
    decays (each update keeps `decay` of the teacher), i.e. the share of the teacher's averaged weights that is still
    their random initialisation at the end. Near 1, the student was taught by an untrained network's features: the
    released schedules are sized for 10^5 updates, not for a few hundred.
    """
    tokenizer = text_tokenizer(modality, data)
    d2v = _run_config(args, modality, arm, tokenizer, steps)
    decays = [
        # update k uses the decay of step k (Data2VecForPretraining.ema_decay_at)
        get_annealed_rate(d2v.ema_decay, d2v.ema_end_decay, step, d2v.ema_anneal_end_step)
        for step in range(1, steps + 1)
    ]
    return {
        "updates": steps,
        "ema_decay": d2v.ema_decay,
        "ema_end_decay": d2v.ema_end_decay,
        "ema_anneal_end_step": d2v.ema_anneal_end_step,
        "init_weight": float(np.prod(decays)),
    }


def _student(model):
    return model.student


def _stack_pixels(examples):
    return {"pixel_values": torch.stack([torch.as_tensor(e["pixel_values"]) for e in examples])}


def count_step_flops(model, batch: dict) -> int:
    """
    FLOPs of one training forward and backward of `model` on `batch` (the model's loss), by `FlopCounterMode`, on the
    device the arms train on: a GPU when there is one, since a base-size step of the full mode's batch holds more
    than 22 GB of fp32 activations on a CPU.
    """
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).train()
    batch = send_to_device(batch, device)  # nested lists and dicts of tensors too
    with FlopCounterMode(display=False) as counter:
        model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def step_flops(args, modality: str, arm: str, data: dict) -> int:
    """
    Training FLOPs of one optimizer step of `arm` (forward and backward, the teacher's forward included), counted on
    a real batch of the arm's collator.
    """
    with torch.random.fork_rng(devices=[]):
        model, collator, dataset, *_ = build_arm(args, modality, arm, 0, data)
        return count_step_flops(model, collator([dataset[i] for i in range(batch_size(args, modality, arm))]))


class SnapshotCallback(TrainerCallback):
    """Saves the backbone (the family's class, with the preprocessor) at the given optimizer steps, and beside each
    full checkpoint the wall-clock spent so far (`elapsed.json`): a resumed run reports the time of the whole run."""

    def __init__(self, steps, backbone_of, output_dir, modality, tokenizer=None, resumed_at=0):
        self.steps, self.backbone_of, self.output_dir = set(steps), backbone_of, Path(output_dir)
        self.modality, self.tokenizer = modality, tokenizer
        self.saved = {step: str(self.output_dir / f"step-{step}") for step in self.steps if step <= resumed_at}
        elapsed = self.output_dir / f"checkpoint-{resumed_at}" / "elapsed.json"
        self.elapsed_before = json.loads(elapsed.read_text())["wall_time_s"] if resumed_at else 0.0
        self.start = time.time()

    def wall_time_s(self) -> float:
        return self.elapsed_before + time.time() - self.start

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.steps and state.is_world_process_zero:
            folder = self.output_dir / f"step-{state.global_step}"
            save_backbone(export_backbone(self.backbone_of(model)), self.modality, folder, self.tokenizer)
            self.saved[state.global_step] = str(folder)

    def on_save(self, args, state, control, **kwargs):
        checkpoint = self.output_dir / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and checkpoint.is_dir():
            (checkpoint / "elapsed.json").write_text(json.dumps({"wall_time_s": self.wall_time_s()}))


class RunProgressCallback(TrainerCallback):
    """
    One line per logging step that names the run, says how far it is and about how long is left, in place of the
    Trainer's bare log dictionary (`PrinterCallback`): the study's workers train several runs side by side, for
    hours, into one console.
    """

    def __init__(self, name: str, clock: SnapshotCallback):
        self.name, self.clock = name, clock
        self.first_step, self.start = 0, time.time()

    def on_train_begin(self, args, state, control, **kwargs):
        self.first_step, self.start = state.global_step, time.time()  # a resumed run counts its own pace only
        if state.global_step and state.is_world_process_zero:
            print(f"{self.name}: resumed at step {state.global_step}/{state.max_steps}", flush=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or "loss" not in (logs or {}):
            return
        done, total = state.global_step, state.max_steps
        pace = (done - self.first_step) / max(time.time() - self.start, 1e-6)
        left = f", about {(total - done) / pace / 60:.0f} min left" if pace > 0 else ""
        print(
            f"{self.name}: step {done}/{total} ({done / total:.0%}), loss {float(logs['loss']):.4g}, "
            f"{self.clock.wall_time_s() / 60:.1f} min{left}",
            flush=True,
        )


def _checkpoint_step(checkpoint: str | Path) -> int:
    return int(Path(checkpoint).name.removeprefix("checkpoint-"))


def _checkpoint_to_resume(output_dir: Path, resume_key: str) -> str | None:
    """The last checkpoint of an interrupted run with these settings (`resume_key`), or None. A run folder written
    under other settings (an older run of another learning rate, say) is cleared: resuming it would mix two runs."""
    marker = output_dir / "resume_key.json"
    if marker.is_file() and marker.read_text(encoding="utf-8") == resume_key:
        # elapsed.json is written after the Trainer's save: a checkpoint without it was cut short, the one before it
        # (save_total_limit keeps two) is complete
        complete = [c for c in output_dir.glob("checkpoint-*") if (c / "elapsed.json").is_file()]
        return str(max(complete, key=_checkpoint_step)) if complete else None
    if output_dir.exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True)
    marker.write_text(resume_key, encoding="utf-8")
    return None


def probe_steps(steps: int, points: int) -> list[int]:
    """`points` evenly spaced steps ending at `steps` (equal fractions of the FLOP budget for every arm)."""
    return sorted({max(1, round(steps * k / points)) for k in range(1, points + 1)})


def pretrain_arm(
    args, modality: str, arm: str, seed: int, steps: int, data: dict, output_dir: str, resume_key: str | None = None
) -> dict:
    """Trains one arm for `steps` optimizer steps; returns its snapshots, loss curve and wall-clock. With a
    `resume_key` (the study's settings of the run) the run checkpoints along the way and resumes an interrupted one."""
    resume_key = resume_key if args.resume_checkpoints else None
    resume_from = _checkpoint_to_resume(Path(output_dir), resume_key) if resume_key else None
    set_seed(seed)
    model, collator, dataset, trainer_class, arguments_class, backbone_of = build_arm(
        args, modality, arm, seed, data, steps
    )
    vision = modality == "vision"
    training_args = arguments_class(
        output_dir=output_dir,
        max_steps=steps,
        per_device_train_batch_size=batch_size(args, modality, arm),
        learning_rate=getattr(args, f"{modality}_learning_rate"),
        warmup_steps=max(1, steps // 10),
        lr_scheduler_type="linear",
        weight_decay=0.05 if vision else 0.01,
        adam_beta2=0.999 if vision else 0.98,
        adam_epsilon=1e-6,
        max_grad_norm=1.0,
        logging_steps=max(1, steps // 40),
        seed=seed,
        data_seed=seed,
        report_to="none",
        save_strategy="steps" if resume_key else "no",
        save_steps=max(1, steps // max(1, args.resume_checkpoints)),
        save_total_limit=2,  # the last complete checkpoint survives a kill during the next save
        disable_tqdm=True,
        log_level="warning",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        **device_kwargs(),
    )
    tokenizer = text_tokenizer(modality, data)
    points = probe_steps(steps, args.probe_points)
    resumed_at = _checkpoint_step(resume_from) if resume_from else 0
    snapshots = SnapshotCallback(points, backbone_of, output_dir, modality, tokenizer, resumed_at)
    progress = RunProgressCallback(f"{modality} {arm} seed {seed}", snapshots)
    trainer = trainer_class(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=dataset,
        callbacks=[snapshots, progress],
    )
    trainer.remove_callback(PrinterCallback)  # replaced by `progress`
    trainer.train(resume_from_checkpoint=resume_from)
    for checkpoint in Path(output_dir).glob("checkpoint-*"):  # the run is done: its optimizer states are not needed
        shutil.rmtree(checkpoint)
    losses = series(trainer.state.log_history, "loss")
    return {
        "snapshots": {str(step): path for step, path in sorted(snapshots.saved.items())},
        "steps": steps,
        "loss_curve": losses,
        "first_loss": losses[0][1] if losses else None,
        "final_loss": losses[-1][1] if losses else None,
        "wall_time_s": snapshots.wall_time_s(),
        "class": type(model).__name__,
    }


__all__ = [
    "WAV2VEC2_NEGATIVES",
    "Wav2Vec2PretrainingCollator",
    "RunProgressCallback",
    "Wav2Vec2PretrainingTrainer",
    "backbone_config",
    "batch_size",
    "build_arm",
    "count_step_flops",
    "data2vec_config",
    "pretrain_arm",
    "probe_steps",
    "random_backbone",
    "save_backbone",
    "save_preprocessor",
    "step_flops",
    "teacher_schedule",
    "text_tokenizer",
]
