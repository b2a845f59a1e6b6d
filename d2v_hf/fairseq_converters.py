"""
The fairseq data2vec models d2v_hf converts, one class each: how to recognise its checkpoints, the
[`Data2VecPretrainingConfig`] its `cfg` gives, and which fairseq tensor becomes which d2v_hf tensor ([`KeyRule`]s;
docs/conversion.md has the tables). Checkpoints of models that cannot be converted are recognised too and refused with
the reason ([`REFUSALS`]). `convert_fairseq.py` applies them.
"""

import ast
from dataclasses import dataclass

from transformers import Data2VecAudioConfig, Data2VecTextConfig

from .configuration_data2vec_pretraining import Data2VecPretrainingConfig
from .fairseq_checkpoint import FairseqCheckpoint, FairseqCheckpointError


@dataclass(frozen=True)
class KeyRule:
    """One fairseq tensor and the d2v_hf tensors it becomes: several `targets` split it along dim 0 (fused qkv)."""

    source: str
    targets: tuple[str, ...]


def _rules(source_prefix: str, target_prefix: str, names: dict[str, str | tuple[str, ...]], params=("weight", "bias")):
    """`KeyRule`s for each `fairseq module -> d2v_hf module(s)` of `names`, for each parameter name in `params`."""
    rules = []
    for source, targets in names.items():
        targets = (targets,) if isinstance(targets, str) else targets
        for param in params:
            rules.append(
                KeyRule(f"{source_prefix}{source}.{param}", tuple(f"{target_prefix}{t}.{param}" for t in targets))
            )
    return rules


def parse_layer_spec(spec: str) -> list[tuple[int, ...]]:
    """
    fairseq's `conv_feature_layers` string (`"[(512, 10, 5)] + [(512, 3, 2)] * 4"`), which fairseq `eval`s: here
    only lists and tuples of integers joined by `+` and `*` are evaluated, so a checkpoint cannot run code.
    """

    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(item) for item in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise FairseqCheckpointError(f"conv_feature_layers={spec!r} is not a list of (dim, kernel, stride) tuples.")

    try:
        layers = value(ast.parse(spec, mode="eval").body)
    except SyntaxError as err:
        raise FairseqCheckpointError(f"conv_feature_layers={spec!r} does not parse: {err}") from err
    if not isinstance(layers, list) or not all(isinstance(layer, tuple) and len(layer) == 3 for layer in layers):
        raise FairseqCheckpointError(f"conv_feature_layers={spec!r} is not a list of (dim, kernel, stride) tuples.")
    return layers


def _require(condition: bool, what: str, checkpoint: FairseqCheckpoint) -> None:
    if not condition:
        raise FairseqCheckpointError(f"{checkpoint.path}: {what}; the Hugging Face backbone cannot hold it.")


# fairseq's data2vec text layers (a post-LN transformer) -> Transformers' BERT-style layer
TEXT_LAYER = {
    "self_attn.q_proj": "attention.self.query",
    "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value",
    "self_attn.out_proj": "attention.output.dense",
    "self_attn_layer_norm": "attention.output.LayerNorm",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
    "final_layer_norm": "output.LayerNorm",
}
# data2vec 2.0's post-LN `AltBlock` (layer_norm_first false) -> the same BERT-style layer
ALT_BLOCK = {
    "attn.qkv": ("attention.self.query", "attention.self.key", "attention.self.value"),
    "attn.proj": "attention.output.dense",
    "norm1": "attention.output.LayerNorm",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
    "norm2": "output.LayerNorm",
}


def text_embedding_rules(prefix: str) -> list[KeyRule]:
    """fairseq's text embeddings (tokens, learned positions with RoBERTa's padding offset, LayerNorm; no segments)."""
    words = {"embed_tokens": "embeddings.word_embeddings", "embed_positions": "embeddings.position_embeddings"}
    return _rules(prefix, "student.", words, ("weight",)) + _rules(
        prefix, "student.", {"layernorm_embedding": "embeddings.LayerNorm"}
    )


