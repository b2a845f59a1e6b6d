"""
The study end to end ([`run_study`]), per modality:

1. Compute plan: the training FLOPs of one step of every arm (`FlopCounterMode`, teacher forward included); each arm
   gets the steps that spend the budget of the data2vec 1.0 arm (`--{modality}_steps` of its steps).
2. Pretraining: every arm x seed (`study_arms.py`), the backbone saved at `--probe_points` evenly spaced steps; the
   `random` arm is the backbone as initialised (one per seed).
3. Probes: every saved backbone on every probe of its modality (`study_probes.py`), queued as soon as its run is
   done (a worker probes one run while another trains): score against compute.
4. Fine-tuning of the last backbone of every arm (`--finetune_tasks`): a learning-rate sweep on a part of the
   training data held out for it (first seed), then one run per seed with the chosen rate, scored on the task's
   evaluation set, through the example scripts (the protocol of `compare_checkpoints.py`).
5. The report (`docs/study.md`, from `docs/study_results.json`) and the model cards (`study_model_cards.py`).

Runs go side by side in `--workers` processes; every finished run is saved in `output_dir/partial_results.json`,
so an interrupted study resumes where it stopped.

```python
>>> from study import StudyArguments, run_study  # from examples/study/
>>> results = run_study(StudyArguments(mode="quick", data_dir="../shared/data"))  # 30 minutes on 2 CPU cores
```
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from d2v_hf.atomic_io import atomic_write_text

from comparison_tasks import TASKS, task_data
from study_arms import (
    WAV2VEC2_NEGATIVES,
    batch_size,
    pretrain_arm,
    random_backbone,
    step_flops,
    teacher_schedule,
    text_tokenizer,
)
from study_config import (
    DATA2VEC_ARMS,
    FINETUNE_FIELDS,
    MODALITY_OF_TASK,
    PRETRAINING_CLASSES,
    PRETRAINING_FIELDS,
    PROBE_FIELDS,
    StudyArguments,
)
from study_data import check_study_inputs, comparison_arguments, prepare_data
from study_model_cards import write_study_model_cards
from study_report import write_study_report
from study_utils import environment_info, run_jobs


logger = logging.getLogger(__name__)


# Settings added after runs were saved, at the value those runs had: left out of the key there, so they still resume
# (the runs before --text_corpus trained on GCIDE, those before --text_mask_strategy with the released spans, those
# before --backbone_overrides at --model_size's own, those before --data2vec_overrides / --data2vec2_overrides with
# the released recipes).
_KEYLESS_DEFAULTS = {
    "text_corpus": "gcide", "text_mask_strategy": "span", "backbone_overrides": None, "data2vec_overrides": None,
    "data2vec2_overrides": None,
}  # fmt: skip


def _key(args, modality: str, extra: tuple = ()) -> dict:
    settings = {name: getattr(args, name) for name in ("data_dir",) + PRETRAINING_FIELDS[modality] + extra}
    for name, value in _KEYLESS_DEFAULTS.items():
        if settings.get(name) == value:
            del settings[name]
    return settings


class PartialResults:
    """`output_dir/partial_results.json`: every finished run with the settings it ran with, rewritten atomically."""

    SECTIONS = ("plan", "pretraining", "probes", "sweeps", "finetune")

    def __init__(self, args: StudyArguments):
        self.path = Path(args.output_dir) / "partial_results.json"
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        for section in self.SECTIONS:
            self.data.setdefault(section, {})
        self.elapsed_before = self.data.get("elapsed_s", 0.0)
        self.start = time.time()
        # put() runs in the main thread, the clock's save() in its own
        self._lock = threading.Lock()

    def get(self, section: str, key: str, settings: dict):
        """The saved record of `key`, or `None` when there is none or it ran with other settings."""
        record = self.data[section].get(key)
        return record if record is not None and record.get("settings") == settings else None

    def put(self, section: str, key: str, settings: dict, record: dict) -> None:
        with self._lock:
            self.data[section][key] = {**record, "settings": settings}
        self.save()

    def elapsed_s(self) -> float:
        """Wall clock of the study so far, the parts before a stop included."""
        return self.elapsed_before + time.time() - self.start

    def save(self) -> None:
        with self._lock:
            self.data["elapsed_s"] = self.elapsed_s()
            atomic_write_text(self.path, json.dumps(self.data, indent=1))

    @contextmanager
    def clock(self, every_s: float = 60.0):
        """
        Saves the elapsed time every `every_s` seconds while the block runs: a study stopped mid-run (killed, out of
        time) and then resumed reports the wall clock of all its parts, not only up to the last run it had finished.
        """
        stop = threading.Event()

        def tick():
            while not stop.wait(every_s):
                self.save()

        thread = threading.Thread(target=tick, name="study-clock", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()


def compute_plan(args, partial: PartialResults, data: dict) -> dict:
    """Per modality and arm: FLOPs of one step, steps, samples per step and total FLOPs (the data2vec 1.0 budget)."""
    plan = {}
    for modality in args.modality_list:
        settings = _key(args, modality)
        saved = partial.get("plan", modality, settings)
        wanted = ("data2vec",) + tuple(a for a in args.arms_of(modality) if a not in ("data2vec", "random"))
        if saved is None or not set(wanted) <= set(saved["arms"]):  # new settings, or an arm added since
            arms = {}
            for arm in wanted:
                arms[arm] = {"flops_per_step": step_flops(args, modality, arm, data)}
            budget = arms["data2vec"]["flops_per_step"] * getattr(args, f"{modality}_steps")
            for arm, entry in arms.items():
                entry["steps"] = max(1, round(budget / entry["flops_per_step"]))
                entry["batch_size"] = batch_size(args, modality, arm)
                entry["total_flops"] = entry["steps"] * entry["flops_per_step"]
                entry["class"] = PRETRAINING_CLASSES[arm]
            partial.put("plan", modality, settings, {"budget_flops": budget, "arms": arms})
            saved = partial.get("plan", modality, settings)
        plan[modality] = {**saved, "arms": {a: e for a, e in saved["arms"].items() if a in args.arms_of(modality)}}
    return plan


def _pretraining_jobs(args, partial, plan, data):
    jobs = []
    for modality in args.modality_list:
        for arm, entry in plan[modality]["arms"].items():
            for seed in args.seed_list:
                key = f"{modality}|{arm}|{seed}"
                if partial.get("pretraining", key, _key(args, modality)) is None:
                    out = str(Path(args.output_dir) / "pretrain" / modality / f"{arm}-seed{seed}")
                    resume_key = json.dumps([key, entry["steps"], _key(args, modality)], sort_keys=True)
                    kwargs = dict(
                        args=args, modality=modality, arm=arm, seed=seed, steps=entry["steps"], data=data,
                        output_dir=out, resume_key=resume_key,
                    )  # fmt: skip
                    jobs.append((key, "study_arms:pretrain_arm", kwargs))
    # the longest first, so that the workers finish together
    return sorted(jobs, key=lambda job: -plan[job[2]["modality"]]["arms"][job[2]["arm"]]["total_flops"])


def checkpoints_along(args, partial, modality: str, arm: str, seed: int, data: dict) -> dict[int, str]:
    """`{step: backbone folder}` of a pretrained arm's run, or `{0: folder}` of the random arm's backbone."""
    if arm == "random":
        tokenizer = text_tokenizer(modality, data)
        folder = Path(args.output_dir) / "random" / modality / f"seed{seed}"
        return {0: random_backbone(args, modality, seed, folder, tokenizer)}
    record = partial.get("pretraining", f"{modality}|{arm}|{seed}", _key(args, modality))
    if record is None:
        raise ValueError(
            f"{args.output_dir} holds no finished {modality} {arm} pretraining run of seed {seed} with these "
            "settings; run run_study.py with the same flags first."
        )
    return {int(step): path for step, path in record["snapshots"].items()}


def saved_probes(args, partial, modality: str, arm: str, seed: int, step: int) -> dict | None:
    """The saved probe record (`{"scores": ...}`) of one backbone of a run, or `None` when not probed yet."""
    return partial.get("probes", f"{modality}|{arm}|{seed}|{step}", _key(args, modality, PROBE_FIELDS))


def _probe_jobs(args, partial, data, modality: str, arm: str, seed: int):
    """The probe jobs still to run on the backbones of one run (`checkpoints_along`)."""
    jobs = []
    for step, folder in checkpoints_along(args, partial, modality, arm, seed, data).items():
        if saved_probes(args, partial, modality, arm, seed, step) is None:
            kwargs = dict(args=args, modality=modality, checkpoint=folder, seed=seed, data=data)
            jobs.append((f"{modality}|{arm}|{seed}|{step}", "study_probes:probe_checkpoint", kwargs))
    return jobs


def final_checkpoint(args, partial, modality: str, arm: str, seed: int, data: dict) -> str:
    along = checkpoints_along(args, partial, modality, arm, seed, data)
    return along[max(along)]


def _finetune_jobs(args, partial, data, sweep: bool):
    """The learning-rate sweep (`sweep=True`: first seed, held-out training data) or the final runs (every seed)."""
    jobs = []
    for task_name in args.finetune_task_list:
        modality = MODALITY_OF_TASK[task_name]
        if modality not in args.modality_list:
            continue
        cargs, task = comparison_arguments(args, modality), TASKS[task_name]
        task_arguments = task_data(cargs, task)
        settings = _key(args, modality, FINETUNE_FIELDS + (f"{modality}_learning_rates",))
        for arm in args.arms_of(modality):
            if sweep:
                runs = [(rate, args.seed_list[0]) for rate in args.learning_rates(modality)]
            else:
                runs = [(_chosen_rate(args, partial, task_name, arm, settings), seed) for seed in args.seed_list]
            for rate, seed in runs:
                key = f"{task_name}|{arm}|{rate}" if sweep else f"{task_name}|{arm}|{seed}"
                if partial.get("sweeps" if sweep else "finetune", key, settings) is not None:
                    continue
                name = f"sweep-lr{rate}" if sweep else f"seed{seed}"
                kwargs = dict(
                    args=cargs, checkpoint=final_checkpoint(args, partial, modality, arm, seed, data), task=task,
                    data=task_arguments, rate=rate, seed=seed, model_selection=sweep,
                    output_dir=str(Path(args.output_dir) / "finetune" / task_name / arm / name),
                )  # fmt: skip
                jobs.append(((key, settings), "comparison:run_finetuning", kwargs))
    return jobs


def _chosen_rate(args, partial, task_name: str, arm: str, settings: dict) -> float:
    modality = MODALITY_OF_TASK[task_name]
    scores = {
        rate: partial.get("sweeps", f"{task_name}|{arm}|{rate}", settings)["scores"]["score"]
        for rate in args.learning_rates(modality)
    }
    return max(scores, key=scores.get)


def _dry_run(args: StudyArguments, data: dict) -> dict:
    """Every arm built at the mode's size; 2 pretraining steps each."""
    results = {}
    for modality in args.modality_list:
        for arm in args.arms_of(modality):
            if arm == "random":
                continue
            out = str(Path(args.output_dir) / "dry_run" / modality / arm)
            record = pretrain_arm(args, modality, arm, args.seed_list[0], 2, data, out)
            results[f"{modality}|{arm}"] = record
            logger.warning(f"dry run {modality} {arm} ({record['class']}): losses {record['loss_curve']}")
    return results


