"""
data2vec 2.0 (https://huggingface.co/papers/2212.07525), the efficient mode of [`Data2VecForPretraining`]
(`config.mode="data2vec2"`), on the Hugging Face text, audio and vision backbones:

- M masked copies of each sample (`config.clone_batch`) share ONE teacher pass: the targets are computed once per
  sample and indexed by each copy's masked positions (no M-fold teacher cost);
- the student encodes only the unmasked tokens, MAE-style: the backbone's embeddings (tokens, learned positions,
  LayerNorm, dropout) are computed for the whole sequence, the unmasked rows are gathered and the encoder layers of
  `Data2VecTextModel.encoder` run on them with a matching attention mask (images: patch embeddings, CLS and
  absolute positions, then the visible patches behind the CLS token through the layers of
  `Data2VecVisionModel.encoder`; audio: CNN features, the positional convolution on the masked-zeroed copy, then
  the visible frames through the layers of `Data2VecAudioModel.encoder`);
- a lightweight convolutional decoder reads the encoder outputs scattered back to their positions, masked slots
  filled with `N(0, mask_noise_std**2)` noise, and predicts the targets (L2 loss at masked positions).

[`Data2VecForPretraining.forward`] calls [`data2vec2_predictions`] when `config.mode == "data2vec2"`; the teacher,
the target computation, the loss, the EMA and the Trainer are shared with data2vec 1.0.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers.masking_utils import create_bidirectional_mask

from .backbones import INPUT_NAME, check_inputs, check_mask, encoder_layers, family_of, num_output_positions
from .configuration_data2vec_pretraining import image_side
from .masking_data2vec2 import compute_block_mask_1d, compute_inverse_block_mask, compute_random_mask


class Data2Vec2DecoderBlock(nn.Module):
    """
    `Conv(k, groups, "same" padding) -> LayerNorm over channels (no affine) -> GELU` on `(batch, seq, dim)`: a
    `Conv1d` over the sequence, or with `grid` a `Conv2d` over the `grid = (height, width)` patch grid.
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, groups: int, grid: tuple[int, int] | None = None):
        super().__init__()
        conv = nn.Conv1d if grid is None else nn.Conv2d
        self.conv = conv(in_dim, out_dim, kernel_size, padding=kernel_size // 2, groups=groups)
        self.out_dim, self.grid = out_dim, grid

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch_size, seq_len, channels = hidden_states.shape
        hidden_states = hidden_states.transpose(1, 2)
        if self.grid is not None:
            hidden_states = hidden_states.reshape(batch_size, channels, *self.grid)
        hidden_states = self.conv(hidden_states).reshape(batch_size, self.out_dim, seq_len).transpose(1, 2)
        return F.gelu(F.layer_norm(hidden_states, (self.out_dim,)))


class Data2Vec2Decoder(nn.Module):
    """
    fairseq's `Decoder1d` (text) / `Decoder2d` (images, over the patch grid): `decoder_layers` convolution blocks
    (with a residual connection when `decoder_residual` and the shapes match), then a linear projection (or a
    2-layer MLP) back to `hidden_size`.
    """

    def __init__(self, config):
        super().__init__()
        hidden_size = config.hidden_size
        dim = config.decoder_dim or hidden_size
        self.residual = config.decoder_residual
        self.input_dropout = nn.Dropout(config.decoder_input_dropout)
        self.noise_std = config.mask_noise_std
        grid = None
        if config.modality == "vision":
            backbone = config.backbone_config
            grid = (image_side(backbone) // backbone.patch_size,) * 2
        self.blocks = nn.ModuleList(
            Data2Vec2DecoderBlock(
                hidden_size if i == 0 else dim, dim, config.decoder_kernel, config.decoder_groups, grid
            )
            for i in range(config.decoder_layers)
        )
        layers, width = [], dim
        for i in range(config.decoder_projection_layers - 1):
            next_width = 2 * width if i == 0 else width
            layers += [nn.Linear(width, next_width), nn.GELU()]
            width = next_width
        layers.append(nn.Linear(width, hidden_size))
        self.projection = nn.Sequential(*layers)

    def build_input(self, visible_states, positions, keep, real=None) -> torch.Tensor:
        """
        The decoder input `(num_rows, seq, hidden)`: the (dropped-out) encoder outputs `visible_states`
        `(num_rows, max_visible, hidden)` scattered back to their `positions` `(num_rows, max_visible)`; positions
        where `keep` `(num_rows, seq)` is False get noise, padding (`real` False) gets zeros.
        """
        visible_states = self.input_dropout(visible_states)
        shape = (*keep.shape, visible_states.shape[-1])
        noise = torch.randn(shape, device=keep.device, dtype=visible_states.dtype) * self.noise_std
        index = positions.unsqueeze(-1).expand(-1, -1, shape[-1])
        scattered = torch.zeros(shape, device=keep.device, dtype=visible_states.dtype).scatter(
            1, index, visible_states
        )
        decoder_input = torch.where(keep.unsqueeze(-1), scattered, noise)
        if real is not None:
            decoder_input = decoder_input * real.unsqueeze(-1).to(decoder_input.dtype)
        return decoder_input

    def forward(self, hidden_states, real=None, output_mask=None) -> torch.Tensor:
        """
        Args:
            hidden_states (`torch.FloatTensor` of shape `(num_rows, seq, hidden)`): from [`build_input`].
            real (`torch.BoolTensor` of shape `(num_rows, seq)`, *optional*): False at padding, which is re-zeroed
                after each block so that padding never leaks into real positions.
            output_mask (`torch.BoolTensor` of shape `(num_rows, seq)`, *optional*): project only these positions.

        Returns:
            `(num_rows, seq, hidden)`, or `(output_mask.sum(), hidden)` with `output_mask`.
        """
        keep_real = None if real is None else real.unsqueeze(-1).to(hidden_states.dtype)
        residual = hidden_states
        for block in self.blocks:
            hidden_states = block(hidden_states)
            if self.residual and residual.shape == hidden_states.shape:
                hidden_states = hidden_states + residual
            if keep_real is not None:
                hidden_states = hidden_states * keep_real
            residual = hidden_states
        if output_mask is not None:
            hidden_states = hidden_states[output_mask]
        return self.projection(hidden_states)


def sincos_2d_positions(grid_size: int, dim: int) -> torch.Tensor:
    """
    The fixed 2-D sin-cos positions of MAE and data2vec 2.0 (`get_2d_sincos_pos_embed`): half the channels encode
    the column, half the row, each as `[sin(p * w_k), cos(p * w_k)]` with `w_k = 10000^(-k / (dim / 4))`.
    Returns `(grid_size**2, dim)`, patches in row-major order.
    """
    if dim % 4:
        raise ValueError(f"hidden_size={dim}: 2-D sin-cos positions need a multiple of 4.")
    frequencies = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows, columns = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")

    def encode(positions):
        angles = positions.reshape(-1, 1).double() * frequencies
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(columns), encode(rows)], dim=1).float()


