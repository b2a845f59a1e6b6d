"""
Pretraining loss against wall-clock time for data2vec 1.0 and data2vec 2.0 on the same data: the tiny text model of
`run_pretraining.py` (4 x 64) on the embedded corpus (the installed Python's documentation, BPE vocabulary 4000),
blocks of 64 tokens, the same batches in the same order, AdamW with the same learning rate, each run for the same
number of seconds. The two objectives differ (1.0: smooth L1 on LayerNorm'ed targets; 2.0: L2 on instance-normed
targets, M masked copies), so each curve is divided by its own first loss.

python benchmarks/loss_vs_time.py --seconds 60 --output docs/img/loss_vs_time_text.png
"""

import argparse
import time

import torch
from datasets import Dataset

from d2v_hf import Data2VecForPretraining, Data2VecPretrainingConfig, data_collator_for
from d2v_hf.configuration_data2vec_pretraining import tiny_backbone_config
from d2v_hf.data import build_default_corpus, tokenize_and_group, train_bpe_tokenizer


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="training time of each run")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--clone_batch", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--warmup_steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max_chars", type=int, default=400_000, help="of the embedded corpus")
    parser.add_argument("--output", default="docs/img/loss_vs_time_text.png")
    return parser.parse_args(argv)


def train_for(model, batches, seconds: float, learning_rate: float, warmup_steps: int) -> list[tuple[float, float]]:
    """Trains until `seconds` have passed (cycling over `batches`); returns (elapsed seconds, loss) per step."""
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=learning_rate, betas=(0.9, 0.98), eps=1e-6
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup_steps))
    model.train()
    curve, start, step = [], time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        loss = model(**batches[step % len(batches)]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        model.ema_step()
        curve.append((time.perf_counter() - start, loss.item()))
        step += 1
    return curve


def plot(curves: dict[str, list[tuple[float, float]]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, curve in curves.items():
        seconds, losses = zip(*curve)
        smooth = [sum(losses[max(0, i - 9) : i + 1]) / len(losses[max(0, i - 9) : i + 1]) for i in range(len(losses))]
        left.plot(seconds, [v / losses[0] for v in smooth], label=label)
        right.plot(seconds, range(1, len(seconds) + 1), label=label)
    left.set(xlabel="wall-clock seconds", ylabel="loss / first loss (10-step mean)", title="Pretraining loss")
    right.set(xlabel="wall-clock seconds", ylabel="optimizer steps", title="Steps (same batch of samples)")
    left.legend()
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    texts = Dataset.from_dict({"text": build_default_corpus(max_chars=args.max_chars)})
    tokenizer = train_bpe_tokenizer(texts, vocab_size=4000)
    blocks = tokenize_and_group(texts, tokenizer, max_seq_length=args.max_seq_length)
    examples = [blocks[i] for i in range(len(blocks))]
    curves = {}
    for mode in ("data2vec", "data2vec2"):
        # the demo's tiny recipe (run_pretraining.py --model_size tiny): K = 3 of 4 layers
        backbone = tiny_backbone_config(
            "text",
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        recipe = {"mode": "data2vec2", "clone_batch": args.clone_batch} if mode == "data2vec2" else {}
        config = Data2VecPretrainingConfig.from_preset(
            "text", backbone, average_top_k_layers=3, mask_token_id=tokenizer.mask_token_id, **recipe
        )
        torch.manual_seed(0)
        model = Data2VecForPretraining(config)
        collator = data_collator_for(model.config, tokenizer)
        batches = [
            collator(examples[i : i + args.batch_size])
            for i in range(0, len(examples) - args.batch_size + 1, args.batch_size)
        ]
        curve = train_for(model, batches, args.seconds, args.learning_rate, args.warmup_steps)
        label = "data2vec 1.0" if mode == "data2vec" else f"data2vec 2.0 (M={args.clone_batch})"
        curves[label] = curve
        tail = [loss for _, loss in curve[-10:]]
        print(
            f"{label}: {len(curve)} steps in {curve[-1][0]:.0f} s, first loss {curve[0][1]:.3f}, "
            f"mean of last 10 {sum(tail) / len(tail):.3f} ({sum(tail) / len(tail) / curve[0][1]:.2f} of the first)"
        )
    plot(curves, args.output)
    print(f"wrote {args.output} ({len(examples)} blocks of {args.max_seq_length} tokens)")
    return curves


if __name__ == "__main__":
    main()
