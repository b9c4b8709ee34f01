"""TRL's ``SFTTrainer``, subclassed only where an LLM recommender needs its own: the loss (the model computes it,
over answer tokens or item scores), the optimiser (the projector's own learning rate), and checkpoints that hold
the trainable parts (adapter and projector) rather than the whole LLM.

The rows are tokenized by :class:`llmrec.adapters.HybridCollator` (TRL's dataset preparation is skipped), since the
item vectors are spliced into the token embeddings inside the model's forward pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from trl import SFTTrainer

from llmrec.training.config import RecSFTConfig


class RecSFTTrainer(SFTTrainer):
    """``SFTTrainer`` over a :class:`llmrec.training.model.RecommenderLM`; every loss component is logged."""

    args: RecSFTConfig
    # The model returns each micro-batch's mean loss; the trainer divides it over gradient accumulation steps.
    loss_is_scaled_for_ga = False

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        outputs = model(**inputs)
        mode = "train" if self.model.training else "eval"
        for name, value in outputs.items():
            if name != "loss":
                self._metrics[mode][name].append(float(self.accelerator.gather_for_metrics(value).mean()))
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """AdamW with two groups: the LoRA weights at ``learning_rate``, the projector at
        ``projector_learning_rate``."""
        model = self.model if model is None else model
        if self.optimizer is None:
            trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
            projector = [p for n, p in trainable if n.startswith("projector.")]
            lora = [p for n, p in trainable if not n.startswith("projector.")]
            groups = [{"params": lora, "lr": self.args.learning_rate}]
            if projector:
                groups.append({"params": projector, "lr": self.args.projector_learning_rate})
            self.optimizer = torch.optim.AdamW(groups, weight_decay=self.args.weight_decay)
        return self.optimizer

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """No model card: a checkpoint directory holds an adapter and a projector, not a model to publish."""

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        directory = Path(output_dir or self.args.output_dir)
        directory.mkdir(parents=True, exist_ok=True)
        self.accelerator.unwrap_model(self.model).save(directory)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        self.accelerator.unwrap_model(model or self.model).load_trainable(resume_from_checkpoint)
