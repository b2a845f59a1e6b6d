"""d2v_hf: data2vec self-supervised pretraining for Hugging Face Transformers."""

from .configuration_data2vec_pretraining import Data2VecPretrainingConfig
from .ema import ema_update_, get_annealed_rate
from .masking import (
    audio_frame_attention_mask,
    audio_frame_lengths,
    audio_receptive_field,
    compute_audio_span_mask,
    compute_text_bert_mask,
    compute_text_span_mask,
    compute_vision_block_mask,
)
from .modeling_data2vec_pretraining import Data2VecForPretraining, Data2VecForPretrainingOutput, Data2VecRegressionHead


__version__ = "0.1.0"

__all__ = [
    "Data2VecForPretraining",
    "Data2VecForPretrainingOutput",
    "Data2VecPretrainingConfig",
    "Data2VecRegressionHead",
    "audio_frame_attention_mask",
    "audio_frame_lengths",
    "audio_receptive_field",
    "compute_audio_span_mask",
    "compute_text_bert_mask",
    "compute_text_span_mask",
    "compute_vision_block_mask",
    "ema_update_",
    "get_annealed_rate",
]
