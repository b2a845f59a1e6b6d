"""
Test helpers shared by every test module (no test module imports another): tiny configurations, inputs and
tokenizers built in code, the example scripts and benchmarks loaded from this checkout, and reference computations.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import torch
from transformers import CONFIG_MAPPING, Data2VecTextConfig, Data2VecTextModel

from d2v_hf import (
    Data2VecPretrainingConfig,
    audio_frame_lengths,
    compute_audio_span_mask,
    compute_text_span_mask,
    compute_vision_block_mask,
    train_bpe_tokenizer,
)
from d2v_hf.configuration_data2vec_pretraining import _PRESETS


REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
BENCHMARKS = REPO / "benchmarks"
# The benchmarks and the study import their helper modules as scripts do (from their own folder).
for folder in (EXAMPLES / "study", BENCHMARKS):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from study_config import StudyArguments  # noqa: E402
from study_utils import EXAMPLE_FOLDERS, load_example  # noqa: E402, F401  (the study's loader of the scripts)


VOCAB_SIZE = 99
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
MASK_TOKEN_ID = 98


def tiny_backbone_config(modality: str, num_layers: int = 2, model_type: str | None = None, **kwargs):
    """A 2-layer, 32-wide backbone of `model_type` (any registered family; default: the modality's Data2Vec one)."""
    fields = dict(hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=4, intermediate_size=37)
    if modality == "text":
        fields.update(vocab_size=VOCAB_SIZE, max_position_embeddings=64)
    elif modality == "audio":
        fields.update(
            conv_dim=(32, 32, 32),
            conv_kernel=(8, 8, 8),
            conv_stride=(4, 4, 4),
            num_conv_pos_embeddings=2,
            conv_pos_kernel_size=5,
            num_conv_pos_embedding_groups=2,
        )
    else:
        fields.update(image_size=32, patch_size=8)
    fields.update(kwargs)
    config_class = CONFIG_MAPPING[model_type or f"data2vec-{modality}"]
    defaults = config_class()
    unknown = [name for name in kwargs if not hasattr(defaults, name)]
    if unknown:
        raise ValueError(f"{config_class.__name__} has no field {unknown}")
    # the audio and vision fields above exist in every family of the modality except a few (e.g. ViT has no
    # conv_pos_kernel_size); the family's defaults stand in for those
    return config_class(**{name: value for name, value in fields.items() if hasattr(defaults, name)})


def tiny_config(
    modality: str, num_layers: int = 2, preset: bool = True, backbone_kwargs=None, model_type=None, **overrides
):
    """The modality's preset on a tiny backbone; K defaults to all layers when the preset's K does not fit."""
    backbone = tiny_backbone_config(modality, num_layers, model_type, **(backbone_kwargs or {}))
    if modality == "text":
        overrides.setdefault("mask_token_id", MASK_TOKEN_ID)
    if modality == "vision":  # a 4 x 4 patch grid
        overrides.setdefault("num_mask_patches", 8)
        overrides.setdefault("min_mask_patches_per_block", 2)
    if preset:
        if _PRESETS[modality]["average_top_k_layers"] > num_layers:
            overrides.setdefault("average_top_k_layers", num_layers)
        return Data2VecPretrainingConfig.from_preset(modality, backbone, **overrides)
    return Data2VecPretrainingConfig(backbone_config=backbone, **overrides)


def tiny_inputs(config, batch_size: int = 3, seed: int = 0, pad: bool = True):
    """Unmasked inputs plus a mask from the library's masking function of the modality."""
    generator = torch.Generator().manual_seed(seed)
    modality, backbone = config.modality, config.backbone_config
    if modality == "text":
        input_ids = torch.randint(3, VOCAB_SIZE - 1, (batch_size, 16), generator=generator)
        attention_mask = torch.ones_like(input_ids)
        if pad:
            attention_mask[0, 11:] = 0
            input_ids[0, 11:] = backbone.pad_token_id
        mask = compute_text_span_mask(attention_mask, generator=generator)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "mask": mask}
    if modality == "audio":
        input_values = torch.randn(batch_size, 3000, generator=generator)
        frames = int(audio_frame_lengths(3000, backbone.conv_kernel, backbone.conv_stride))
        mask = compute_audio_span_mask(
            torch.ones(batch_size, frames, dtype=torch.bool), mask_length=4, generator=generator
        )
        return {"input_values": input_values, "mask": mask}
    pixel_values = torch.randn(batch_size, 3, 32, 32, generator=generator)
    mask = compute_vision_block_mask(batch_size, (4, 4), 8, min_num_patches=2, generator=generator)
    return {"pixel_values": pixel_values, "mask": mask}


