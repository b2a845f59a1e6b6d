"""
The sequence-packing lever on a padded corpus: the same documents trained on once padded one per row (the data2vec
1.0 text recipe's `complete_doc` layout, each batch padded to its longest row, as the collator does) and once packed
into full rows ([`d2v_hf.data.pack_samples`], each token attending within its own document). Both see the same real
tokens with the same model; the table gives real tokens per second (the fastest of passes that alternate between the
layouts, so that both see the same load), the share of computed positions that are padding, and peak memory. The
document lengths are synthetic: log-normal around a fifth of the row length, a padded corpus of
short documents (sentences, paragraphs) such as GCIDE's.

python benchmarks/sequence_packing.py --size tiny --length 128 --batch_size 8 --documents 256
"""

import argparse
import time

import numpy as np
import torch

from d2v_hf import Data2VecForPretraining, compute_text_span_mask
from d2v_hf.data import pack_samples
from d2v_hf.data_collator import pad_position_ids

from measurement import PeakMemory, hardware_line, synchronize
from reference_steps import BenchmarkSetup, backbone_config, data2vec_config, train_step


def document_lengths(count: int, row_length: int, seed: int = 0) -> list[int]:
    """Log-normal lengths with a median of a fifth of the row, between 4 tokens and a full row."""
    rng = np.random.default_rng(seed)
    lengths = rng.lognormal(mean=np.log(row_length / 5), sigma=0.8, size=count)
    return [int(n) for n in np.clip(lengths, 4, row_length)]


def _batches(rows: list[list[int]], positions: list[list[int]] | None, setup: BenchmarkSetup, pad_token_id: int):
    """Batches of `setup.batch_size` rows, each padded to its longest row, with span masks over the real tokens."""
    generator = torch.Generator().manual_seed(0)
    config = data2vec_config(setup, "data2vec")
    batches = []
    for start in range(0, len(rows), setup.batch_size):
        chunk = rows[start : start + setup.batch_size]
        width = max(len(row) for row in chunk)
        input_ids = torch.full((len(chunk), width), pad_token_id)
        attention_mask = torch.zeros_like(input_ids)
        for i, row in enumerate(chunk):
            input_ids[i, : len(row)], attention_mask[i, : len(row)] = torch.tensor(row), 1
        mask = compute_text_span_mask(attention_mask, config.mask_prob, config.mask_length, generator=generator)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "mask": mask}
        if positions is not None:  # padded as the collator pads them
            pairs = zip(chunk, positions[start : start + setup.batch_size])
            batch["position_ids"] = pad_position_ids([{"input_ids": i, "position_ids": p} for i, p in pairs], width)
        batches.append(batch)
    return batches


def _prepare(setup: BenchmarkSetup, batches: list[dict]):
    """The model, its optimizer and the batches on the device, after one warm-up step; the peak memory of that."""
    device = torch.device(setup.device)
    with PeakMemory(device) as memory:
        torch.manual_seed(0)
        model = Data2VecForPretraining(data2vec_config(setup, "data2vec")).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=setup.fused_adamw or None)
        batches = [{k: v.to(device) for k, v in batch.items()} for batch in batches]
        train_step("data2vec", model, batches[0], optimizer, setup)
        synchronize(device)
    return model, optimizer, batches, memory.used


def _timed_pass(setup: BenchmarkSetup, model, optimizer, batches: list[dict]) -> tuple[float, float]:
    """One pass over `batches`: (seconds, last loss)."""
    device = torch.device(setup.device)
    synchronize(device)
    start = time.perf_counter()
    for batch in batches:
        loss = train_step("data2vec", model, batch, optimizer, setup)
    synchronize(device)
    return time.perf_counter() - start, float(loss)


def packing_table(setup: BenchmarkSetup, documents: int, repeats: int = 2) -> str:
    """
    Markdown: the padded and the packed layout of the same `documents` documents, each timed over `repeats` passes
    (alternating with the other layout's; the fastest is reported).
    """
    if setup.modality != "text":
        raise ValueError("Sequence packing is a text lever; pass a text setup.")
    backbone = backbone_config(setup)
    generator = torch.Generator().manual_seed(1)
    samples = [
        torch.randint(5, backbone.vocab_size - 1, (n,), generator=generator).tolist()
        for n in document_lengths(documents, setup.length)
    ]
    real = sum(len(sample) for sample in samples)
    packed = pack_samples(samples, setup.length)
    layouts = {
        "padded, one document per row": _batches(samples, None, setup, backbone.pad_token_id),
        "packed rows, attention within each document": _batches(
            packed["input_ids"], packed["position_ids"], setup, backbone.pad_token_id
        ),
    }
    lines = [
        f"{documents} documents of {min(map(len, samples))}-{max(map(len, samples))} tokens (median "
        f"{int(np.median([len(s) for s in samples]))}), {real:,} real tokens; rows of at most {setup.length}, batch "
        f"{setup.batch_size} rows, {setup.size} data2vec 1.0 text model, {setup.dtype}, {setup.device}",
        "",
        "| layout | steps | positions computed | padding share | real tokens/s | fastest pass (s) | peak memory (MiB) "
        "| last loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    prepared = {name: _prepare(setup, batches) for name, batches in layouts.items()}
    passes = {name: [] for name in layouts}
    for _ in range(repeats):  # the layouts' passes alternate, so that both see the same load on a shared machine
        for name, (model, optimizer, batches, _) in prepared.items():
            passes[name].append(_timed_pass(setup, model, optimizer, batches))
    speeds = []
    for name, (_, _, batches, memory) in prepared.items():
        computed = sum(batch["input_ids"].numel() for batch in batches)
        seconds, loss = min(passes[name])
        speeds.append(real / seconds)
        lines.append(
            f"| {name} | {len(batches)} | {computed:,} | {1 - real / computed:.0%} | {real / seconds:,.0f} | "
            f"{seconds:.2f} | {memory / 2**20:,.0f} | {loss:.3f} |"
        )
    lines += ["", f"Packed against padded: {speeds[1] / speeds[0]:.2f}x the real tokens per second."]
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny", choices=("tiny", "base"))
    parser.add_argument("--length", type=int, default=128, help="Row length (max_seq_length).")
    parser.add_argument("--batch_size", type=int, default=8, help="Rows per step.")
    parser.add_argument("--documents", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, choices=("fp32", "bf16"), help="Default: bf16 on CUDA, else fp32.")
    args = parser.parse_args(argv)
    dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    shape = dict(batch_size=args.batch_size, length=args.length)
    setup = BenchmarkSetup(modality="text", size=args.size, device=args.device, dtype=dtype, **shape)
    table = f"Hardware: {hardware_line(args.device)}\n\n{packing_table(setup, args.documents)}"
    print(table)
    return table


if __name__ == "__main__":
    main()
