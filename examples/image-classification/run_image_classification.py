#!/usr/bin/env python
"""Fine-tune a data2vec-vision (or any transformers image) model for image classification.

    # A data2vec student exported by run_pretraining.py on Fashion-MNIST's IDX files (train: train-*, eval: t10k-*)
    python examples/image-classification/run_image_classification.py --model_name_or_path d2v-vision/student \
        --train_dir ../shared/data/vision/fashion-mnist --validation_dir ../shared/data/vision/fashion-mnist \
        --do_train --do_eval --learning_rate 1e-3 --num_train_epochs 5 --output_dir out/fashion-mnist

    # Class folders (train/cat/*.jpg, train/dog/*.jpg, ...), a Hub checkpoint with a 1000-class head, LoRA adapters
    python examples/image-classification/run_image_classification.py \
        --model_name_or_path facebook/data2vec-vision-base-ft1k \
        --train_dir data/train --validation_dir data/val --ignore_mismatched_sizes --use_peft \
        --do_train --do_eval --output_dir out/pets-lora

    # A Hub dataset, several processes, all arguments from a JSON file
    accelerate launch --num_processes 2 examples/image-classification/run_image_classification.py \
        --dataset_name uoft-cs/cifar10 \
        --image_column_name img --model_name_or_path google/vit-base-patch16-224-in21k --do_train --do_eval ...
    python examples/image-classification/run_image_classification.py args.json

Images are resized to the model's `image_size` (random resized crop + horizontal flip for training, resize + centre
crop for evaluation) and normalised with the checkpoint's image processor statistics (0.5 without one, as
data2vec-vision). The model card (`README.md`, evaluation accuracy in its model-index) and an image processor are
written to `--output_dir`; `--push_to_hub` uploads the folder.
"""

import logging

from transformers import TrainingArguments, set_seed

from d2v_hf.argument_parsing import parse_arguments
from d2v_hf.finetuning import (
    ClassificationModelArguments,
    ClassificationTrainer,
    ImageClassificationCollator,
    ImageDataArguments,
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
        (ClassificationModelArguments, ImageDataArguments, TrainingArguments), args
    )
    setup_logging(training_args)
    set_seed(training_args.seed)

    # checkpoint, processor settings, data, labels and model (the checkpoint first: bad input fails before the data)
    setup = prepare_classification("vision", model_args, data_args, training_args)
    data, model, settings, image_size = setup.data, setup.model, setup.settings, setup.image_size

    trainer = ClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train if training_args.do_train else None,
        eval_dataset=data.validation,
        compute_metrics=accuracy_compute_metrics(),
        data_collator=ImageClassificationCollator(),
        processing_class=make_processor("vision", settings, image_size),
    )
    return train_evaluate_and_save_card(
        trainer,
        model_args,
        data,
        "image-classification",
        extra_details={"image_size": image_size, "min_crop_scale": data_args.min_crop_scale},
    )


if __name__ == "__main__":
    main()
    end_distributed_run()