def run_study(args: StudyArguments, command: str | None = None) -> dict:
    """Runs steps 1-5 of the module docstring and returns the raw results (also `docs_dir/study_results.json`)."""
    check_study_inputs(args)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    data = prepare_data(args)
    if args.dry_run:
        return {"dry_run": _dry_run(args, data)}
    partial = PartialResults(args)
    if args.plan_only:  # kept in partial_results.json: the run of these settings starts from it
        return {"plan": compute_plan(args, partial, data)}
    if "corpus_info" in data:
        partial.data["corpus"] = data["corpus_info"]
    with partial.clock():
        return _run_steps(args, partial, data, command)


def _run_steps(args: StudyArguments, partial: PartialResults, data: dict, command: str | None) -> dict:
    """Steps 1-5 of the module docstring, their finished runs saved in `partial`."""

    def saver(section):
        def done(key, record):
            key, settings = key if isinstance(key, tuple) else (key, None)
            if settings is None:
                modality = key.split("|")[0]
                settings = _key(args, modality, PROBE_FIELDS if section == "probes" else ())
            partial.put(section, key, settings, record)
            logger.warning(f"    {section} {key}: {record.get('scores', record.get('final_loss'))}")

        return done

    # 1-3. compute plan, pretraining, and the probes along each run, queued as soon as that run is done
    plan = compute_plan(args, partial, data)
    jobs = _pretraining_jobs(args, partial, plan, data)
    training = {key for key, _, _ in jobs}
    for modality in args.modality_list:  # the runs already trained (and the random arms) are probed from the start
        for arm in args.arms_of(modality):
            for seed in args.seed_list:
                if f"{modality}|{arm}|{seed}" not in training:
                    jobs += _probe_jobs(args, partial, data, modality, arm, seed)
    logger.warning(f"*** Pretraining: {len(training)} runs, each then probed, with {args.workers} worker(s) ***")
    save_pretraining, save_probes = saver("pretraining"), saver("probes")

    def pretrained_then_probes(key, record):
        if key not in training:
            return save_probes(key, record)
        save_pretraining(key, record)
        modality, arm, seed = key.split("|")
        return _probe_jobs(args, partial, data, modality, arm, int(seed))

    run_jobs(jobs, args.workers, args.torch_threads, pretrained_then_probes)
    # 4. fine-tuning: the learning-rate sweep, then the final runs
    for sweep in (True, False):
        jobs = _finetune_jobs(args, partial, data, sweep)
        logger.warning(f"*** Fine-tuning ({'learning-rate sweep' if sweep else 'final runs'}): {len(jobs)} runs ***")
        run_jobs(jobs, args.workers, args.torch_threads, saver("sweeps" if sweep else "finetune"))
    # 5. results, report, model cards
    results = collect_results(args, partial, plan, data, command)
    write_study_report(results, args.docs_dir)
    write_study_model_cards(results, args.model_cards_dir)
    if args.push_to_hub:
        from study_model_cards import push_study_models

        results["pushed"] = push_study_models(results, args.hub_org, token=args.hub_token)
    return results