@torch.no_grad()
def init_data2vec2_image_backbone(student, teacher) -> None:
    """
    data2vec 2.0's image encoder: fixed 2-D sin-cos positions, never trained (fairseq `fixed_positions`,
    `requires_grad=False`; the CLS slot gets none), and a CLS token from N(0, 1) (`init_extra_token_zero: false`).
    """
    prefix = family_of(student).prefix_tokens  # CLS (and DeiT's distillation token): no position
    for backbone in (student, teacher):
        embeddings = backbone.embeddings
        fixed = torch.zeros_like(embeddings.position_embeddings)
        grid = int(round((fixed.shape[1] - prefix) ** 0.5))
        fixed[0, prefix:] = sincos_2d_positions(grid, fixed.shape[-1]).to(fixed)
        # a buffer under the parameter's name: the forward and the state-dict key (which the exported student's
        # class loads as its parameter) stay the same, and no optimizer trains it
        del embeddings.position_embeddings
        embeddings.register_buffer("position_embeddings", fixed)
    nn.init.normal_(student.embeddings.cls_token, std=1.0)


def gather_visible(hidden_states: torch.Tensor, keep: torch.BoolTensor):
    """
    Packs the kept rows of each sequence to the front, in order.

    Args:
        hidden_states (`torch.Tensor` of shape `(num_rows, seq, hidden)`)
        keep (`torch.BoolTensor` of shape `(num_rows, seq)`): True at the positions the student encodes.

    Returns:
        `(visible_states, visible_mask, positions)`: `(num_rows, max_visible, hidden)`, `(num_rows, max_visible)`
        True where a row has a kept token, and `(num_rows, max_visible)` the original position of each slot.
    """
    num_visible = keep.sum(1)
    max_visible = int(num_visible.max())
    positions = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :max_visible]
    visible_states = hidden_states.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden_states.shape[-1]))
    visible_mask = torch.arange(max_visible, device=keep.device) < num_visible.unsqueeze(1)
    return visible_states, visible_mask, positions