# --------------------------------------------------------------------------------------------------------------------
# Tokenizers, text backbones and the example scripts' command lines
# --------------------------------------------------------------------------------------------------------------------

# Quiet, CPU-only runs that write no checkpoints.
COMMON = dict(
    report_to="none", save_strategy="no", disable_tqdm="true", log_level="warning", use_cpu=True,
    per_device_eval_batch_size=64,
)  # fmt: skip


def cli(**kwargs) -> list[str]:
    """`cli(task_name="sst2", do_train=True)` -> `["--task_name", "sst2", "--do_train"]` (with the COMMON options)."""
    args = []
    for key, value in {**COMMON, **kwargs}.items():
        if value is True:
            args.append(f"--{key}")
        elif value is not None and value is not False:
            args += [f"--{key}", str(value)]
    return args


def build_tokenizer(texts, vocab_size: int = 500, model_max_length: int = 128):
    """The library's RoBERTa-style byte-level BPE tokenizer, trained on `texts` offline."""
    return train_bpe_tokenizer(list(texts), vocab_size=vocab_size, min_frequency=1, model_max_length=model_max_length)


def tiny_text_config(tokenizer, **kwargs) -> Data2VecTextConfig:
    config = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    config.update(kwargs)
    return Data2VecTextConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length + 2,  # RoBERTa positions start after the padding index
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **config,
    )


