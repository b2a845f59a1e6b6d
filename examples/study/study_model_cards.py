"""
The study's model cards, from the same raw results as its report: [`write_study_model_cards`] writes one card per
final model (probe and fine-tuning scores, training compute, a model index for the Hub), [`push_study_models`]
uploads the final models with their cards.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import EvalResult

from d2v_hf.modelcard import build_model_card, save_model_card

from comparison_tasks import TASKS
from study_config import ARM_TITLES, BACKBONE_TYPES, backbone_size
from study_report import final_probe_stats, finetune_stats, measured_probes
from study_utils import fmt


# the Hub task of a fine-tuning task's model-index entry
CARD_TASK_TYPES = {
    "glue": "text-classification",
    "xquad": "question-answering",
    "squad": "question-answering",
    "image": "image-classification",
    "audio": "audio-classification",
}


def study_model_name(modality: str, arm: str, model_size: str) -> str:
    return f"{arm.replace('_', '-')}-{modality}-{model_size}-study"


def final_checkpoints(results: dict) -> dict[tuple[str, str], str]:
    """`{(modality, arm): folder}` of the first seed's last backbone."""
    found = {}
    for modality, entry in results["modalities"].items():
        for arm, arm_entry in entry["arms"].items():
            seed = arm_entry["seeds"][str(results["config"]["seed_list"][0])]
            found[(modality, arm)] = seed["probes"][str(max(map(int, seed["probes"])))]["checkpoint"]
    return found


def build_study_model_card(results: dict, modality: str, arm: str):
    config, entry = results["config"], results["modalities"][modality]
    plan = entry["plan"]["arms"].get(arm)
    details = {
        "backbone": f"`{BACKBONE_TYPES[modality]}`, {backbone_size(config)} size (the same for every arm)",
        "objective": ARM_TITLES[arm] + (f" (`{plan['class']}`)" if plan else ": none, a random initialisation"),
        "training compute": f"{plan['steps']} steps x {plan['batch_size']} samples, {plan['total_flops'] / 1e12:.3g} "
        "TFLOPs (FlopCounterMode)"
        if plan
        else None,
        "seed": config["seed_list"][0],
    }
    lines = ["## Probe results (mean ± std over seeds, final checkpoints)", "", "| probe | score |", "|---|---:|"]
    for probe, title in measured_probes(results, modality):
        lines.append(f"| {title} | {fmt(final_probe_stats(results, modality, arm, probe))} |")
    index = []
    for task in results["finetune"]:
        if TASKS[task].modality == modality:
            values = finetune_stats(results, task, arm)
            lines.append(f"| {TASKS[task].title}, fine-tuned ({TASKS[task].metric}) | {fmt(values)} |")
            index.append(
                EvalResult(
                    task_type=CARD_TASK_TYPES[TASKS[task].kind],
                    dataset_type=task,
                    dataset_name=TASKS[task].title,
                    metric_type=TASKS[task].metric.replace(" ", "_").lower(),
                    metric_name=f"{TASKS[task].metric} (fine-tuned, mean of {values['n']} seeds)",
                    metric_value=round(values["mean"], 2),
                )
            )
    lines += ["", "Regenerate this card with `python examples/study/run_study.py` (d2v_hf); see docs/study.md there."]
    return build_model_card(
        study_model_name(modality, arm, config["model_size"]),
        description=f"A {backbone_size(config)} {modality} backbone from the d2v_hf study, arm {ARM_TITLES[arm]} "
        f"({config['mode']} mode). It is a study artifact, trained for minutes: use it to reproduce the comparison.",
        training_details=details,
        tags=["data2vec", modality, "study"],
        extra_markdown="\n".join(lines),
        model_index=index or None,
    )


def write_study_model_cards(results: dict, model_cards_dir: str | os.PathLike) -> list[Path]:
    """`model_cards_dir/<name>/README.md` for each final model (also saved next to its weights)."""
    paths = []
    for (modality, arm), checkpoint in final_checkpoints(results).items():
        card = build_study_model_card(results, modality, arm)
        name = study_model_name(modality, arm, results["config"]["model_size"])
        paths.append(save_model_card(card, Path(model_cards_dir) / name))
        if Path(checkpoint).is_dir():
            save_model_card(card, checkpoint)
    return paths


def push_study_models(results: dict, hub_org: str, token: str | None = None, private: bool = False) -> list[str]:
    """Uploads each final model folder (weights, preprocessor, card) to `<hub_org>/<name>`; returns the repo ids."""
    from huggingface_hub import HfApi

    checkpoints = final_checkpoints(results)
    missing = [folder for folder in checkpoints.values() if not Path(folder).is_dir()]
    if missing:  # checked before anything is uploaded
        raise ValueError(f"--push_to_hub: checkpoint folder(s) {missing} are missing; rerun the study first.")
    api, repo_ids = HfApi(token=token), []
    for (modality, arm), folder in checkpoints.items():
        repo_id = f"{hub_org}/{study_model_name(modality, arm, results['config']['model_size'])}"
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="d2v_hf study model")
        repo_ids.append(repo_id)
    return repo_ids


__all__ = [
    "build_study_model_card",
    "final_checkpoints",
    "push_study_models",
    "study_model_name",
    "write_study_model_cards",
]