def encode_visible_text(student, input_ids, keep, clone_batch: int):
    """
    The sparse student: embeddings of the whole sequence (once per sample), repeated for the M copies, then the
    encoder layers on the kept tokens only.

    Args:
        student (`Data2VecTextModel`)
        input_ids (`torch.LongTensor` of shape `(batch, seq)`): the original tokens.
        keep (`torch.BoolTensor` of shape `(batch * clone_batch, seq)`): real and not masked.
        clone_batch (`int`): M.

    Returns:
        `(visible_states, visible_mask, positions)` as [`gather_visible`], `visible_states` being the encoder output.
    """
    embeddings = student.embeddings(input_ids=input_ids).repeat_interleave(clone_batch, 0)
    visible_states, visible_mask, positions = gather_visible(embeddings, keep)
    attention_mask = create_bidirectional_mask(
        config=student.config, inputs_embeds=visible_states, attention_mask=visible_mask
    )
    visible_states = student.encoder(visible_states, attention_mask=attention_mask).last_hidden_state
    return visible_states, visible_mask, positions


def encode_visible_patches(student, pixel_values, keep, clone_batch: int, return_cls: bool = False):
    """
    The sparse student for images (MAE-style): patch embeddings + CLS (+ DeiT's distillation token) + absolute
    positions for the whole image (once per sample), repeated for the M copies; the visible patches are gathered
    behind the prefix tokens and go through the encoder layers and the final LayerNorm. Needs the same number of
    visible patches in every copy.

    Args:
        student (`Data2VecVisionModel`, `ViTModel`, `DeiTModel`, `BeitModel`): without relative position bias.
        pixel_values (`torch.FloatTensor` of shape `(batch, channels, height, width)`)
        keep (`torch.BoolTensor` of shape `(batch * clone_batch, num_patches)`): the visible patches.
        clone_batch (`int`): M.
        return_cls (`bool`, *optional*, defaults to `False`): also return the CLS output of each copy.

    Returns:
        `(visible_states, visible_mask, positions)` as [`gather_visible`] (patches only, no prefix tokens), then the
        CLS outputs `(batch * clone_batch, hidden)` with `return_cls`.
    """
    family = family_of(student)
    prefix = family.prefix_tokens
    embeddings = student.embeddings(pixel_values)
    embeddings = embeddings[0] if isinstance(embeddings, tuple) else embeddings  # Data2VecVision adds the grid
    embeddings = embeddings.repeat_interleave(clone_batch, 0)
    patches, visible_mask, positions = gather_visible(embeddings[:, prefix:], keep)
    hidden_states = torch.cat([embeddings[:, :prefix], patches], dim=1)
    # the BEiT-style layers read the image size (for a relative position bias, which 2.0 turns off)
    layer_kwargs = {"resolution": tuple(pixel_values.shape[2:])} if family.layer_takes_resolution else {}
    for layer in encoder_layers(student):
        hidden_states = layer(hidden_states, **layer_kwargs)
        hidden_states = hidden_states[0] if isinstance(hidden_states, tuple) else hidden_states
    hidden_states = student.layernorm(hidden_states)
    if return_cls:
        return hidden_states[:, prefix:], visible_mask, positions, hidden_states[:, 0]
    return hidden_states[:, prefix:], visible_mask, positions