def chance_losses(args, data: dict) -> dict:
    """
    The loss of a baseline that ignores its input, to tell "not started learning" from "learning slowly": the MLM's
    is the entropy of the corpus's token frequencies, wav2vec 2.0's contrastive loss ln(1 + negatives).
    """
    losses = {}
    if "text" in args.modality_list and "mlm" in args.arm_list:
        tokenizer = text_tokenizer("text", data)
        lines = [line for line in Path(data["corpus"]).read_text(encoding="utf-8").splitlines() if line]
        encoded = tokenizer(lines, add_special_tokens=False, verbose=False)["input_ids"]
        ids = np.concatenate([np.asarray(i) for i in encoded if i])
        frequencies = np.bincount(ids) / len(ids)
        frequencies = frequencies[frequencies > 0]
        entropy = float(-(frequencies * np.log(frequencies)).sum())
        losses["text"] = {
            "mlm": [entropy, "the entropy of the corpus's token frequencies (a prediction without context)"]
        }
    if "audio" in args.modality_list and "wav2vec2" in args.arm_list:
        value = float(np.log(1 + WAV2VEC2_NEGATIVES))
        losses["audio"] = {
            "wav2vec2": [value, f"ln(1 + {WAV2VEC2_NEGATIVES}), the contrastive loss of a random guess"]
        }
    return losses