# fairseq's wav2vec 2.0-style encoder layer -> Transformers' Data2VecAudioEncoderLayer
AUDIO_LAYER = {
    "self_attn.q_proj": "attention.q_proj",
    "self_attn.k_proj": "attention.k_proj",
    "self_attn.v_proj": "attention.v_proj",
    "self_attn.out_proj": "attention.out_proj",
    "self_attn_layer_norm": "layer_norm",
    "fc1": "feed_forward.intermediate_dense",
    "fc2": "feed_forward.output_dense",
    "final_layer_norm": "final_layer_norm",
}


class FairseqConverter:
    """
    One fairseq data2vec model class. `ema_key` is where the checkpoint keeps the teacher's EMA state (a dict in
    `model`), whose keys are those of the student's module `ema_module` (a prefix of the fairseq keys).
    """

    name: str
    ema_key: str

    def __init__(self, checkpoint: FairseqCheckpoint):
        self.checkpoint = checkpoint

    @staticmethod
    def recognises(checkpoint: FairseqCheckpoint) -> bool:
        raise NotImplementedError

    def pretraining_config(self) -> Data2VecPretrainingConfig:
        raise NotImplementedError

    def student_rules(self, config: Data2VecPretrainingConfig) -> list[KeyRule]:
        """Keys of fairseq's `model` -> keys of `Data2VecForPretraining` (`student.*`, `head.*`)."""
        raise NotImplementedError

    def ema_module(self) -> str:
        """The student module whose keys the EMA dict has (a prefix of the fairseq keys; "" for the whole model)."""
        raise NotImplementedError

    def teacher_rules(self, config) -> list[KeyRule]:
        """Keys of the checkpoint's EMA dict -> `teacher.*`: the student's rules inside `ema_module`, re-rooted."""
        prefix, rules = self.ema_module(), []
        for rule in self.student_rules(config):
            if rule.source.startswith(prefix) and rule.targets[0].startswith("student."):
                targets = tuple("teacher." + target[len("student.") :] for target in rule.targets)
                rules.append(KeyRule(rule.source[len(prefix) :], targets))
        return rules

    @staticmethod
    def ignored(key: str) -> bool:
        """fairseq bookkeeping that holds no weight (`version` tensors)."""
        return key.endswith("version")