def encode_visible_frames(student, input_values, keep, clone_batch: int):
    """
    The sparse student for audio: CNN features and their projection (once per sample), repeated for the M copies;
    the positional convolution of the encoder runs on each copy with its masked frames zeroed and is added at the
    visible frames only (fairseq's `encoder_zero_mask`); the visible frames then go through the encoder's LayerNorm,
    dropout and layers (with LayerDrop; a pre-LN encoder, `do_stable_layer_norm`, normalises after the layers).
    Needs the same number of visible frames in every copy.

    Args:
        student (`Data2VecAudioModel`, `Wav2Vec2Model`, `HubertModel`)
        input_values (`torch.FloatTensor` of shape `(batch, num_samples)`): unpadded raw audio.
        keep (`torch.BoolTensor` of shape `(batch * clone_batch, num_frames)`): the visible frames.
        clone_batch (`int`): M.

    Returns:
        `(visible_states, visible_mask, positions)` as [`gather_visible`].
    """
    features = student.feature_extractor(input_values).transpose(1, 2)
    projected = student.feature_projection(features)
    projected = projected[0] if isinstance(projected, tuple) else projected  # wav2vec2 also returns the normed input
    hidden_states = projected.repeat_interleave(clone_batch, 0)
    encoder = student.encoder
    positions_embedded = encoder.pos_conv_embed(hidden_states * keep.unsqueeze(-1).to(hidden_states.dtype))
    visible_states, visible_mask, positions = gather_visible(hidden_states + positions_embedded, keep)
    pre_ln = getattr(student.config, "do_stable_layer_norm", False)
    hidden_states = encoder.dropout(visible_states if pre_ln else encoder.layer_norm(visible_states))
    for layer in encoder.layers:
        if encoder.training and student.config.layerdrop > 0 and torch.rand([]) < student.config.layerdrop:
            continue
        hidden_states = layer(hidden_states)
        hidden_states = hidden_states[0] if isinstance(hidden_states, tuple) else hidden_states
    if pre_ln:
        hidden_states = encoder.layer_norm(hidden_states)
    return hidden_states, visible_mask, positions


def check_clone_mask(mask, batch_size: int, seq_len: int, clone_batch: int, real) -> torch.BoolTensor:
    """Validates the `(batch * clone_batch, seq)` mask of the M copies ([`check_mask`]); returns it as bool."""
    hint = (
        f"data2vec 2.0 with clone_batch={clone_batch} needs one row per masked copy (copies of a sample are "
        "consecutive rows)"
    )
    mask = check_mask(mask, (batch_size * clone_batch, seq_len), real, "tokens", hint)
    empty = (~(real & ~mask).any(1)).nonzero().flatten()
    if len(empty):
        raise ValueError(f"mask row {int(empty[0])} masks every token: the student needs at least one visible token.")
    return mask


def _draw_mask(config, main_input, attention_mask, clone_batch, num_positions):
    if config.modality == "text":
        return compute_random_mask(attention_mask.cpu(), config.mask_prob, clone_batch).to(main_input.device)
    if config.modality == "audio":
        args = (num_positions, config.mask_prob, config.mask_length, config.mask_prob_adjust, clone_batch)
        return torch.cat([compute_block_mask_1d(*args) for _ in range(main_input.shape[0])]).to(main_input.device)
    grid_size = main_input.shape[-1] // config.backbone_config.patch_size
    masks = [
        compute_inverse_block_mask(
            grid_size, config.mask_prob, config.mask_length, config.mask_prob_adjust, clone_batch
        )
        for _ in range(main_input.shape[0])
    ]
    return torch.cat(masks).to(main_input.device)


