#!/usr/bin/env python
"""Fine-tune a data2vec-audio (or any transformers speech) model for audio classification.

    # Spoken digits: synthesize a speaker-disjoint 10-class set with espeak-ng (apt-get install espeak-ng) ...
    python -c "from d2v_hf.data import *; \
        synthesize_spoken_digits('digits/train', SPOKEN_DIGITS_TRAIN_VOICES); \
        synthesize_spoken_digits('digits/val', SPOKEN_DIGITS_VALIDATION_VOICES)"
    # ... and fine-tune a data2vec student exported by run_pretraining.py on it
    python examples/audio-classification/run_audio_classification.py --model_name_or_path d2v-audio/student \
        --train_dir digits/train --validation_dir digits/val --max_length_seconds 1 \
        --do_train --do_eval --learning_rate 1e-3 --num_train_epochs 10 --output_dir out/digits

    # Class folders of audio files at any sampling rate, a Hub checkpoint, LoRA adapters
    python examples/audio-classification/run_audio_classification.py \
        --model_name_or_path facebook/data2vec-audio-base --train_dir data/train --validation_dir data/val \
        --use_peft --do_train --do_eval --output_dir out/kws

    # A Hub dataset, several processes, all arguments from a JSON file
    accelerate launch --num_processes 2 examples/audio-classification/run_audio_classification.py \
        --dataset_name google/speech_commands \
        --dataset_config_name v0.02 --label_column_name label --model_name_or_path facebook/wav2vec2-base ...
    python examples/audio-classification/run_audio_classification.py args.json

Audio is resampled to 16 kHz (or the checkpoint feature extractor's rate), cut to `--max_length_seconds` (a random
window for training, the start for evaluation), normalised per utterance (data2vec's `normalize: true`, unless the
checkpoint's feature extractor says otherwise) and padded with an attention mask. The model card (`README.md`,
evaluation accuracy in its model-index) and a feature extractor are written to `--output_dir`; `--push_to_hub`
uploads the folder.
"""

import logging

from transformers import TrainingArguments, set_seed

from d2v_hf.argument_parsing import parse_arguments
from d2v_hf.finetuning import (
    AudioClassificationCollator,
    AudioDataArguments,
    ClassificationModelArguments,
    ClassificationTrainer,
    accuracy_compute_metrics,
    make_processor,
    prepare_classification,
    setup_logging,
    train_evaluate_and_save_card,
)
from d2v_hf.trainer.parallelism import end_distributed_run


logger = logging.getLogger(__name__)


def main(args=None):
    model_args, data_args, training_args = parse_arguments(
        (ClassificationModelArguments, AudioDataArguments, TrainingArguments), args
    )
    setup_logging(training_args)
    set_seed(training_args.seed)

    # checkpoint, processor settings, data, labels and model (the checkpoint first: bad input fails before the data)
    setup = prepare_classification("audio", model_args, data_args, training_args)
    data, model, settings = setup.data, setup.model, setup.settings
    sampling_rate = int(settings["sampling_rate"])

    collate = dict(
        max_length=int(data_args.max_length_seconds * sampling_rate),
        normalize=settings["do_normalize"],
        return_attention_mask=settings["return_attention_mask"],
    )
    trainer = ClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train if training_args.do_train else None,
        eval_dataset=data.validation,
        compute_metrics=accuracy_compute_metrics(),
        data_collator=AudioClassificationCollator(train=True, seed=training_args.seed, **collate),
        eval_data_collator=AudioClassificationCollator(train=False, **collate),
        processing_class=make_processor("audio", settings),
    )
    return train_evaluate_and_save_card(
        trainer,
        model_args,
        data,
        "audio-classification",
        extra_details={"sampling_rate": sampling_rate, "max_length_seconds": data_args.max_length_seconds},
    )


if __name__ == "__main__":
    main()
    end_distributed_run()