class Data2VecText1Converter(FairseqConverter):
    """fairseq `Data2VecTextModel` (`examples/data2vec/models/data2vec_text.py`) -> `Data2VecTextModel` student."""

    name = "data2vec 1.0 text"
    ema_key = "encoder._ema"
    source = "encoder.sentence_encoder."

    @staticmethod
    def recognises(checkpoint):
        return any(key.startswith("encoder.regression_head.") for key in checkpoint.model)

    def pretraining_config(self):
        checkpoint = self.checkpoint
        model, task = checkpoint.model_cfg(), checkpoint.task_cfg()
        transformer = model.get("transformer", {})
        encoder = transformer.get("encoder", {})
        _require(not encoder.get("normalize_before", False), "its encoder is pre-LN (normalize_before)", checkpoint)
        _require(transformer.get("layernorm_embedding", True), "it has no embedding LayerNorm", checkpoint)
        _require(transformer.get("no_scale_embedding", True), "it scales its token embeddings", checkpoint)
        _require(transformer.get("activation_fn", "gelu") == "gelu", "its activation is not gelu", checkpoint)
        _require(not model.get("batch_norm_target_layer"), "its targets are batch-normalised", checkpoint)
        vocab_size, positions = self._embedding_sizes()
        backbone = Data2VecTextConfig(
            vocab_size=vocab_size,
            hidden_size=encoder["embed_dim"],
            num_hidden_layers=encoder["layers"],
            num_attention_heads=encoder["attention_heads"],
            intermediate_size=encoder["ffn_embed_dim"],
            max_position_embeddings=positions,
            type_vocab_size=1,
            layer_norm_eps=1e-5,  # fairseq's LayerNorm
            hidden_dropout_prob=transformer.get("dropout", 0.1),
            attention_probs_dropout_prob=transformer.get("attention_dropout", 0.1),
            pad_token_id=1,  # fairseq's Dictionary: <s>=0, <pad>=1, </s>=2, <unk>=3
            bos_token_id=0,
            eos_token_id=2,
        )
        bert = task.get("leave_unmasked_prob", 0) > 0 or task.get("random_token_prob", 0) > 0
        return Data2VecPretrainingConfig.from_preset(
            "text",
            backbone,
            **_target_fields(model),
            head_layers=model.get("head_layers", 1),
            teacher_shared_params=["embeddings."] if model.get("ema_transformer_layers_only", True) else [],
            text_mask_strategy="bert" if bert else "span",
            mask_prob=task.get("mask_prob", 0.15),
            mask_length=task.get("mask_multiple_length", 1),
            mask_random_token_prob=task.get("random_token_prob", 0.1),
            mask_leave_unmasked_prob=task.get("leave_unmasked_prob", 0.1),
            mask_token_id=vocab_size - 1,  # the masked_lm task adds <mask> as the dictionary's last symbol
            min_target_var=0.0,  # data2vec_text.py has no collapse guard
            min_pred_var=0.0,
        )

    def _embedding_sizes(self):
        checkpoint = self.checkpoint
        tokens = checkpoint.model[f"{self.source}embed_tokens.weight"]
        return tokens.shape[0], checkpoint.model[f"{self.source}embed_positions.weight"].shape[0]

    def student_rules(self, config):
        rules = text_embedding_rules(self.source)
        for i in range(config.backbone_config.num_hidden_layers):
            rules += _rules(f"{self.source}layers.{i}.", f"student.encoder.layer.{i}.", TEXT_LAYER)
        head = {f"encoder.regression_head.{j}": f"layers.{j}" for j in range(0, 2 * config.head_layers - 1, 2)}
        return rules + _rules("", "head.", head)

    def ema_module(self):
        return self.source


