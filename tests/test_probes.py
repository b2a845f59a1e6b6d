"""The frozen-feature probes the study and the checkpoint comparison share (examples/study/probes.py)."""

import numpy as np
import pytest

from .fixtures import build_tokenizer, load_example, save_tiny_backbone  # noqa: F401  (puts examples/study on sys.path)
from probes import text_features, token_identity, token_states  # noqa: E402


def test_text_features_of_several_layers_come_from_one_pass_and_match_one_layer_at_a_time(tmp_path):
    texts = ["a fine film", "a dull and tedious one", "not bad at all", "the plot is thin"] * 3
    checkpoint = save_tiny_backbone(tmp_path / "backbone", build_tokenizer(texts, vocab_size=300))
    kwargs = dict(max_length=16, batch_size=5, pooling="mean")
    together = text_features(str(checkpoint), texts, layers=[0, 2, None], **kwargs)
    for layer, features in zip([0, 2, None], together):
        np.testing.assert_allclose(features, text_features(str(checkpoint), texts, layer=layer, **kwargs), atol=1e-6)
    assert not np.allclose(together[0], together[2])  # the embeddings are not the last layer
    np.testing.assert_allclose(together[1], together[2], atol=1e-6)  # layer 2 of 2 is the last
    with pytest.raises(ValueError, match="layer=3"):
        text_features(str(checkpoint), texts, layers=[3], **kwargs)


def test_token_states_are_the_tokens_the_sentence_features_average(tmp_path):
    texts = ["a fine film", "a dull and tedious one", "not bad at all"]
    tokenizer = build_tokenizer(texts * 4, vocab_size=300)
    checkpoint = str(save_tiny_backbone(tmp_path / "backbone", tokenizer))
    (embeddings, last), ids = token_states(checkpoint, texts, layers=[0, None], max_length=16, batch_size=2)
    expected = [token for text in texts for token in tokenizer(text)["input_ids"]]  # every real token, no padding
    assert ids.tolist() == expected and embeddings.shape == last.shape == (len(expected), 32)
    start = 0
    for text in texts:  # each sentence's token states average to its mean-pooled feature
        length = len(tokenizer(text)["input_ids"])
        pooled = text_features(checkpoint, [text], max_length=16, pooling="mean")[0]
        np.testing.assert_allclose(last[start : start + length].mean(0), pooled, atol=1e-5)
        start += length


def test_token_identity_reads_the_token_from_states_that_hold_it_and_not_from_noise():
    rng = np.random.default_rng(0)
    ids = rng.choice(30, size=3000, p=np.arange(30, 0, -1) / np.arange(30, 0, -1).sum())
    table = rng.normal(size=(30, 16))
    holding = table[ids] + 0.1 * rng.normal(size=(3000, 16))  # each state is its token's vector, a little noise
    noise = rng.normal(size=(3000, 16))  # states that carry nothing of the token
    train, test = slice(0, 2000), slice(2000, None)
    held = token_identity((holding[train], ids[train]), (holding[test], ids[test]), num_tokens=20)
    lost = token_identity((noise[train], ids[train]), (noise[test], ids[test]), num_tokens=20)
    assert held["accuracy"] > 99 and held["chance"] == lost["chance"] < 20
    assert lost["accuracy"] < lost["chance"] + 5  # no better than always naming the most frequent token
    with pytest.raises(ValueError, match="most frequent training tokens"):
        token_identity((holding[:10], np.zeros(10, dtype=int)), (holding[:10], np.ones(10, dtype=int)), num_tokens=1)
