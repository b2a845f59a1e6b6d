"""
What a checkpoint comparison (`examples/study/compare_checkpoints.py`) of base-size models costs: the training FLOPs
of one fine-tuning step of each family's task head, counted with `FlopCounterMode` on meta tensors (no weights, no
download, any machine), times the steps of the protocol ((learning rates + seeds) x steps per (checkpoint, task)).
GPU hours follow from an assumed sustained throughput, printed with the table: the counts are exact, the hours are
an estimate until measured on the GPU (`benchmarks/gpu_suite.sh` measures pretraining throughput there).

    python benchmarks/comparison_cost.py --max_steps 2000 --batch_size 32 --learning_rates 4 --seeds 3
"""

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    AutoModelForAudioClassification,
    AutoModelForImageClassification,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    BeitConfig,
    BertConfig,
    HubertConfig,
    RobertaConfig,
    ViTConfig,
    Wav2Vec2Config,
)

from d2v_hf.recipes import base_backbone_config


# the base checkpoints of the README's GPU section, by the configuration they load with
BASE_CHECKPOINTS = {
    "text": {
        "facebook/data2vec-text-base": lambda: base_backbone_config("text"),
        "roberta-base": lambda: RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1),
        "bert-base-uncased": lambda: BertConfig(),
    },
    "vision": {
        "facebook/data2vec-vision-base": lambda: base_backbone_config("vision"),
        "google/vit-base-patch16-224-in21k": lambda: ViTConfig(),
        "facebook/dino-vitb16": lambda: ViTConfig(),
        "microsoft/beit-base-patch16-224-pt22k": lambda: BeitConfig(use_relative_position_bias=False),
    },
    "audio": {
        "facebook/data2vec-audio-base": lambda: base_backbone_config("audio"),
        "facebook/wav2vec2-base": lambda: Wav2Vec2Config(),
        "facebook/hubert-base-ls960": lambda: HubertConfig(),
    },
}


def step_flops(config, task: str, batch_size: int, seq_length: int, qa_length: int, audio_seconds: float) -> int:
    """Training FLOPs (forward + backward) of one fine-tuning step of `config`'s task head, on meta tensors."""
    with torch.device("meta"):
        if task in ("glue", "qa"):
            length = seq_length if task == "glue" else qa_length
            auto = AutoModelForSequenceClassification if task == "glue" else AutoModelForQuestionAnswering
            model = auto.from_config(config)
            inputs = {"input_ids": torch.zeros(batch_size, length, dtype=torch.long)}
            if task == "glue":
                inputs["labels"] = torch.zeros(batch_size, dtype=torch.long)
            else:
                positions = torch.zeros(batch_size, dtype=torch.long)
                inputs.update(start_positions=positions, end_positions=positions)
        elif task == "image":
            config.num_labels = 10
            model = AutoModelForImageClassification.from_config(config)
            side = config.image_size
            inputs = {"pixel_values": torch.zeros(batch_size, 3, side, side)}
            inputs["labels"] = torch.zeros(batch_size, dtype=torch.long)
        else:
            config.num_labels = 10
            model = AutoModelForAudioClassification.from_config(config)
            inputs = {"input_values": torch.zeros(batch_size, int(audio_seconds * 16000))}
            inputs["labels"] = torch.zeros(batch_size, dtype=torch.long)
        model.eval()  # every layer counted (LayerDrop's random skip would read a meta tensor); dropout costs no FLOPs
        with FlopCounterMode(display=False) as counter:
            model(**inputs).loss.backward()
    return counter.get_total_flops()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_steps", type=int, default=2000, help="Fine-tuning steps per run.")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rates", type=int, default=4, help="Candidates of the sweep.")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max_seq_length", type=int, default=128, help="GLUE tokens (an upper bound: padding).")
    parser.add_argument("--qa_max_seq_length", type=int, default=384)
    parser.add_argument("--audio_seconds", type=float, default=1.0)
    parser.add_argument(
        "--sustained_tflops", type=float, default=300.0,
        help="Assumed bf16 training throughput (300 ~ 30%% of an H100/H200's dense peak); not measured here.",
    )  # fmt: skip
    args = parser.parse_args(argv)
    runs = args.learning_rates + args.seeds
    tasks = {"text": [("GLUE task (e.g. SST-2)", "glue"), ("XQuAD / SQuAD", "qa")]}
    tasks.update(vision=[("image classification", "image")], audio=[("audio classification", "audio")])
    print(
        f"Per (checkpoint, task): {runs} runs ({args.learning_rates} learning rates + {args.seeds} seeds) x "
        f"{args.max_steps} steps of batch {args.batch_size}; evaluation and the probes (forward passes only) are not "
        f"counted. GPU hours at an assumed {args.sustained_tflops:.0f} TFLOP/s sustained.\n"
    )
    print("| checkpoint | task | TFLOP per step | PFLOP per (checkpoint, task) | GPU hours |")
    print("|---|---|---:|---:|---:|")
    total = 0.0
    for modality, checkpoints in BASE_CHECKPOINTS.items():
        for name, make_config in checkpoints.items():
            for title, task in tasks[modality]:
                flops = step_flops(
                    make_config(), task, args.batch_size, args.max_seq_length, args.qa_max_seq_length,
                    args.audio_seconds,
                )  # fmt: skip
                pair = flops * runs * args.max_steps
                hours = pair / (args.sustained_tflops * 1e12) / 3600
                total += hours
                print(f"| {name} | {title} | {flops / 1e12:.2f} | {pair / 1e15:.0f} | {hours:.2f} |")
    print(f"\nAll of the above: {total:.1f} GPU hours.")


if __name__ == "__main__":
    main()
