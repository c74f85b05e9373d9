"""Hugging Face Trainer on a tiny ViT built from a config (nothing downloaded): an 8x8 digit is 16
patches of 2x2 pixels. HpotuiTransformersCallback reports every log and
evaluation; the record is trainer.state.log_history.
"""

import warnings

import torch

torch.set_num_threads(1)
warnings.filterwarnings("ignore")

from cb_common import arguments, callbacks_module, digits, epochs, finish, gate  # noqa: E402

args = arguments()
callbacks = callbacks_module(bool(args.standalone))

from transformers import (Trainer, TrainerCallback, TrainingArguments, ViTConfig,  # noqa: E402
                          ViTForImageClassification)
from transformers.utils import logging  # noqa: E402

logging.set_verbosity_error()
torch.manual_seed(0)
x, y, vx, vy = digits(False, n_train=1200, n_val=300)


def images(pixels, labels):
    return [{"pixel_values": torch.tensor(p).reshape(1, 8, 8), "labels": torch.tensor(int(label))}
            for p, label in zip(pixels, labels)]


config = ViTConfig(image_size=8, patch_size=2, num_channels=1, hidden_size=32, num_hidden_layers=1,
                   num_attention_heads=2, intermediate_size=64, num_labels=10)
model = ViTForImageClassification(config)
if args.poison:
    with torch.no_grad():
        model.vit.embeddings.patch_embeddings.projection.weight.fill_(float("nan"))


def accuracy(prediction):
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


class Gate(TrainerCallback):
    """After ours: the epoch's training log and evaluation come before the next epoch begins."""

    def on_epoch_begin(self, args_, state, control, **kwargs):
        if state.epoch:
            gate(args, round(state.epoch))

    def on_train_end(self, args_, state, control, **kwargs):
        gate(args, round(state.epoch))


training = TrainingArguments(output_dir="hf_out", num_train_epochs=epochs(args), learning_rate=args.lr,
                             per_device_train_batch_size=32, per_device_eval_batch_size=100, eval_strategy="epoch",
                             logging_strategy="epoch", save_strategy="no", report_to="none", use_cpu=True,
                             disable_tqdm=True, seed=0, dataloader_num_workers=0)
trainer = Trainer(model=model, args=training, train_dataset=images(x, y), eval_dataset=images(vx, vy),
                  compute_metrics=accuracy, callbacks=[callbacks.HpotuiTransformersCallback(), Gate()])
trainer.train()
finish(args, trainer.state.log_history)
