"""The deep-text-recognition-benchmark's four-stage recognizer, Transformation-FeatureExtraction-SequenceModeling-
Prediction, with its module choices: None|TPS, VGG|RCNN|ResNet, None|BiLSTM, CTC|Attn.

Module names, order and sizes reproduce the benchmark's `model.py` and `modules/` (commit e2117f2), so its
checkpoints load key for key; None-VGG-BiLSTM-CTC is also EasyOCR's `easyocr/model/vgg_model.py` (korean_g2).
This file imports only torch: hwocr exports it as an EasyOCR user network's NAME.py, where EasyOCR builds
`Model(num_class=..., **network_params)` from the yaml; the defaults of the stage arguments are that network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TRANSFORMATIONS = ("None", "TPS")
FEATURE_EXTRACTIONS = ("VGG", "RCNN", "ResNet")
SEQUENCE_MODELINGS = ("None", "BiLSTM")
PREDICTIONS = ("CTC", "Attn")


class TPS_SpatialTransformerNetwork(nn.Module):  # noqa: N801 - benchmark names
    """RARE's rectification: F fiducial points predicted from the image, a thin-plate-spline grid, resampling to
    (img_h, img_w) whatever the input's width."""

    def __init__(self, F: int, I_size: tuple[int, int], I_r_size: tuple[int, int], I_channel_num: int = 1) -> None:  # noqa: N803
        super().__init__()
        self.F, self.I_size, self.I_r_size, self.I_channel_num = F, I_size, I_r_size, I_channel_num
        self.LocalizationNetwork = LocalizationNetwork(F, I_channel_num)
        self.GridGenerator = GridGenerator(F, I_r_size)

    def forward(self, batch_I: torch.Tensor) -> torch.Tensor:  # noqa: N803
        batch_C_prime = self.LocalizationNetwork(batch_I)  # noqa: N806
        P_prime = self.GridGenerator.build_P_prime(batch_C_prime)  # noqa: N806
        grid = P_prime.reshape([P_prime.size(0), self.I_r_size[0], self.I_r_size[1], 2])
        return F.grid_sample(batch_I, grid.to(batch_I.dtype), padding_mode="border", align_corners=True)


