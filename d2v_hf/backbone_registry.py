"""
The backbone registry: what data2vec needs to know about each Transformers encoder family, in one table. Every
other module asks this table (through `backbones.py`) instead of testing model types, so adding a family is adding
one entry here; `docs/backbones.md` shows how and which tests then cover it.
"""

from dataclasses import dataclass


# How the student's input is masked, per modality: the argument of the backbone's forward that carries the mask.
STUDENT_MASKING = {
    "text": "input_ids",  # masked tokens replaced by the tokenizer's mask token id before the embeddings
    "audio": "mask_time_indices",  # masked feature frames replaced by the learned `masked_spec_embed`
    "vision": "bool_masked_pos",  # masked patch embeddings replaced by the learned `embeddings.mask_token`
}
TEXT_SHARED = ("embeddings.",)
AUDIO_SHARED = ("feature_extractor.", "feature_projection.", "encoder.pos_conv_embed.", "masked_spec_embed")


@dataclass(frozen=True)
class BackboneFamily:
    """
    One Transformers encoder family. Module paths are attribute paths (`"encoder.layer"`), relative to the backbone
    for `layers`, to one layer for the others.

    Args:
        model_type: the config's `model_type`.
        modality: `"text"`, `"audio"` or `"vision"`; decides the input name and the masking ([`STUDENT_MASKING`]).
        model_class: the `transformers` class of the student and teacher, which `export_student` writes and the
            family's `AutoModel` and task heads load.
        layers: the list of encoder layers (the "block" target of layer i is the output of `layers[i]`).
        ffn_output: the module whose output is the feed-forward output before the last residual connection, the
            post-LN and any layer scale (the "ffn" target, fairseq's `fc_results` / `lr`).
        attention_output, ffn_projection: the two linear layers that write into the residual stream (the BEiT
            initialisation of data2vec 1.0 images scales them down with depth).
        shared_params: parameter-name prefixes that the released recipes let the teacher share with the student
            (`teacher_shared_params`): embeddings for text; CNN, projection, positional convolution and mask
            embedding for speech.
        has_pooler: the constructor takes `add_pooling_layer` (pretraining builds no pooler; the export has one).
        mask_token_argument: the learned mask token is a constructor argument (`ViTModel(use_mask_token=True)`),
            not a config field (`BeitConfig.use_mask_token`), so an export drops it for `AutoModel` to load.
        prefix_tokens: vision: tokens before the patches (CLS; DeiT also a distillation token).
        text_position_offset: text: learned positions start after the padding index (RoBERTa), shortening the
            longest sequence by `pad_token_id + 1`.
        layer_takes_resolution: vision: each layer needs the image size (BEiT's relative position bias).
        data2vec2_refusal: why the data2vec 2.0 sparse student cannot run on this family (`None`: it can).
        token_type_embeddings: text: the segment embeddings (one learned vector added to every token of a
            pretraining row), which fairseq's data2vec has no counterpart for (`zero_token_type_embeddings`).
    """

    model_type: str
    modality: str
    model_class: str
    layers: str
    ffn_output: str
    attention_output: str
    ffn_projection: str
    shared_params: tuple[str, ...] = ()
    has_pooler: bool = True
    mask_token_argument: bool = False
    prefix_tokens: int = 0
    text_position_offset: bool = False
    layer_takes_resolution: bool = False
    data2vec2_refusal: str | None = None
    token_type_embeddings: str | None = None

    @property
    def student_masking(self) -> str:
        return STUDENT_MASKING[self.modality]


def _text(model_type: str, model_class: str, position_offset: bool = True) -> BackboneFamily:
    return BackboneFamily(
        model_type,
        "text",
        model_class,
        layers="encoder.layer",
        ffn_output="output.dense",  # before dropout, the residual connection and the post-LN
        attention_output="attention.output.dense",
        ffn_projection="output.dense",
        shared_params=TEXT_SHARED,
        text_position_offset=position_offset,
        token_type_embeddings="embeddings.token_type_embeddings",
    )


def _audio(model_type: str, model_class: str, data2vec2_refusal: str | None = None) -> BackboneFamily:
    return BackboneFamily(
        model_type,
        "audio",
        model_class,
        layers="encoder.layers",
        ffn_output="feed_forward",  # its trailing dropout is off in the eval-mode teacher
        attention_output="attention.out_proj",
        ffn_projection="feed_forward.output_dense",
        shared_params=AUDIO_SHARED,
        has_pooler=False,
        data2vec2_refusal=data2vec2_refusal,
    )


def _vit(model_type: str, model_class: str, prefix_tokens: int = 1, beit: bool = False) -> BackboneFamily:
    return BackboneFamily(
        model_type,
        "vision",
        model_class,
        layers="layers",
        ffn_output="mlp",  # before dropout, layer scale (BEiT's lambda_2) and the residual connection
        attention_output="attention.o_proj",
        ffn_projection="mlp.fc2",
        mask_token_argument=not beit,
        prefix_tokens=prefix_tokens,
        layer_takes_resolution=beit,
    )


BACKBONES: dict[str, BackboneFamily] = {
    family.model_type: family
    for family in (
        _text("data2vec-text", "Data2VecTextModel"),
        _text("roberta", "RobertaModel"),
        _text("xlm-roberta", "XLMRobertaModel"),
        _text("bert", "BertModel", position_offset=False),
        _audio("data2vec-audio", "Data2VecAudioModel"),
        _audio("wav2vec2", "Wav2Vec2Model"),
        _audio("hubert", "HubertModel"),
        _audio(
            "wavlm",
            "WavLMModel",
            data2vec2_refusal="WavLM's gated relative position bias is computed over the frames its layers see, "
            "which would be the visible frames only, not their true distances",
        ),
        BackboneFamily(
            "data2vec-vision",
            "vision",
            "Data2VecVisionModel",
            layers="encoder.layer",
            ffn_output="output",  # before layer scale lambda_2 (its dropout is off in the eval-mode teacher)
            attention_output="attention.output.dense",
            ffn_projection="output.dense",
            prefix_tokens=1,
            layer_takes_resolution=True,
        ),
        _vit("beit", "BeitModel", beit=True),
        _vit("vit", "ViTModel"),
        _vit("deit", "DeiTModel", prefix_tokens=2),
    )
}


def get_family(model_type: str | None) -> BackboneFamily:
    """The registry entry of `model_type`, or a `ValueError` listing the supported families and how to add one."""
    if model_type in BACKBONES:
        return BACKBONES[model_type]
    raise ValueError(
        f"data2vec pretraining has no backbone entry for model_type {model_type!r}. Supported: "
        f"{', '.join(sorted(BACKBONES))}. To add a family, add a BackboneFamily to d2v_hf/backbone_registry.py "
        "(its modality, model class, the layer list and, inside a layer, the feed-forward output and the two "
        "residual projections, the parameters the teacher may share, the pooler and mask-token arguments); "
        "docs/backbones.md walks through one."
    )


def modality_of(model_type: str | None) -> str | None:
    """The modality of a registered `model_type`, else `None`."""
    family = BACKBONES.get(model_type)
    return None if family is None else family.modality


__all__ = ["BACKBONES", "STUDENT_MASKING", "BackboneFamily", "get_family", "modality_of"]