def data2vec2_predictions(model, main_input, attention_mask=None, mask=None):
    """
    One data2vec 2.0 forward of `model` (a [`Data2VecForPretraining`] with `config.mode == "data2vec2"`).

    Args:
        main_input (`torch.Tensor`): the original (unmasked) `input_ids` `(batch, seq)`, `input_values`
            `(batch, num_samples)` or `pixel_values` `(batch, C, H, W)`.
        attention_mask (`torch.Tensor` of shape `(batch, seq)`, *optional*): text: 1 for real tokens (audio:
            must be all ones if given).
        mask (`torch.BoolTensor` of shape `(batch * clone_batch, num_positions)`, *optional*): True at the masked
            tokens / frames / patches of each copy (copies of sample `i` are rows `i * M ... i * M + M - 1`); drawn
            from the global RNG ([`compute_random_mask`], [`compute_block_mask_1d`], [`compute_inverse_block_mask`])
            when `None`.

    Returns:
        `(predictions, targets, mask, cls_loss)`: decoder outputs and teacher targets at the masked positions, both
        `(num_masked, hidden)`, the bool mask, and the images' global CLS loss (`config.cls_loss` > 0; else `None`).
    """
    config, modality = model.config, model.config.modality
    name = INPUT_NAME[modality]
    main_input, padding = check_inputs(config, {name: main_input, "attention_mask": attention_mask})
    batch_size, clone_batch = main_input.shape[0], config.clone_batch
    if modality == "text":
        if attention_mask is None:
            attention_mask = torch.ones_like(main_input)
        real = attention_mask.bool().repeat_interleave(clone_batch, 0)
    else:
        if padding is not None and not bool(padding.all()):
            raise ValueError("data2vec 2.0 audio needs unpadded clips of equal length (crop to the shortest clip).")
        num_positions = num_output_positions(config, main_input)
        real = torch.ones(batch_size * clone_batch, num_positions, dtype=torch.bool, device=main_input.device)
    if mask is None:
        mask = _draw_mask(config, main_input, attention_mask, clone_batch, real.shape[1])
    mask = check_clone_mask(mask, batch_size, real.shape[1], clone_batch, real)
    keep = real & ~mask

    # 1. student: only the unmasked tokens / frames / patches of each copy go through the encoder layers
    if modality == "text":
        visible_states, _, positions = encode_visible_text(model.student, main_input, keep, clone_batch)
    else:
        counts = keep.sum(1)
        if not bool((counts == counts[0]).all()):
            raise ValueError(
                f"The masks keep between {int(counts.min())} and {int(counts.max())} positions; data2vec 2.0 "
                f"{modality} needs the same number of visible positions in every copy (exact-count masks)."
            )
        if modality == "audio":
            visible_states, _, positions = encode_visible_frames(model.student, main_input, keep, clone_batch)
        else:
            encoded = encode_visible_patches(model.student, main_input, keep, clone_batch, return_cls=True)
            visible_states, _, positions, cls_states = encoded

    # 2. decoder: encoder outputs back at their positions, noise at masked ones; project the masked positions only
    padded = real if modality == "text" and not bool(real.all()) else None
    decoder_input = model.head.build_input(visible_states, positions, keep, padded)
    predictions = model.head(decoder_input, real=padded, output_mask=mask)

    # 3. teacher: one pass per sample on the unmasked input; copy c of sample i reads row i. The inputs were checked
    # above, so the teacher runs without compute_targets' checks (each value check is a host sync on a GPU); audio
    # clips are unpadded here, so its teacher gets neither mask nor padding
    if modality == "text":
        all_targets = model._teacher_targets(main_input, padding, attention_mask)
    else:
        all_targets = model._teacher_targets(main_input, None, None)
    rows, columns = mask.nonzero(as_tuple=True)
    targets = all_targets[torch.div(rows, clone_batch, rounding_mode="floor"), columns]

    # 4. images: each copy's CLS output regresses the mean target over all patches (fairseq's cls_loss)
    cls_loss = None
    if modality == "vision" and config.cls_loss > 0:
        cls_targets = all_targets.mean(1).repeat_interleave(clone_batch, 0)
        cls_loss = config.cls_loss * model.regression_loss(cls_states, cls_targets)
    return predictions, targets, mask, cls_loss


__all__ = [
    "Data2Vec2Decoder",
    "Data2Vec2DecoderBlock",
    "check_clone_mask",
    "data2vec2_predictions",
    "encode_visible_frames",
    "encode_visible_patches",
    "encode_visible_text",
    "gather_visible",
    "init_data2vec2_image_backbone",
    "sincos_2d_positions",
]