def _points(F: int, top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:  # noqa: N803
    """F x 2 points: F/2 evenly along x at heights `top`, then F/2 at heights `bottom` (float64, as numpy's)."""
    x = torch.linspace(-1.0, 1.0, F // 2, dtype=torch.float64)
    return torch.cat([torch.stack([x, top], 1), torch.stack([x, bottom], 1)])


def _linspace(a: float, b: float, n: int) -> torch.Tensor:
    return torch.linspace(a, b, n, dtype=torch.float64)


class LocalizationNetwork(nn.Module):
    def __init__(self, F: int, I_channel_num: int) -> None:  # noqa: N803
        super().__init__()
        self.F, self.I_channel_num = F, I_channel_num
        self.conv = nn.Sequential(
            nn.Conv2d(I_channel_num, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(64, 128, 3, 1, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(128, 256, 3, 1, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU(True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(256, 512, 3, 1, 1, bias=False), nn.BatchNorm2d(512), nn.ReLU(True),
            nn.AdaptiveAvgPool2d(1),
        )
        self.localization_fc1 = nn.Sequential(nn.Linear(512, 256), nn.ReLU(True))
        self.localization_fc2 = nn.Linear(256, F * 2)
        self.reset_fiducials()

    def reset_fiducials(self) -> None:
        """RARE's start (its Fig. 6 a): zero fc2 weights, the bias the identity grid's points. A from-scratch init
        must keep it, or the first grids fold the image."""
        with torch.no_grad():
            self.localization_fc2.weight.zero_()
            n = self.F // 2
            self.localization_fc2.bias.copy_(_points(self.F, _linspace(0, -1, n), _linspace(1, 0, n)).float().view(-1))

    def forward(self, batch_I: torch.Tensor) -> torch.Tensor:  # noqa: N803
        features = self.conv(batch_I).view(batch_I.size(0), -1)
        return self.localization_fc2(self.localization_fc1(features)).view(batch_I.size(0), self.F, 2)


class GridGenerator(nn.Module):
    """P' = P_hat T, T = inv(delta_C) [C'; 0]. inv_delta_C and P_hat are buffers, in the state_dict as upstream."""

    def __init__(self, F: int, I_r_size: tuple[int, int]) -> None:  # noqa: N803
        super().__init__()
        self.eps = 1e-6
        self.I_r_height, self.I_r_width = I_r_size
        self.F = F
        C = _points(F, -torch.ones(F // 2, dtype=torch.float64), torch.ones(F // 2, dtype=torch.float64))  # noqa: N806
        self.register_buffer("inv_delta_C", self._build_inv_delta_C(F, C).float())
        self.register_buffer("P_hat", self._build_P_hat(F, C, self._build_P(self.I_r_width, self.I_r_height)).float())

    @staticmethod
    def _build_inv_delta_C(F: int, C: torch.Tensor) -> torch.Tensor:  # noqa: N802, N803
        hat_C = torch.cdist(C, C)  # noqa: N806
        hat_C.fill_diagonal_(1)
        hat_C = hat_C**2 * torch.log(hat_C)  # noqa: N806
        delta_C = torch.cat([  # noqa: N806
            torch.cat([torch.ones(F, 1, dtype=C.dtype), C, hat_C], 1),
            torch.cat([torch.zeros(2, 3, dtype=C.dtype), C.t()], 1),
            torch.cat([torch.zeros(1, 3, dtype=C.dtype), torch.ones(1, F, dtype=C.dtype)], 1),
        ])
        return torch.linalg.inv(delta_C)

    @staticmethod
    def _build_P(width: int, height: int) -> torch.Tensor:  # noqa: N802
        gx = (torch.arange(-width, width, 2, dtype=torch.float64) + 1.0) / width
        gy = (torch.arange(-height, height, 2, dtype=torch.float64) + 1.0) / height
        return torch.stack(torch.meshgrid(gx, gy, indexing="xy"), 2).reshape(-1, 2)

    def _build_P_hat(self, F: int, C: torch.Tensor, P: torch.Tensor) -> torch.Tensor:  # noqa: N802, N803
        norm = torch.linalg.norm(P[:, None, :] - C[None], dim=2)
        rbf = norm**2 * torch.log(norm + self.eps)
        return torch.cat([torch.ones(P.size(0), 1, dtype=P.dtype), P, rbf], 1)

    def build_P_prime(self, batch_C_prime: torch.Tensor) -> torch.Tensor:  # noqa: N802, N803
        b = batch_C_prime.size(0)
        C_prime = torch.cat([batch_C_prime.float(), batch_C_prime.new_zeros(b, 3, 2, dtype=torch.float32)], 1)  # noqa: N806
        T = torch.bmm(self.inv_delta_C.expand(b, -1, -1), C_prime)  # noqa: N806
        return torch.bmm(self.P_hat.expand(b, -1, -1), T)


class _Recomputable(nn.Module):
    """A ConvNet whose first `recompute` modules backward recomputes instead of keeping (train.recompute_layers)."""

    recompute = 0

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        k = self.recompute
        if k and self.training and torch.is_grad_enabled() and isinstance(self.ConvNet, nn.Sequential):
            from torch.utils.checkpoint import checkpoint

            return self.ConvNet[k:](checkpoint(self.ConvNet[:k], input, use_reentrant=False))
        return self.ConvNet(input)


class VGG_FeatureExtractor(_Recomputable):  # noqa: N801 - the name is part of the checkpoint's lineage
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


class RCNN_FeatureExtractor(_Recomputable):  # noqa: N801
    """GRCNN's extractor: three gated recurrent convolution layers of 5 iterations."""

    def __init__(self, input_channel: int, output_channel: int) -> None:
        super().__init__()
        c = [output_channel // 8, output_channel // 4, output_channel // 2, output_channel]
        self.output_channel = c
        self.ConvNet = nn.Sequential(
            nn.Conv2d(input_channel, c[0], 3, 1, 1), nn.ReLU(True),
            nn.MaxPool2d(2, 2),
            GRCL(c[0], c[0], num_iteration=5, kernel_size=3, pad=1),
            nn.MaxPool2d(2, 2),
            GRCL(c[0], c[1], num_iteration=5, kernel_size=3, pad=1),
            nn.MaxPool2d(2, (2, 1), (0, 1)),
            GRCL(c[1], c[2], num_iteration=5, kernel_size=3, pad=1),
            nn.MaxPool2d(2, (2, 1), (0, 1)),
            nn.Conv2d(c[2], c[3], 2, 1, 0, bias=False),
            nn.BatchNorm2d(c[3]), nn.ReLU(True),
        )


class GRCL(nn.Module):
    def __init__(self, input_channel: int, output_channel: int, num_iteration: int, kernel_size: int,
                 pad: int) -> None:
        super().__init__()
        self.wgf_u = nn.Conv2d(input_channel, output_channel, 1, 1, 0, bias=False)
        self.wgr_x = nn.Conv2d(output_channel, output_channel, 1, 1, 0, bias=False)
        self.wf_u = nn.Conv2d(input_channel, output_channel, kernel_size, 1, pad, bias=False)
        self.wr_x = nn.Conv2d(output_channel, output_channel, kernel_size, 1, pad, bias=False)
        self.BN_x_init = nn.BatchNorm2d(output_channel)
        self.num_iteration = num_iteration
        self.GRCL = nn.Sequential(*[GRCL_unit(output_channel) for _ in range(num_iteration)])

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        wgf_u, wf_u = self.wgf_u(input), self.wf_u(input)  # u(0) is the same at every iteration
        x = F.relu(self.BN_x_init(wf_u))
        for i in range(self.num_iteration):
            x = self.GRCL[i](wgf_u, self.wgr_x(x), wf_u, self.wr_x(x))
        return x


class GRCL_unit(nn.Module):  # noqa: N801
    def __init__(self, output_channel: int) -> None:
        super().__init__()
        self.BN_gfu = nn.BatchNorm2d(output_channel)
        self.BN_grx = nn.BatchNorm2d(output_channel)
        self.BN_fu = nn.BatchNorm2d(output_channel)
        self.BN_rx = nn.BatchNorm2d(output_channel)
        self.BN_Gx = nn.BatchNorm2d(output_channel)

    def forward(self, wgf_u, wgr_x, wf_u, wr_x):
        G = torch.sigmoid(self.BN_gfu(wgf_u) + self.BN_grx(wgr_x))  # noqa: N806
        return F.relu(self.BN_fu(wf_u) + self.BN_Gx(self.BN_rx(wr_x) * G))


class ResNet_FeatureExtractor(_Recomputable):  # noqa: N801
    """FAN's extractor: a 29-layer ResNet, blocks [1, 2, 5, 3]."""

    def __init__(self, input_channel: int, output_channel: int) -> None:
        super().__init__()
        self.ConvNet = ResNet(input_channel, output_channel, BasicBlock, [1, 2, 5, 3])


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + residual)


class ResNet(nn.Module):
    def __init__(self, input_channel: int, output_channel: int, block: type[BasicBlock], layers: list[int]) -> None:
        super().__init__()
        c = [output_channel // 4, output_channel // 2, output_channel, output_channel]
        self.output_channel_block = c
        self.inplanes = output_channel // 8
        self.conv0_1 = nn.Conv2d(input_channel, output_channel // 16, 3, 1, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(output_channel // 16)
        self.conv0_2 = nn.Conv2d(output_channel // 16, self.inplanes, 3, 1, 1, bias=False)
        self.bn0_2 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)

        self.maxpool1 = nn.MaxPool2d(2, 2, 0)
        self.layer1 = self._make_layer(block, c[0], layers[0])
        self.conv1 = nn.Conv2d(c[0], c[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0])

        self.maxpool2 = nn.MaxPool2d(2, 2, 0)
        self.layer2 = self._make_layer(block, c[1], layers[1])
        self.conv2 = nn.Conv2d(c[1], c[1], 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c[1])

        self.maxpool3 = nn.MaxPool2d(2, (2, 1), (0, 1))
        self.layer3 = self._make_layer(block, c[2], layers[2])
        self.conv3 = nn.Conv2d(c[2], c[2], 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c[2])

        self.layer4 = self._make_layer(block, c[3], layers[3])
        self.conv4_1 = nn.Conv2d(c[3], c[3], 2, (2, 1), (0, 1), bias=False)
        self.bn4_1 = nn.BatchNorm2d(c[3])
        self.conv4_2 = nn.Conv2d(c[3], c[3], 2, 1, 0, bias=False)
        self.bn4_2 = nn.BatchNorm2d(c[3])

    def _make_layer(self, block: type[BasicBlock], planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn0_1(self.conv0_1(x)))
        x = self.relu(self.bn0_2(self.conv0_2(x)))
        x = self.relu(self.bn1(self.conv1(self.layer1(self.maxpool1(x)))))
        x = self.relu(self.bn2(self.conv2(self.layer2(self.maxpool2(x)))))
        x = self.relu(self.bn3(self.conv3(self.layer3(self.maxpool3(x)))))
        x = self.relu(self.bn4_1(self.conv4_1(self.layer4(x))))
        return self.relu(self.bn4_2(self.conv4_2(x)))


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


class Attention(nn.Module):
    """The benchmark's attention decoder: one LSTM cell over batch_max_length + 1 steps ([s] included); class 0 is
    [GO], the first input, class 1 is [s]."""

    def __init__(self, input_size: int, hidden_size: int, num_classes: int) -> None:
        super().__init__()
        self.attention_cell = AttentionCell(input_size, hidden_size, num_classes)
        self.hidden_size = hidden_size
        self.num_classes = num_classes
        self.generator = nn.Linear(hidden_size, num_classes)

    def forward(self, batch_H: torch.Tensor, text: torch.Tensor | None, is_train: bool = True,  # noqa: N803
                batch_max_length: int = 25) -> torch.Tensor:
        """batch_H [B, T, C]; text [B, >= steps] of [GO]-led targets (teacher forcing) or None (greedy) ->
        [B, batch_max_length + 1, num_classes] logits."""
        b, steps = batch_H.size(0), batch_max_length + 1
        zeros = batch_H.new_zeros(b, self.hidden_size)
        hidden = (zeros, zeros)
        if is_train and text is not None:
            outputs = []
            for i in range(steps):
                onehot = F.one_hot(text[:, i], self.num_classes).to(batch_H.dtype)
                hidden, _ = self.attention_cell(hidden, batch_H, onehot)
                outputs.append(hidden[0])
            return self.generator(torch.stack(outputs, 1))
        targets = torch.zeros(b, dtype=torch.long, device=batch_H.device)  # [GO]
        probs = []
        for _ in range(steps):
            onehot = F.one_hot(targets, self.num_classes).to(batch_H.dtype)
            hidden, _ = self.attention_cell(hidden, batch_H, onehot)
            step = self.generator(hidden[0])
            probs.append(step)
            targets = step.argmax(1)
        return torch.stack(probs, 1)


class AttentionCell(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_embeddings: int) -> None:
        super().__init__()
        self.i2h = nn.Linear(input_size, hidden_size, bias=False)
        self.h2h = nn.Linear(hidden_size, hidden_size)  # either i2h or h2h has the bias
        self.score = nn.Linear(hidden_size, 1, bias=False)
        self.rnn = nn.LSTMCell(input_size + num_embeddings, hidden_size)
        self.hidden_size = hidden_size

    def forward(self, prev_hidden, batch_H, char_onehots):  # noqa: N803
        e = self.score(torch.tanh(self.i2h(batch_H) + self.h2h(prev_hidden[0]).unsqueeze(1)))  # [B, T, 1]
        alpha = F.softmax(e, dim=1)
        context = torch.bmm(alpha.permute(0, 2, 1), batch_H).squeeze(1)
        cur_hidden = self.rnn(torch.cat([context, char_onehots], 1), prev_hidden)
        return cur_hidden, alpha


def _choice(name: str, value: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(f"{name} {value!r}: expected one of {', '.join(options)}")
    return value


class Model(nn.Module):
    def __init__(self, input_channel: int, output_channel: int, hidden_size: int, num_class: int,
                 transformation: str = "None", feature_extraction: str = "VGG", sequence_modeling: str = "BiLSTM",
                 prediction: str = "CTC", num_fiducial: int = 20, img_h: int = 32, img_w: int = 100,
                 batch_max_length: int = 25) -> None:
        super().__init__()
        self.stages = {"Trans": _choice("transformation", transformation, TRANSFORMATIONS),
                       "Feat": _choice("feature_extraction", feature_extraction, FEATURE_EXTRACTIONS),
                       "Seq": _choice("sequence_modeling", sequence_modeling, SEQUENCE_MODELINGS),
                       "Pred": _choice("prediction", prediction, PREDICTIONS)}
        self.batch_max_length = batch_max_length
        if transformation == "TPS":
            self.Transformation = TPS_SpatialTransformerNetwork(num_fiducial, (img_h, img_w), (img_h, img_w),
                                                                input_channel)
        extractor = {"VGG": VGG_FeatureExtractor, "RCNN": RCNN_FeatureExtractor,
                     "ResNet": ResNet_FeatureExtractor}[feature_extraction]
        self.FeatureExtraction = extractor(input_channel, output_channel)
        self.FeatureExtraction_output = output_channel
        self.AdaptiveAvgPool = nn.AdaptiveAvgPool2d((None, 1))
        if sequence_modeling == "BiLSTM":
            self.SequenceModeling = nn.Sequential(
                BidirectionalLSTM(output_channel, hidden_size, hidden_size),
                BidirectionalLSTM(hidden_size, hidden_size, hidden_size),
            )
            self.SequenceModeling_output = hidden_size
        else:
            self.SequenceModeling_output = output_channel
        if prediction == "CTC":
            self.Prediction = nn.Linear(self.SequenceModeling_output, num_class)
        else:
            self.Prediction = Attention(self.SequenceModeling_output, hidden_size, num_class)

    def forward(self, input: torch.Tensor, text: torch.Tensor | None = None, is_train: bool = True) -> torch.Tensor:
        """[B, C, H, W] images -> [B, T, num_class] logits. CTC: T = the feature width (W/4 - 1 for VGG), `text`
        unused (EasyOCR passes zeros). Attn: T = batch_max_length + 1, teacher-forced by `text` ([GO]-led
        targets) when given and is_train, else greedy."""
        if self.stages["Trans"] == "TPS":
            input = self.Transformation(input)
        visual = self.FeatureExtraction(input)
        # [B, C, H', T] -> [B, T, C, H'] -> average over H' -> [B, T, C]
        visual = self.AdaptiveAvgPool(visual.permute(0, 3, 1, 2)).squeeze(3)
        contextual = self.SequenceModeling(visual) if self.stages["Seq"] == "BiLSTM" else visual
        if self.stages["Pred"] == "CTC":
            return self.Prediction(contextual.contiguous())
        return self.Prediction(contextual.contiguous(), text, is_train, batch_max_length=self.batch_max_length)


def init_weights(model: nn.Module) -> None:
    """The benchmark's from-scratch init (its train.py): Kaiming-normal weights, zero biases, BatchNorm scale 1.

    PyTorch's default init is about 2.4x smaller for the convolutions, and the first four have no BatchNorm to
    undo that, so CTC sits on its plateau far longer without this. TPS's last layer keeps RARE's identity start,
    which the benchmark's init skips by name too.
    """
    for name, p in model.named_parameters():
        if "localization_fc2" in name:
            continue
        if "bias" in name:
            nn.init.zeros_(p)
        elif "weight" in name:
            if p.dim() < 2:
                nn.init.ones_(p)
            else:
                nn.init.kaiming_normal_(p)