class Data2VecAudio1Converter(FairseqConverter):
    """fairseq `Data2VecAudioModel` (`examples/data2vec/models/data2vec_audio.py`) -> `Data2VecAudioModel` student."""

    name = "data2vec 1.0 audio"
    ema_key = "_ema"

    @staticmethod
    def recognises(checkpoint):
        keys = checkpoint.model
        return "final_proj.weight" in keys and "post_extract_proj.weight" in keys and "quantizer.vars" not in keys

    def pretraining_config(self):
        checkpoint = self.checkpoint
        model = checkpoint.model_cfg()
        _require(model.get("extractor_mode", "layer_norm") == "layer_norm", "its CNN uses group norm", checkpoint)
        _require(not model.get("layer_norm_first", False), "its encoder is pre-LN (layer_norm_first)", checkpoint)
        depth = model.get("pos_conv_depth", 1)
        _require(depth > 1, "its positional convolution is a single weight-normed conv (pos_conv_depth 1)", checkpoint)
        _require(not model.get("final_dim"), "it projects to final_dim", checkpoint)
        _require(model.get("activation_fn", "gelu") == "gelu", "its activation is not gelu", checkpoint)
        _require(not model.get("batch_norm_target_layer") and not model.get("group_norm_target_layer"),
                 "its targets are batch- or group-normalised", checkpoint)  # fmt: skip
        conv = parse_layer_spec(
            model.get("conv_feature_layers", "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2")
        )
        backbone = Data2VecAudioConfig(
            hidden_size=model["encoder_embed_dim"],
            num_hidden_layers=model["encoder_layers"],
            num_attention_heads=model["encoder_attention_heads"],
            intermediate_size=model["encoder_ffn_embed_dim"],
            conv_dim=[layer[0] for layer in conv],
            conv_kernel=[layer[1] for layer in conv],
            conv_stride=[layer[2] for layer in conv],
            conv_bias=model.get("conv_bias", False),
            num_conv_pos_embeddings=depth,
            conv_pos_kernel_size=max(3, model.get("conv_pos", 128) // depth),  # fairseq's make_conv_block
            num_conv_pos_embedding_groups=model.get("conv_pos_groups", 16),
            hidden_dropout=model.get("dropout", 0.1),
            attention_dropout=model.get("attention_dropout", 0.1),
            activation_dropout=model.get("activation_dropout", 0.0),
            feat_proj_dropout=model.get("dropout_input", 0.0),
            layerdrop=model.get("encoder_layerdrop", 0.0),
            layer_norm_eps=1e-5,
            mask_time_prob=model.get("mask_prob", 0.65),
            mask_time_length=model.get("mask_length", 10),
            mask_feature_prob=0.0,
        )
        transformer_only = model.get("ema_transformer_only", True)
        shared = ["feature_extractor.", "feature_projection.", "masked_spec_embed"] if transformer_only else []
        if transformer_only and model.get("ema_layers_only", True):
            shared.append("encoder.pos_conv_embed.")  # fairseq's skip_keys: copied, not averaged
        return Data2VecPretrainingConfig.from_preset(
            "audio",
            backbone,
            **_target_fields(model),
            head_layers=1,
            teacher_shared_params=shared,
            mask_prob=model.get("mask_prob", 0.65),
            mask_length=model.get("mask_length", 10),
            min_target_var=model.get("min_target_var", 0.1),
            min_pred_var=model.get("min_pred_var", 0.01),
        )

    def student_rules(self, config):
        backbone = config.backbone_config
        conv_params = ("weight", "bias") if backbone.conv_bias else ("weight",)
        rules = [KeyRule("mask_emb", ("student.masked_spec_embed",))]
        for i in range(len(backbone.conv_dim)):
            source, target = f"feature_extractor.conv_layers.{i}.", f"student.feature_extractor.conv_layers.{i}."
            rules += _rules(source, target, {"0": "conv"}, conv_params) + _rules(source, target, {"2.1": "layer_norm"})
        rules += _rules(
            "", "student.feature_projection.", {"layer_norm": "layer_norm", "post_extract_proj": "projection"}
        )
        for i in range(backbone.num_conv_pos_embeddings):
            rules += _rules(f"encoder.pos_conv.{i}.", f"student.encoder.pos_conv_embed.layers.{i}.", {"0": "conv"})
        rules += _rules("encoder.", "student.encoder.", {"layer_norm": "layer_norm"})
        for i in range(backbone.num_hidden_layers):
            rules += _rules(f"encoder.layers.{i}.", f"student.encoder.layers.{i}.", AUDIO_LAYER)
        return rules + _rules("", "head.", {"final_proj": "layers.0"})

    def ema_module(self):
        return "encoder." if self.checkpoint.model_cfg().get("ema_transformer_only", True) else ""


class Data2Vec2TextConverter(FairseqConverter):
    """fairseq `Data2VecMultiModel` on TEXT (`models/data2vec2.py`, `modalities/text.py`) -> `Data2VecTextModel`."""

    name = "data2vec 2.0 text"
    ema_key = "_ema"
    local = "modality_encoders.TEXT.local_encoder."
    decoder = "modality_encoders.TEXT.decoder."

    @staticmethod
    def recognises(checkpoint):
        return any(key.startswith("modality_encoders.TEXT.") for key in checkpoint.model)

    def pretraining_config(self):
        checkpoint = self.checkpoint
        model = checkpoint.model_cfg()
        text = (model.get("modalities") or {}).get("text", {})
        decoder = text.get("decoder") or {}
        _require(not model.get("layer_norm_first", False), "its blocks are pre-LN (layer_norm_first)", checkpoint)
        _require(text.get("prenet_depth", 0) == 0, "it has prenet blocks (prenet_depth > 0)", checkpoint)
        _require(not text.get("num_extra_tokens", 0), "it has extra tokens", checkpoint)
        _require(not text.get("use_alibi_encoder", False), "it uses an ALiBi attention bias", checkpoint)
        _require(text.get("mask_length", 1) == 1, "its masks are spans (mask_length > 1), not random", checkpoint)
        _require(text.get("learned_pos", True) and text.get("no_scale_embedding", True), "its positions or "
                 "embedding scale differ from RoBERTa's", checkpoint)  # fmt: skip
        _require(decoder.get("projection_ratio", 2.0) == 2.0, "its decoder projection ratio is not 2", checkpoint)
        _require(not decoder.get("add_positions_masked") and not decoder.get("add_positions_all"),
                 "its decoder adds positions", checkpoint)  # fmt: skip
        _require(not model.get("batch_norm_target_layer"), "its targets are batch-normalised", checkpoint)
        tokens = checkpoint.model[f"{self.local}embed_tokens.weight"]
        dim = model["embed_dim"]
        backbone = Data2VecTextConfig(
            vocab_size=tokens.shape[0],
            hidden_size=dim,
            num_hidden_layers=model["depth"],
            num_attention_heads=model["num_heads"],
            intermediate_size=int(dim * model.get("mlp_ratio", 4.0)),
            max_position_embeddings=checkpoint.model[f"{self.local}embed_positions.weight"].shape[0],
            type_vocab_size=1,
            layer_norm_eps=model.get("norm_eps", 1e-5),
            hidden_dropout_prob=model.get("encoder_dropout", 0.1),
            attention_probs_dropout_prob=model.get("attention_dropout", 0.1),
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
        )
        # ema_encoder_only: the teacher averages the blocks and reads the student's embeddings (shared here)
        local_averaged = not model.get("ema_encoder_only", True) and text.get("ema_local_encoder", False)
        return Data2VecPretrainingConfig.from_preset(
            "text",
            backbone,
            mode="data2vec2",
            **_target_fields(model),
            target_feature="block" if model.get("end_of_block_targets") else "ffn",
            clone_batch=model.get("clone_batch", 1),
            teacher_shared_params=[] if local_averaged else ["embeddings."],
            mask_prob=text.get("mask_prob", 0.48),
            mask_length=1,
            mask_noise_std=text.get("mask_noise_std", 0.01),
            decoder_dim=decoder.get("decoder_dim", dim),
            decoder_kernel=decoder.get("decoder_kernel", 9),
            decoder_layers=decoder.get("decoder_layers", 5),
            decoder_groups=decoder.get("decoder_groups", 1),
            decoder_residual=decoder.get("decoder_residual", True),
            decoder_projection_layers=decoder.get("projection_layers", 1),
            decoder_input_dropout=decoder.get("input_dropout", 0.1),
            mask_token_id=tokens.shape[0] - 1,
            min_target_var=model.get("min_target_var", 0.1),
            min_pred_var=model.get("min_pred_var", 0.01),
        )

    def student_rules(self, config):
        rules = text_embedding_rules(self.local)
        for i in range(config.backbone_config.num_hidden_layers):
            rules += _rules(f"blocks.{i}.", f"student.encoder.layer.{i}.", ALT_BLOCK)
        rules += _rules(
            self.decoder, "head.", {f"blocks.{i}.0": f"blocks.{i}.conv" for i in range(config.decoder_layers)}
        )
        if config.decoder_projection_layers == 1:
            return rules + _rules(self.decoder, "head.", {"proj": "projection.0"})
        projection = {f"proj.{j}": f"projection.{j}" for j in range(0, 2 * config.decoder_projection_layers - 1, 2)}
        return rules + _rules(self.decoder, "head.", projection)

    def ema_module(self):
        return "blocks." if self.checkpoint.model_cfg().get("ema_encoder_only", True) else ""


def _target_fields(model: dict) -> dict:
    """The recipe fields that fairseq's data2vec models of every modality name alike."""
    fields = {
        name: model[name]
        for name in (
            "average_top_k_layers",
            "instance_norm_target_layer",
            "layer_norm_target_layer",
            "instance_norm_targets",
            "layer_norm_targets",
            "loss_beta",
            "ema_decay",
            "ema_end_decay",
            "ema_anneal_end_step",
        )
        if model.get(name) is not None
    }
    fields["loss_scale"] = model.get("loss_scale")  # None: 1 / sqrt(D), as fairseq
    return fields


CONVERTERS: tuple[type[FairseqConverter], ...] = (
    Data2VecText1Converter,
    Data2VecAudio1Converter,
    Data2Vec2TextConverter,
)

# checkpoints that are recognised and refused, each with the reason: (test on the model keys, what it is, why)
REFUSALS = (
    (
        lambda keys: any(key.startswith("modality_encoders.IMAGE.") for key in keys),
        "a data2vec 2.0 image model",
        "its encoder (post-LN AltBlocks behind a prenet, fixed sin-cos positions, a CLS extra token) has no "
        "Hugging Face class; the Hugging Face vision classes are pre-LN",
    ),
    (
        lambda keys: any(key.startswith("modality_encoders.AUDIO.") for key in keys),
        "a data2vec 2.0 speech model",
        "its encoder (an ALiBi attention bias with a learned scale per head, a multi-layer convolutional position "
        "encoder) has no Hugging Face class; Data2VecAudioModel has no ALiBi",
    ),
    (
        lambda keys: any(key.startswith(("w2v_encoder.", "encoder.w2v_model.")) for key in keys),
        "a fine-tuned speech model (wav2vec 2.0 / data2vec CTC or classification: `w2v_encoder.*`)",
        "only pretraining checkpoints (student, teacher, head) are converted; Transformers converts fine-tuned "
        "wav2vec 2.0-style models with its own script",
    ),
    (
        lambda keys: any(".classification_heads." in key or key.startswith("classification_heads.") for key in keys),
        "a fine-tuned text model (`classification_heads.*`)",
        "only pretraining checkpoints (student, teacher, head) are converted",
    ),
    (
        lambda keys: "quantizer.vars" in keys or "project_q.weight" in keys,
        "a wav2vec 2.0 model (a quantizer and `project_q`)",
        "it is not a data2vec model; Transformers' `convert_wav2vec2_original_pytorch_checkpoint_to_pytorch` "
        "converts it",
    ),
    (
        lambda keys: "label_embs_concat" in keys,
        "a HuBERT model (`label_embs_concat`)",
        "it is not a data2vec model; Transformers' HuBERT conversion script converts it",
    ),
    (
        lambda keys: any(key.startswith("encoder.lm_head.") for key in keys),
        "a RoBERTa masked-LM model (`encoder.lm_head.*`)",
        "it is not a data2vec model; Transformers' `convert_roberta_original_pytorch_checkpoint_to_pytorch` "
        "converts it",
    ),
)


def find_converter(checkpoint: FairseqCheckpoint) -> FairseqConverter:
    """The converter of the checkpoint's model, or a [`FairseqCheckpointError`] saying what was found and why not."""
    keys = list(checkpoint.model)
    for recognised, what, why in REFUSALS:
        if recognised(keys):
            raise FairseqCheckpointError(f"{checkpoint.path} holds {what}, which cannot be converted: {why}.")
    for converter in CONVERTERS:
        if converter.recognises(checkpoint):
            return converter(checkpoint)
    name = checkpoint.model_cfg().get("_name")
    prefixes = sorted({key.split(".")[0] for key in keys})
    raise FairseqCheckpointError(
        f"{checkpoint.path} is not a data2vec pretraining checkpoint that d2v_hf converts (model {name!r}, weights "
        f"under {prefixes[:8]}). Expected one of: {', '.join(c.name for c in CONVERTERS)}."
    )


__all__ = [
    "ALT_BLOCK",
    "AUDIO_LAYER",
    "CONVERTERS",
    "REFUSALS",
    "TEXT_LAYER",
    "Data2Vec2TextConverter",
    "Data2VecAudio1Converter",
    "Data2VecText1Converter",
    "FairseqConverter",
    "KeyRule",
    "find_converter",
    "parse_layer_spec",
]
