"""None-VGG-BiLSTM-CTC, the recognizer behind EasyOCR's `korean_g2`.

Module names, order and sizes reproduce EasyOCR's `easyocr/model/vgg_model.py` and `modules.py` (itself
clovaai/deep-text-recognition-benchmark), so its checkpoints load key for key. As in EasyOCR's Model the sizes
have no defaults: hwocr reads them from a pretrained model's record (models/pretrained.py), EasyOCR from the yaml.
"""

from __future__ import annotations

import torch
from torch import nn


class VGG_FeatureExtractor(nn.Module):  # noqa: N801 - the name is part of the checkpoint's lineage
    def __init__(self, input_channel: int, output_channel: int) -> None:
        super().__init__()
        c = [output_channel // 8, output_channel // 4, output_channel // 2, output_channel]
        self.output_channel = c
        self.ConvNet = nn.Sequential(
            nn.Conv2d(input_channel, c[0], 3, 1, 1), nn.ReLU(True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(c[0], c[1], 3, 1, 1), nn.ReLU(True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(c[1], c[2], 3, 1, 1), nn.ReLU(True),
            nn.Conv2d(c[2], c[2], 3, 1, 1), nn.ReLU(True),
            nn.MaxPool2d((2, 1), (2, 1)),
            nn.Conv2d(c[2], c[3], 3, 1, 1, bias=False),
            nn.BatchNorm2d(c[3]), nn.ReLU(True),
            nn.Conv2d(c[3], c[3], 3, 1, 1, bias=False),
            nn.BatchNorm2d(c[3]), nn.ReLU(True),
            nn.MaxPool2d((2, 1), (2, 1)),
            nn.Conv2d(c[3], c[3], 2, 1, 0), nn.ReLU(True),
        )
        self.recompute = 0  # leading ConvNet modules whose activations backward recomputes instead of keeping

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        k = self.recompute
        if k and self.training and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return self.ConvNet[k:](checkpoint(self.ConvNet[:k], input, use_reentrant=False))
        return self.ConvNet(input)


class BidirectionalLSTM(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.rnn = nn.LSTM(input_size, hidden_size, bidirectional=True, batch_first=True)
        self.linear = nn.Linear(hidden_size * 2, output_size)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """[B, T, input_size] -> [B, T, output_size]"""
        if input.is_cuda:
            # Weights may be non-contiguous after DataParallel replication; cuDNN warns and copies otherwise.
            self.rnn.flatten_parameters()
        recurrent, _ = self.rnn(input)
        return self.linear(recurrent)


class Model(nn.Module):
    def __init__(self, input_channel: int, output_channel: int, hidden_size: int, num_class: int) -> None:
        super().__init__()
        self.FeatureExtraction = VGG_FeatureExtractor(input_channel, output_channel)
        self.FeatureExtraction_output = output_channel
        self.AdaptiveAvgPool = nn.AdaptiveAvgPool2d((None, 1))
        self.SequenceModeling = nn.Sequential(
            BidirectionalLSTM(output_channel, hidden_size, hidden_size),
            BidirectionalLSTM(hidden_size, hidden_size, hidden_size),
        )
        self.SequenceModeling_output = hidden_size
        self.Prediction = nn.Linear(hidden_size, num_class)

    def forward(self, input: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """[B, C, H, W] images -> [B, T, num_class] logits (T = W/4 - 1). `text` is unused (CTC)."""
        visual = self.FeatureExtraction(input)
        # [B, C, H', T] -> [B, T, C, H'] -> average over H' -> [B, T, C]
        visual = self.AdaptiveAvgPool(visual.permute(0, 3, 1, 2)).squeeze(3)
        contextual = self.SequenceModeling(visual)
        return self.Prediction(contextual.contiguous())


def init_weights(model: nn.Module) -> None:
    """The benchmark's from-scratch init (its train.py): Kaiming-normal weights, zero biases, BatchNorm scale 1.

    PyTorch's default init is about 2.4x smaller for the convolutions, and the first four have no BatchNorm to
    undo that, so CTC sits on its plateau far longer without this.
    """
    for name, p in model.named_parameters():
        if "bias" in name:
            nn.init.zeros_(p)
        elif "weight" in name:
            if p.dim() < 2:
                nn.init.ones_(p)
            else:
                nn.init.kaiming_normal_(p)