def collect_results(args, partial: PartialResults, plan: dict, data: dict, command: str | None) -> dict:
    """The raw numbers of the runs this invocation asked for, in the shape the report reads."""
    results = {
        "command": command or "python examples/study/run_study.py",
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_time_s": partial.elapsed_s(),
        "environment": environment_info(),
        "config": {**args.to_dict(), "seed_list": args.seed_list},
        "corpus": partial.data.get("corpus"),
        "modalities": {},
    }
    for modality in args.modality_list:
        arms_plan = {
            arm: {**record, "teacher": teacher_schedule(args, modality, arm, record["steps"], data)}
            if arm in DATA2VEC_ARMS
            else record
            for arm, record in plan[modality]["arms"].items()
        }
        entry = {"plan": {**plan[modality], "arms": arms_plan}, "arms": {}}
        pretraining_key, probe_key = _key(args, modality), _key(args, modality, PROBE_FIELDS)
        for arm in args.arms_of(modality):
            arm_entry = {"seeds": {}}
            for seed in args.seed_list:
                seed_entry = {"probes": {}}
                if arm != "random":
                    record = partial.get("pretraining", f"{modality}|{arm}|{seed}", pretraining_key)
                    seed_entry["pretraining"] = {k: v for k, v in record.items() if k != "settings"}
                for step, folder in checkpoints_along(args, partial, modality, arm, seed, data).items():
                    probe = partial.get("probes", f"{modality}|{arm}|{seed}|{step}", probe_key)
                    seed_entry["probes"][str(step)] = {"checkpoint": folder, **probe["scores"]}
                arm_entry["seeds"][str(seed)] = seed_entry
            entry["arms"][arm] = arm_entry
        results["modalities"][modality] = entry
    results["chance_losses"] = chance_losses(args, data)
    results["longer_budgets"] = []
    for path in args.longer_budget_result_list:
        longer = json.loads(Path(path).read_text(encoding="utf-8"))
        results["longer_budgets"].append(
            {
                "report": str(Path(path).with_name("study.md")),
                "command": longer["command"],
                "modalities": longer["modalities"],
            }
        )
    results["finetune"] = {}
    for task_name in args.finetune_task_list:
        modality = MODALITY_OF_TASK[task_name]
        if modality not in args.modality_list:
            continue
        settings = _key(args, modality, FINETUNE_FIELDS + (f"{modality}_learning_rates",))
        task_entry = {}
        for arm in args.arms_of(modality):
            sweep = {
                str(rate): partial.get("sweeps", f"{task_name}|{arm}|{rate}", settings)["scores"]
                for rate in args.learning_rates(modality)
            }
            runs = {
                str(seed): partial.get("finetune", f"{task_name}|{arm}|{seed}", settings) for seed in args.seed_list
            }
            task_entry[arm] = {
                "sweep": sweep,
                "chosen_learning_rate": _chosen_rate(args, partial, task_name, arm, settings),
                "seeds": {seed: {k: v for k, v in run.items() if k != "settings"} for seed, run in runs.items()},
            }
        results["finetune"][task_name] = task_entry
    return results


__all__ = ["PartialResults", "StudyArguments", "collect_results", "compute_plan", "run_study"]
