"""
data2vec pretraining of a text, speech or image backbone with the Hugging Face Trainer.

# The embedded default: a tiny text model on a small real corpus built from installed packages (a few minutes on CPU)
python examples/pretraining/run_pretraining.py

# Text from scratch, base recipe (RoBERTa-base size), BPE tokenizer trained on the corpus, 8 GPUs
accelerate launch --num_processes 8 examples/pretraining/run_pretraining.py --modality text \
    --train_file corpus.txt.gz --train_tokenizer --max_seq_length 512 --output_dir d2v-text \
    --per_device_train_batch_size 32 --learning_rate 2e-4 --lr_scheduler_type cosine --warmup_steps 10000 \
    --max_steps 1000000 --adam_beta2 0.98 --adam_epsilon 1e-6 --weight_decay 0.01 --max_grad_norm 5 --bf16

# Speech: a folder of audio files (any sampling rate; resampled to 16 kHz)
python examples/pretraining/run_pretraining.py --modality audio --model_size tiny --train_file ../shared/data/speech \
    --output_dir d2v-audio --max_steps 300 --per_device_train_batch_size 8 --learning_rate 5e-4

# Images: a folder of images (or of Fashion-MNIST's IDX files)
python examples/pretraining/run_pretraining.py --modality vision --model_size tiny \
    --train_file ../shared/data/vision/fashion-mnist --output_dir d2v-vision --max_steps 300

# Several machines: `accelerate config` on each, then the same `accelerate launch` command (see README.md).
# Any argument can also come from a JSON file: python examples/pretraining/run_pretraining.py args.json
"""

import logging
import sys
from pathlib import Path

import torch
import transformers
from pretraining_artifacts import final_metrics, pretraining_model_card, write_artifacts
from transformers import set_seed

from d2v_hf import Data2VecPretrainingArguments, Data2VecPretrainingTrainer, data_collator_for
from d2v_hf.argument_parsing import check_model_path, parse_arguments
from d2v_hf.recipes import TRAINING_RECIPES
from d2v_hf.trainer.checkpointing import resolve_resume_checkpoint
from d2v_hf.trainer.parallelism import end_distributed_run

from pretraining_data import build_audio_datasets, build_text_datasets, build_vision_datasets, text_sources
from pretraining_utils import (
    Data2VecDataArguments,
    Data2VecModelArguments,
    check_checkpoint,
    check_output_dir,
    load_or_build_model,
    load_tokenizer,
    parse_config_overrides,
    recipe_defaults,
)


logger = logging.getLogger(__name__)

# the embedded default: small enough for a 2-core CPU in a few minutes
DEMO_DEFAULTS = dict(
    output_dir="outputs/data2vec-text-demo",
    model_size="tiny",
    tokenizer_vocab_size=4000,
    max_steps=200,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=32,
    max_seq_length=64,
    max_eval_samples=256,
    learning_rate=1e-3,
    warmup_steps=30,
    eval_strategy="steps",
    eval_steps=100,
    save_steps=100,
    logging_steps=10,
)
ARGUMENT_TYPES = (Data2VecModelArguments, Data2VecDataArguments, Data2VecPretrainingArguments)


def parse_args(argv=None):
    """
    The arguments, and what filled in the flags the user did not give: `--recipe NAME` (the released recipe) or,
    with no data argument, the tiny text demo's settings. Returns `(model, data, training arguments, demo, notes)`.
    """
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    parsed = parse_arguments(ARGUMENT_TYPES, argv, description=__doc__)
    if len(argv) == 1 and argv[0].endswith(".json"):
        return (*parsed, False, [])
    model_args, data_args, training_args = parsed
    given = {arg.split("=")[0].lstrip("-") for arg in argv if arg.startswith("--")}
    if model_args.recipe:
        flags, notes = recipe_defaults(model_args.recipe, given, training_args)
        if training_args.use_cpu or not torch.cuda.is_available():
            notes.append("precision: fp32 (no GPU; fairseq trained in fp16)")
        elif not ({"fp16", "bf16"} & given):
            flags.append("--bf16" if torch.cuda.is_bf16_supported() else "--fp16")
            notes.append(f"precision: {flags[-1][2:]} (fairseq: fp16)")
        model_args, data_args, training_args = parse_arguments(ARGUMENT_TYPES, flags + argv, description=__doc__)
        if TRAINING_RECIPES[model_args.recipe]["mode"] == "data2vec2":  # the recipe's mode first, yours after it
            yours = model_args.config_overrides
            model_args.config_overrides = "mode=data2vec2" + (f",{yours}" if yours else "")
            notes.append(
                f"config_overrides: mode=data2vec2 from the recipe, yours kept after it: {yours}"
                if yours
                else "config_overrides: mode=data2vec2"
            )
        return model_args, data_args, training_args, False, notes
    if not (data_args.uses_embedded_default and model_args.modality == "text"):
        return (*parsed, False, [])
    defaults = [f"--{key}={value}" for key, value in DEMO_DEFAULTS.items() if key not in given]
    return (*parse_arguments(ARGUMENT_TYPES, defaults + list(argv), description=__doc__), True, [])


