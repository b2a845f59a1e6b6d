"""
Frozen-feature probes, shared by the study and the checkpoint comparison: pooled last-layer features of a frozen
backbone (text, images, speech) and linear models fitted on them (scikit-learn: logistic regression for classes,
ridge regression for scores), with the regularisation chosen on a held-out part of the probe's training data.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from d2v_hf.finetuning import AudioClassificationCollator, ImageClassificationCollator


# the regularisation grid: logistic regression C (inverse strength) and ridge alpha (strength)
PROBE_C = (0.01, 0.1, 1.0, 10.0)
PROBE_ALPHA = (0.1, 1.0, 10.0, 100.0)
# the token-identity probe names a position's token among the most frequent ones: 100 cover about half the tokens of
# SST-2 and keep its 5 fits (regularisation grid, then refit) to seconds on a tiny backbone's states
TOKEN_IDENTITY_CLASSES = 100


def _batches(dataset, batch_size: int):
    for start in range(0, len(dataset), batch_size):
        yield [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]


def pool(hidden: torch.Tensor, pooling: str, mask: torch.Tensor | None = None, prefix_tokens: int = 0):
    """
    One vector per example from `(batch, seq, hidden)` states: `"cls"` the first token, `"mean"` the mean over the
    real positions (`mask`, True where real) after the first `prefix_tokens` (an image's CLS / distillation tokens).
    """
    if pooling == "cls":
        return hidden[:, 0]
    if pooling != "mean":
        raise ValueError(f"pooling={pooling!r}; expected 'cls' or 'mean'.")
    hidden = hidden[:, prefix_tokens:]
    if mask is None:
        return hidden.mean(1)
    weights = mask[:, prefix_tokens:].unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


@torch.no_grad()
def extract_features(
    checkpoint: str,
    modality: str,
    dataset,
    batch_size: int = 64,
    max_seconds: float = 1.0,
    pooling: str = "mean",
    prefix_tokens: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """
    Pooled last-layer features of the frozen backbone for a labelled image or audio dataset: images mean-pool the
    patch tokens (the first `prefix_tokens` left out) or take the CLS token; audio mean-pools the (unpadded) frames
    of each clip's first `max_seconds`. Returns `(features, labels)`.
    """
    model = AutoModel.from_pretrained(checkpoint).eval()
    if modality == "vision":
        collate = ImageClassificationCollator()
    else:
        collate = AudioClassificationCollator(max_length=int(max_seconds * 16000), train=False)
    features, labels = [], []
    for examples in _batches(dataset, batch_size):
        batch = collate(examples)
        labels.append(batch.pop("labels").numpy())
        if modality == "vision":
            hidden = model(pixel_values=batch["pixel_values"]).last_hidden_state
            features.append(pool(hidden, pooling, prefix_tokens=prefix_tokens).numpy())
        else:
            hidden = model(**batch).last_hidden_state
            mask = model._get_feature_vector_attention_mask(hidden.shape[1], batch["attention_mask"]).bool()
            features.append(pool(hidden, pooling, mask).numpy())
    return np.concatenate(features), np.concatenate(labels)


def _text_forward_passes(checkpoint, first, second, max_length, batch_size, wanted):
    """`(output, batch, real)` of each batch of sentences (or pairs), with every hidden state when `wanted` names a
    layer (`None`: the last layer only); checks each wanted layer exists."""
    model, tokenizer = AutoModel.from_pretrained(checkpoint).eval(), AutoTokenizer.from_pretrained(checkpoint)
    for index in wanted:
        if index is not None and not 0 <= index <= model.config.num_hidden_layers:
            raise ValueError(
                f"layer={index}; {checkpoint} has layers 0 (embeddings) to {model.config.num_hidden_layers}."
            )
    hidden_states = any(index is not None for index in wanted)
    for start in range(0, len(first), batch_size):
        pair = (first[start : start + batch_size],)
        if second is not None:
            pair += (second[start : start + batch_size],)
        batch = tokenizer(*pair, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        yield model(**batch, output_hidden_states=hidden_states), batch, batch["attention_mask"].bool()


def _layer_states(output, index: int | None) -> torch.Tensor:
    return output.last_hidden_state if index is None else output.hidden_states[index]


@torch.no_grad()
def text_features(
    checkpoint: str,
    first: list[str],
    second: list[str] | None = None,
    max_length: int = 128,
    batch_size: int = 64,
    pooling: str = "cls",
    layer: int | None = None,
    layers: list[int] | None = None,
) -> np.ndarray | list[np.ndarray]:
    """
    Frozen features of sentences (or sentence pairs, encoded together as the fine-tuning scripts do) with the
    checkpoint's own tokenizer: the first token's last-layer state (`pooling="cls"`: `<s>` / `[CLS]`, which the text
    classification heads of BERT, RoBERTa, XLM-R and data2vec read) or the mean over the real tokens (`"mean"`).
    `layer` reads another layer's states instead of the last: 0 the embeddings, `i` the output of layer `i`.
    `layers` returns one array per listed layer, all from the same forward passes.
    """
    wanted = layers if layers is not None else [layer]
    features = [[] for _ in wanted]
    for output, _, real in _text_forward_passes(checkpoint, first, second, max_length, batch_size, wanted):
        for found, index in zip(features, wanted):
            found.append(pool(_layer_states(output, index), pooling, real).numpy())
    arrays = [np.concatenate(found) for found in features]
    return arrays if layers is not None else arrays[0]


@torch.no_grad()
def token_states(
    checkpoint: str, texts: list[str], layers: list[int | None], max_length: int = 128, batch_size: int = 64
) -> tuple[list[np.ndarray], np.ndarray]:
    """
    Every real token's state at each of `layers` (0 the embeddings, `i` the output of layer `i`, `None` the last),
    one `(tokens, hidden)` array per layer, and the tokens' ids `(tokens,)`, in the same order.
    """
    states, ids = [[] for _ in layers], []
    for output, batch, real in _text_forward_passes(checkpoint, texts, None, max_length, batch_size, layers):
        ids.append(batch["input_ids"][real].numpy())
        for found, index in zip(states, layers):
            found.append(_layer_states(output, index)[real].numpy())
    return [np.concatenate(found) for found in states], np.concatenate(ids)


def token_identity(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    num_tokens: int = TOKEN_IDENTITY_CLASSES,
    seed: int = 0,
) -> dict:
    """
    How much of the input token a layer keeps: a linear probe (`fit_probe`) that reads a position's state and names
    its token, among the `num_tokens` most frequent token ids of `train`'s `(states, ids)`; positions holding other
    tokens are left out of both sets. Returns `{"accuracy": %, "chance": %}` on `test`, chance being the share of
    its most frequent token (what always naming it would score).
    """
    common = np.array([token for token, _ in Counter(train[1].tolist()).most_common(num_tokens)])
    kept_train, kept_test = np.isin(train[1], common), np.isin(test[1], common)
    if kept_test.sum() == 0:
        raise ValueError(f"None of the test tokens is among the {num_tokens} most frequent training tokens.")
    train, test = (train[0][kept_train], train[1][kept_train]), (test[0][kept_test], test[1][kept_test])
    result = fit_probe(train, test, lambda predicted, ids: 100 * float(np.mean(predicted == ids)), seed=seed)
    return {"accuracy": result["score"], "chance": 100 * Counter(test[1].tolist()).most_common(1)[0][1] / len(test[1])}


def knn_accuracy(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], k: int = 20) -> float:
    """
    Accuracy of a k-nearest-neighbour classifier on L2-normalised features (cosine similarity, majority of the `k`
    nearest training examples), the training-free probe of DINO and data2vec 2.0's image evaluations.
    """
    from sklearn.neighbors import KNeighborsClassifier

    classifier = KNeighborsClassifier(n_neighbors=min(k, len(train[1])), metric="cosine").fit(*train)
    return float((classifier.predict(test[0]) == test[1]).mean())


def fit_probe(train, test, score, regression: bool = False, held_out: float = 0.2, seed: int = 0) -> dict:
    """
    A linear probe with its regularisation chosen on a held-out part of the training features.

    Args:
        train, test (`tuple[np.ndarray, np.ndarray]`): `(features, targets)`.
        score (`Callable[[np.ndarray, np.ndarray], float]`): `score(predictions, targets)`, higher is better.
        regression (`bool`): ridge regression (e.g. STS-B) instead of logistic regression.
        held_out (`float`): share of `train` used to choose the regularisation (then refitted on all of `train`).
        seed (`int`): seed of that split.

    Returns:
        `{"score": float, "regularisation": float, "held_out_score": float}`.
    """
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler

    features, targets = train
    order = np.random.default_rng(seed).permutation(len(features))
    cut = max(1, int(round(held_out * len(features))))
    fit_rows, check_rows = order[cut:], order[:cut]

    def model(value):
        return Ridge(alpha=value) if regression else LogisticRegression(C=value, max_iter=2000)

    def fitted(value, rows):
        scaler = StandardScaler().fit(features[rows])
        return scaler, model(value).fit(scaler.transform(features[rows]), targets[rows])

    choices = []
    for value in PROBE_ALPHA if regression else PROBE_C:
        scaler, estimator = fitted(value, fit_rows)
        choices.append((score(estimator.predict(scaler.transform(features[check_rows])), targets[check_rows]), value))
    best_score, best = max(choices, key=lambda choice: (choice[0], -choice[1] if regression else choice[1]))
    scaler, estimator = fitted(best, np.arange(len(features)))
    return {
        "score": float(score(estimator.predict(scaler.transform(test[0])), test[1])),
        "regularisation": float(best),
        "held_out_score": float(best_score),
    }


__all__ = [
    "extract_features",
    "fit_probe",
    "knn_accuracy",
    "pool",
    "TOKEN_IDENTITY_CLASSES",
    "text_features",
    "token_identity",
    "token_states",
]