def save_tiny_backbone(path: Path, tokenizer, seed: int = 0) -> Path:
    """A randomly initialized 2-layer hidden-32 data2vec-text backbone (no head), like a pretrained checkpoint."""
    torch.manual_seed(seed)
    Data2VecTextModel(tiny_text_config(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def glue_texts(path: Path, columns, limit: int):
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    indices = [header.index(c) for c in columns]
    return [line.split("\t")[i] for line in lines[1 : limit + 1] for i in indices]


def example_script_path(name: str) -> Path:
    """`examples/<task>/<name>.py`, e.g. for `accelerate launch`."""
    return EXAMPLES / EXAMPLE_FOLDERS[name] / f"{name}.py"


# --------------------------------------------------------------------------------------------------------------------
# Reference computations
# --------------------------------------------------------------------------------------------------------------------


def manual_text_layers(backbone, input_ids, attention_mask):
    """Runs the text encoder layer by layer; returns the per-layer FFN outputs (pre-residual) and block outputs."""
    hidden = backbone.embeddings(input_ids=input_ids)
    additive = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    ffn_outputs, block_outputs = [], []
    for layer in backbone.encoder.layer:
        attention = layer.attention(hidden, additive)[0]
        ffn = layer.output.dense(layer.intermediate(attention))
        hidden = layer.output.LayerNorm(ffn + attention)
        ffn_outputs.append(ffn)
        block_outputs.append(hidden)
    torch.testing.assert_close(hidden, backbone(input_ids, attention_mask=attention_mask).last_hidden_state)
    return ffn_outputs, block_outputs


def make_teacher_differ(model, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.teacher.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)


def manual_layer_features(backbone, main_input, attention_mask=None):
    """
    Runs any registered backbone's layers one by one from the input of its first layer, written out per layer
    style (not through the registry); returns the per-layer FFN outputs (before the residual, post-LN or layer
    scale) and block outputs. Text starts from the embeddings; audio and vision take the first layer's input.
    """
    model_type = backbone.config.model_type
    if model_type in ("data2vec-text", "roberta", "xlm-roberta", "bert"):
        return manual_text_layers(backbone, main_input, attention_mask)
    layers = backbone.encoder.layers if hasattr(backbone, "encoder") and hasattr(backbone.encoder, "layers") else None
    if layers is None:
        layers = backbone.encoder.layer if model_type == "data2vec-vision" else backbone.layers
    first_input = []
    handle = layers[0].register_forward_pre_hook(lambda module, args: first_input.append(args[0]))
    backbone(main_input)
    handle.remove()
    hidden, ffn_outputs, block_outputs, position_bias = first_input[0], [], [], None
    for index, layer in enumerate(layers):
        if model_type in ("data2vec-audio", "wav2vec2", "hubert", "wavlm"):  # post-LN
            if model_type == "wavlm":
                attention, _, position_bias = layer.attention(hidden, position_bias=position_bias, index=index)
            else:
                attention = layer.attention(hidden)[0]
            hidden = layer.layer_norm(hidden + attention)
            ffn = layer.feed_forward(hidden)
            hidden = layer.final_layer_norm(hidden + ffn)
        elif model_type == "data2vec-vision":  # pre-LN, layer scale, the older module names
            attention = layer.attention(layer.layernorm_before(hidden))[0]
            hidden = hidden + (attention if layer.lambda_1 is None else layer.lambda_1 * attention)
            ffn = layer.output(layer.intermediate(layer.layernorm_after(hidden)))
            hidden = hidden + (ffn if layer.lambda_2 is None else layer.lambda_2 * ffn)
        else:  # vit, deit, beit: pre-LN, layer scale for BEiT
            attention = layer.attention(layer.layernorm_before(hidden))[0]
            hidden = hidden + getattr(layer, "lambda_1", 1.0) * attention
            ffn = layer.mlp(layer.layernorm_after(hidden))
            hidden = hidden + getattr(layer, "lambda_2", 1.0) * ffn
        ffn_outputs.append(ffn)
        block_outputs.append(hidden)
    return ffn_outputs, block_outputs


def save_tiny_checkpoints(root: Path, tokenizer) -> dict[str, Path]:
    """
    Tiny checkpoints of nine families saved to folders as released models are (text ones with `tokenizer`, ViT with
    an image processor, wav2vec 2.0 with a feature extractor): `{name: folder}`. The image models read 28 x 28.
    """
    import transformers

    text = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    roberta = {**text, "max_position_embeddings": tokenizer.model_max_length + 2}  # positions after the padding index
    image = {"image_size": 28, "patch_size": 7}
    families = {
        "bert": ("text", "BertModel", {**text, "max_position_embeddings": tokenizer.model_max_length}),
        "roberta": ("text", "RobertaModel", roberta),
        "data2vec-text": ("text", "Data2VecTextModel", roberta),
        "vit": ("vision", "ViTModel", image),  # DINO checkpoints are ViTModel
        "beit": ("vision", "BeitModel", image),
        # as the students run_pretraining.py exports: CLS pooling in the config (the comparison turns on mean pooling)
        "data2vec-vision": ("vision", "Data2VecVisionModel", {**image, "use_mean_pooling": False}),
        "wav2vec2": ("audio", "Wav2Vec2Model", {}),
        "hubert": ("audio", "HubertModel", {}),
        "data2vec-audio": ("audio", "Data2VecAudioModel", {}),
    }  # fmt: skip
    folders = {}
    for seed, (model_type, (modality, class_name, fields)) in enumerate(families.items()):
        torch.manual_seed(seed)
        config = tiny_backbone_config(modality, 2, model_type, **fields)
        folder = root / model_type
        getattr(transformers, class_name)(config).save_pretrained(folder)
        if modality == "text":
            tokenizer.save_pretrained(folder)
        elif model_type == "vit":
            transformers.ViTImageProcessor(size={"height": 28, "width": 28}).save_pretrained(folder)
        elif model_type == "wav2vec2":
            transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(folder)
        folders[model_type] = folder
    return folders


def make_trainer(tmp_path, model=None, dataset_size=32, **arg_overrides):
    """A `Data2VecPretrainingTrainer` of the tiny text model (no dropout) on random token ids: 4 steps of 8."""
    from datasets import Dataset

    from d2v_hf import Data2VecForPretraining
    from d2v_hf.data_collator import data_collator_for
    from d2v_hf.trainer import Data2VecPretrainingArguments, Data2VecPretrainingTrainer

    config = tiny_config("text", backbone_kwargs=NO_DROPOUT)
    torch.manual_seed(0)
    model = model or Data2VecForPretraining(config)
    generator = torch.Generator().manual_seed(0)
    dataset = Dataset.from_dict({"input_ids": torch.randint(3, 98, (dataset_size, 16), generator=generator).tolist()})
    args = dict(
        output_dir=str(tmp_path),
        max_steps=4,
        per_device_train_batch_size=8,
        logging_steps=1,
        learning_rate=1e-3,
        use_cpu=True,
        save_strategy="no",
        seed=0,
        data_seed=0,
    )
    args.update(arg_overrides)
    trainer = Data2VecPretrainingTrainer(
        model=model,
        args=Data2VecPretrainingArguments(**args),
        data_collator=data_collator_for(model.config, build_tokenizer(["a tiny corpus"], vocab_size=300)),  # pad 1
        train_dataset=dataset,
        eval_dataset=dataset.select(range(8)),
    )
    return trainer


# a tiny text run of run_pretraining.py that two launchers must train alike (DDP, DeepSpeed, one process)
CORPUS_WORDS = (
    "the teacher sees the whole sentence while the student sees a masked copy and regresses its layers".split()
)
TINY_RUN_OVERRIDES = (
    "backbone.hidden_size=32,backbone.intermediate_size=64,backbone.num_hidden_layers=2,average_top_k_layers=2,"
    # no dropout: runs on different numbers of processes draw their dropout masks in a different order
    "backbone.hidden_dropout_prob=0,backbone.attention_probs_dropout_prob=0"
)


def tiny_text_study_arguments(shared_data: Path, root: Path, **overrides) -> StudyArguments:
    """A text-only quick study of one seed on a 300-line corpus and a 400-token tokenizer, its folders under `root`."""
    settings = dict(
        mode="quick",
        data_dir=str(shared_data),
        output_dir=str(root / "out"),
        docs_dir=str(root / "docs"),
        model_cards_dir=str(root / "cards"),
        modalities="text",
        seeds="0",
        corpus_lines=300,
        tokenizer_vocab_size=400,
        max_seq_length=32,
        text_batch_size=4,
    )
    return StudyArguments(**{**settings, **overrides})


def vision_study_results(scores: dict[str, dict[int, list[float]]], budget=1e12, **config) -> dict:
    """
    The raw results of a study of the image modality, as `study.py` saves them: `scores[arm][step]` = the per-seed
    main-probe scores at that step (random init: at step 0); `config` the run's saved settings, if a test reads them.
    """
    arms, plan = {}, {}
    for arm, per_step in scores.items():
        seeds = {}
        for step, values in per_step.items():
            for seed, value in enumerate(values):
                entry = seeds.setdefault(str(seed), {"probes": {}})
                entry["probes"][str(step)] = {"fashion_mnist": value, "fashion_mnist_knn": value, "checkpoint": "x"}
        arms[arm] = {"seeds": seeds}
        if arm != "random":
            plan[arm] = {"flops_per_step": budget / max(per_step), "steps": max(per_step)}
    results = {"modalities": {"vision": {"plan": {"budget_flops": budget, "arms": plan}, "arms": arms}}}
    return {**results, "config": config} if config else results


def write_word_corpus(path: Path, lines: int = 400) -> Path:
    """A text file of `lines` random sentences of CORPUS_WORDS (8 to 29 words), seeded."""
    rng = np.random.default_rng(0)
    text = "\n".join(" ".join(rng.choice(CORPUS_WORDS, size=rng.integers(8, 30))) for _ in range(lines))
    path.write_text(text + "\n")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_command(num_processes: int) -> list[str]:
    """`torchrun` on this machine: `--standalone` lets the rendezvous pick a free port itself (no port race)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={num_processes}"]


def run_processes(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """
    `subprocess.run(command, capture_output=True, text=True)` in a new session; on timeout the whole session is killed,
    so that no worker process outlives its test (a stuck rank left behind would slow every later test).
    """
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # torchrun may start its workers in sessions of their own: kill every descendant, then the session
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate(timeout=60)
            raise AssertionError(
                f"timed out after {timeout} s: {command}\n{stdout[-3000:]}\n{stderr[-3000:]}"
            ) from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def accelerate_launch_command(num_processes: int) -> list[str]:
    """
    CPU data parallelism with accelerate. `accelerate launch --cpu --num_processes 2` starts ONE process unless MPI
    is installed (accelerate's simple launcher); `--multi_gpu` starts them with torchrun, and `--use_cpu` makes the
    Trainer use the gloo backend on CPU.
    """
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    return [
        accelerate,
        "launch",
        "--multi_gpu",
        f"--num_processes={num_processes}",
        f"--main_process_port={free_port()}",
    ]


def accelerate_launch_env(config_file: str | Path) -> dict[str, str]:
    """
    The environment `accelerate launch --config_file CONFIG_FILE` gives each process (FSDP / DeepSpeed plugin fields,
    mixed precision), through accelerate's own launcher functions, without starting any process.
    """
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(config_file), "script.py"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:  # what launch_command adds before the DeepSpeed launcher
        fields = list(defaults.deepspeed_config) + ["mixed_precision"]
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return prepare_deepspeed_cmd_env(args)[1]
    return prepare_multi_gpu_env(args)