def main(argv=None):
    model_args, data_args, training_args, demo, notes = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    set_seed(training_args.seed)
    for line in notes:
        logger.info(line)
    if demo:
        logger.info(
            f"No data given: pretraining the demo, a {model_args.model_size} data2vec text model for "
            f"{training_args.max_steps} steps on the embedded English corpus (the installed Python's documentation). "
            f"Outputs go to {training_args.output_dir}/. `--help` lists every option."
        )

    # 1. everything that can fail on bad input fails here, before the output directory is touched
    resume = resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    check_output_dir(training_args.output_dir, resume, training_args.overwrite_output_dir)
    if resume:
        check_checkpoint(resume, model_args.modality)
    for flag in ("model_name_or_path", "tokenizer_name"):
        if getattr(model_args, flag):
            check_model_path(getattr(model_args, flag), f"--{flag}", needs_config=flag == "model_name_or_path")
    recipe_overrides, _ = parse_config_overrides(model_args.config_overrides)
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("--streaming needs --max_steps: the length of a streamed dataset is unknown.")

    # 2. data and model
    tokenizer, modality = None, model_args.modality
    if modality == "text":
        texts, validation, description = text_sources(data_args, model_args)
        tokenizer = load_tokenizer(model_args, texts)
        with training_args.main_process_first(desc="tokenizing"):
            train_dataset, eval_dataset = build_text_datasets(
                texts, validation, tokenizer, data_args, training_args.seed
            )
        model = load_or_build_model(model_args, tokenizer)
    elif modality == "audio":
        train_dataset, eval_dataset, description = build_audio_datasets(data_args, model_args, training_args.seed)
        model = load_or_build_model(model_args)
    else:
        image_size = data_args.image_size or (28 if model_args.model_size == "tiny" else 224)
        model = load_or_build_model(model_args, image_size=image_size)
        image_size = model.config.backbone_config.image_size
        train_dataset, eval_dataset, description = build_vision_datasets(
            data_args, model_args, image_size, training_args.seed, model.config.mode
        )
    anneal = model.config.ema_anneal_end_step
    if 0 < training_args.max_steps < anneal and "ema_anneal_end_step" not in recipe_overrides:
        # a short run: the teacher's decay reaches its final value at the end of the run, not after the preset's
        # 30k-300k steps of a full run (during which a 200-step demo's teacher would barely move off ema_decay)
        model.config.ema_anneal_end_step = training_args.max_steps
        notes.append(
            f"ema_anneal_end_step follows the run's length: {training_args.max_steps} (max_steps) instead of the "
            f"preset's {anneal}; --config_overrides ema_anneal_end_step=N sets it."
        )
        logger.info(notes[-1])
    if eval_dataset is None and training_args.eval_strategy != "no":
        logger.warning("No validation data: evaluation is turned off.")
        training_args.eval_strategy = "no"
    data_collator = data_collator_for(
        model.config,
        tokenizer,
        **({"max_samples": int(data_args.max_audio_seconds * 16000)} if modality == "audio" else {}),
    )

    # 3. train
    trainer = Data2VecPretrainingTrainer(
        model=model,
        args=training_args,
        data_collator=data_collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
    )
    train_result = trainer.train(resume_from_checkpoint=resume)

    # 4. save the full state, the student for fine-tuning, metrics, curves and the model card
    trainer.save_model()
    metrics = {**train_result.metrics, **final_metrics(trainer.state.log_history)}
    if eval_dataset is not None:
        metrics.update(trainer.evaluate())
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("all", metrics)
    trainer.save_state()
    student_state = trainer.student_state_dict()  # every process: gathered under FSDP / DeepSpeed ZeRO-3
    if trainer.is_world_process_zero():
        name = training_args.hub_model_id or f"data2vec-{modality}-{model_args.model_size}"
        data = {"description": description, "hub_dataset": data_args.dataset_name}
        data["name"] = data_args.dataset_name or (
            Path(data_args.train_file).name if data_args.train_file else "embedded Python documentation corpus"
        )
        data["max_seq_length"] = data_args.max_seq_length if modality == "text" else None
        card = pretraining_model_card(model, name, data, trainer, tokenizer, notes, model_args.license)
        paths = write_artifacts(trainer, model, tokenizer, card, student_state)
        logger.info(
            f"Done. Full pretraining state: {training_args.output_dir}/ (checkpoints, model.safetensors); "
            f"student for fine-tuning: {paths['student']}; model card: {paths['card']}; loss curves: "
            f"{paths['plot']}; TensorBoard: tensorboard --logdir {training_args.output_dir}/runs"
        )
        if modality == "text":
            logger.info(
                "Next: python examples/text-classification/run_glue.py --model_name_or_path "
                f"{paths['student']} --task_name sst2 ... (see README.md, Fine-tuning)"
            )
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="data2vec pretraining with d2v_hf")
    return metrics


if __name__ == "__main__":
    main()
    end_distributed_run()
