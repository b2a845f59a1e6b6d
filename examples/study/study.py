"""
The study end to end ([`run_study`]): pretraining runs, then fine-tuning and probes for every arm x task x seed (side
by side in worker processes), then the report and the model cards. Finished runs are kept in
`output_dir/partial_results.json`, so an interrupted study resumes where it stopped.

The parts: `study_config.py` (arms, tasks, modes, [`StudyArguments`]), `study_utils.py` (shared helpers),
`study_text.py` (text arms), `study_vision_audio.py` (image and speech arms), `study_report.py` and
`study_report_vision_audio.py` (docs/study.md and the model cards). `run_study.py` is the command line.

```python
>>> from study import StudyArguments, run_study  # from examples/study/
>>> results = run_study(StudyArguments(mode="quick", data_dir="../shared/data"))  # under 30 minutes on 2 CPU cores
```
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from d2v_hf.data import espeak_ng_available

from study_config import ARMS, MODALITY_OF_TASK, MODALITY_TASKS, PRETRAINING_FIELDS, TEXT_TASKS, StudyArguments
from study_report import discuss_results, push_study_models, write_study_model_cards, write_study_report
from study_report_vision_audio import describe_backbone
from study_text import prepare_corpus, save_random_init, text_diagnostics, train_study_tokenizer
from study_utils import environment_info, run_jobs, study_backbone_config, summarize_runs
from study_vision_audio import fashion_mnist_dir, mean_pooling_checkpoint, prepare_spoken_digits


logger = logging.getLogger(__name__)


def _pretraining_key(args: StudyArguments, run: str) -> dict:
    return {k: getattr(args, k) for k in ("data_dir", "output_dir", "model_size") + PRETRAINING_FIELDS[run]}


def _run_settings(config: dict) -> dict:
    selection = {"tasks", "arms", "seeds", "docs_dir", "model_cards_dir", "push_to_hub", "hub_org", "workers"}
    return {k: v for k, v in config.items() if k not in selection}


def _data2vec_recipe(out: Path) -> dict:
    path = out / "pretrain" / "data2vec" / "config.json"
    if not path.is_file():
        return {}
    config = json.loads(path.read_text())
    keys = ("average_top_k_layers", "ema_decay", "ema_end_decay", "ema_anneal_end_step", "mask_prob")
    return {k: config.get(k) for k in keys + ("text_mask_strategy",)}


# The slowest first, so that two workers finish together.
_JOB_ORDER = {"xquad": 0, "stsb": 1, "spoken_digits": 2, "fashion_mnist": 3, "sst2": 4}


def _check_study_inputs(args: StudyArguments) -> None:
    """Missing data or tools fail before anything runs."""
    data = Path(args.data_dir)
    needed = {
        "sst2": data / "glue" / "sst2",
        "stsb": data / "glue" / "stsb",
        "xquad": data / "xquad",
        "fashion_mnist": data / "vision" / "fashion-mnist",
        "spoken_digits": data / "speech",
    }
    if set(args.task_list) & set(TEXT_TASKS):
        needed["corpus"] = data / "corpus" / "gcide_en.txt.gz"
    missing = [str(path) for task, path in needed.items() if (task in args.task_list or task == "corpus")]
    missing = [path for path in missing if not Path(path).exists()]
    if missing:
        raise ValueError(f"--data_dir {args.data_dir}: missing {missing} (see ../shared/data/README.md).")
    if "spoken_digits" in args.task_list and not espeak_ng_available():
        raise ValueError(
            "The spoken_digits task synthesizes its digits with espeak-ng, which is not installed (Debian/Ubuntu: "
            "apt-get install espeak-ng); install it or leave spoken_digits out of --tasks."
        )


def run_study(args: StudyArguments, command: str | None = None) -> dict:
    """
    Runs the study end to end (pretraining, fine-tuning over seeds, report, model cards) and returns the raw
    results. Finished pretraining and fine-tuning runs are kept in `output_dir/partial_results.json`, so an
    interrupted study resumes where it stopped (with the same arguments).
    """
    _check_study_inputs(args)
    start = time.time()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    partial_path = out / "partial_results.json"
    partial = json.loads(partial_path.read_text()) if partial_path.is_file() else {}
    # A finished pretraining run is kept while its own settings are unchanged; finished fine-tuning runs (keyed by
    # arm, task and seed) are kept when only the selection of arms, tasks or seeds (or where the report goes) changed.
    partial["pretraining"] = {
        run: info
        for run, info in (partial.get("pretraining") or {}).items()
        if run in PRETRAINING_FIELDS and info.get("key") == _pretraining_key(args, run)
    }
    if _run_settings(partial.get("config") or {}) != _run_settings(args.to_dict()):
        partial["runs"] = []
    partial["config"] = args.to_dict()
    # wall clock spent by earlier, interrupted invocations on the runs that are kept
    elapsed_before = partial.get("elapsed_s", 0.0) if partial.get("runs") or partial["pretraining"] else 0.0

    def save_partial():
        partial["elapsed_s"] = elapsed_before + time.time() - start
        partial_path.write_text(json.dumps(partial, indent=1), encoding="utf-8")

    text_tasks = [t for t in args.task_list if t in TEXT_TASKS]
    corpus_file, tokenizer_dir = str(out / "corpus.txt"), str(out / "tokenizer")
    corpus, backbone_text = partial.get("corpus"), None
    if text_tasks:
        if corpus is None or not Path(tokenizer_dir).is_dir():
            corpus = prepare_corpus(Path(args.data_dir) / "corpus" / "gcide_en.txt.gz", corpus_file, args.corpus_lines)
            train_study_tokenizer(corpus_file, tokenizer_dir, args.tokenizer_vocab_size)
            partial["corpus"] = corpus
        backbone = study_backbone_config("text", args.model_size, AutoTokenizer.from_pretrained(tokenizer_dir))
        backbone_text = (
            f"{backbone.num_hidden_layers} layers x {backbone.hidden_size} hidden, {backbone.num_attention_heads} "
            f"heads, FFN {backbone.intermediate_size}, vocabulary {backbone.vocab_size}"
        )
    digits = prepare_spoken_digits(args, out / "speech") if "spoken_digits" in args.task_list else None

    # 1. Pretraining runs (side by side with --workers)
    text_kwargs = dict(args=args, corpus_file=corpus_file, tokenizer_dir=tokenizer_dir)
    modality_kwargs = {
        "fashion_mnist": ("data2vec_vision", dict(modality="vision", train_path=str(fashion_mnist_dir(args)))),
        "spoken_digits": ("data2vec_audio", dict(modality="audio", train_path=digits and digits["corpus"])),
    }
    wanted_pretraining = []
    if text_tasks:
        wanted_pretraining += [
            ("data2vec", "study_text:pretrain_data2vec", text_kwargs),
            ("mlm", "study_text:pretrain_mlm", text_kwargs),
        ]
        wanted_pretraining = [job for job in wanted_pretraining if job[0] in args.arm_list]
    if "data2vec" in args.arm_list:
        for task, (run, kwargs) in modality_kwargs.items():
            if task in args.task_list:
                wanted_pretraining.append((run, "study_vision_audio:pretrain_modality", dict(args=args, **kwargs)))
    jobs = [
        (run, target, {**kwargs, "output_dir": str(out / "pretrain" / run)})
        for run, target, kwargs in wanted_pretraining
        if run not in partial["pretraining"]
    ]

    def pretraining_done(run, result):
        partial["pretraining"][run] = {**result, "key": _pretraining_key(args, run)}
        save_partial()
        logger.warning(f"    pretraining {run}: final loss {result['final_loss']} ({result['wall_time_s']:.0f}s)")

    logger.warning(f"*** Pretraining: {[job[0] for job in jobs] or 'nothing left to run'} ***")
    run_jobs(jobs, args.workers, args.torch_threads, pretraining_done)

    # 2. The checkpoints each arm fine-tunes
    def checkpoint_for(arm: str, task: str, seed: int) -> str:
        if task in TEXT_TASKS:
            if arm != "random":
                return partial["pretraining"][arm]["checkpoint"]
            path = str(out / "random_init" / f"seed{seed}")
            return path if Path(path).is_dir() else save_random_init(args, tokenizer_dir, path, seed)
        run, _ = modality_kwargs[task]
        modality = MODALITY_OF_TASK[task]
        if arm == "data2vec":
            source = partial["pretraining"][run]["checkpoint"]
            return mean_pooling_checkpoint(args, modality, source, str(out / "checkpoints" / run), 0)
        path = str(out / "checkpoints" / f"random_{modality}_seed{seed}")
        return mean_pooling_checkpoint(args, modality, None, path, seed)

    # 3. Fine-tuning runs (and probes), every arm x task x seed
    def wanted_run(arm, task):
        return task in TEXT_TASKS or arm in ("data2vec", "random")

    wanted = {(a, t, s) for a in args.arm_list for t in args.task_list for s in args.seed_list if wanted_run(a, t)}
    done = {(r["arm"], r["task"], r["seed"]) for r in partial["runs"]}
    jobs = []
    for arm, task, seed in sorted(wanted - done, key=lambda k: (_JOB_ORDER[k[1]], k[2], k[0])):
        run_dir = str(out / "finetune" / f"{arm}-{task}-seed{seed}")
        kwargs = dict(args=args, checkpoint=checkpoint_for(arm, task, seed), seed=seed, output_dir=run_dir)
        if task == "xquad":
            jobs.append(((arm, task, seed), "study_text:finetune_xquad", kwargs))
        elif task in TEXT_TASKS:
            jobs.append(((arm, task, seed), "study_text:finetune_glue", dict(kwargs, task=task)))
        else:
            kwargs.update(task=task, arm=arm, paths=digits)
            jobs.append(((arm, task, seed), "study_vision_audio:run_modality_task", kwargs))

    def finetuning_done(key, run):
        arm, task, seed = key
        partial["runs"].append({"arm": arm, "task": task, "seed": seed, **run})
        save_partial()
        logger.warning(f"    {arm} {task} seed {seed}: {run['scores']} ({run['wall_time_s']:.0f}s)")

    logger.warning(f"*** Fine-tuning: {len(jobs)} runs with {args.workers} worker(s) ***")
    run_jobs(jobs, args.workers, args.torch_threads, finetuning_done)

    checkpoints = {
        arm: partial["pretraining"][arm]["checkpoint"] for arm in ("data2vec", "mlm") if arm in partial["pretraining"]
    }
    if "random" in args.arm_list and text_tasks:
        checkpoints["random"] = checkpoint_for("random", text_tasks[0], args.seed_list[0])
    for task in args.task_list:
        if task in MODALITY_TASKS:
            modality = MODALITY_OF_TASK[task]
            for arm in ("data2vec", "random"):
                if arm in args.arm_list:
                    checkpoints[f"{arm}_{modality}"] = checkpoint_for(arm, task, args.seed_list[0])

    runs = [r for r in partial["runs"] if (r["arm"], r["task"], r["seed"]) in wanted]
    text_checkpoints = {arm: checkpoints[arm] for arm in ARMS if arm in checkpoints}
    diagnostics = text_diagnostics(args, text_checkpoints, corpus_file, tokenizer_dir) if text_checkpoints else {}
    config = {**args.to_dict(), "task_list": args.task_list, "arm_list": args.arm_list, "seed_list": args.seed_list}
    results = {
        "command": command or "python examples/study/run_study.py",
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_time_s": elapsed_before + time.time() - start,
        "runs_time_s": sum(r["wall_time_s"] for r in runs)
        + sum(p["wall_time_s"] for p in partial["pretraining"].values()),
        "environment": environment_info(),
        "config": config,
        "corpus": corpus,
        "backbone": backbone_text,
        "modality_backbones": {
            MODALITY_OF_TASK[t]: describe_backbone(args, MODALITY_OF_TASK[t])
            for t in args.task_list
            if t in MODALITY_TASKS
        },
        "data2vec_top_k": _data2vec_recipe(out).get("average_top_k_layers"),
        "data2vec_recipe": _data2vec_recipe(out),
        "checkpoints": checkpoints,
        "pretraining": partial["pretraining"],
        "diagnostics": diagnostics,
        "runs": runs,
    }
    results["summary"] = summarize_runs(results["runs"])
    write_study_report(results, args.docs_dir, analysis=discuss_results(results))
    write_study_model_cards(results, args.model_cards_dir)
    save_partial()  # the wall clock so far, for a later call that only rewrites the report
    if args.push_to_hub:
        results["pushed"] = push_study_models(results, args.hub_org, token=args.hub_token)
    return results


__all__ = [
    "StudyArguments",
    "run_study",
]
