"""Preprocess: frames to vision patches and audio to log-mel features, on the model's device.

Video goes through the model's own Qwen2-VL video processor (smart resize within min/max pixels,
rescale and normalise, temporal-then-spatial patch order), given torch tensors on the device, so the
patches are exactly the processor's. Audio becomes Whisper's 128-bin log-mel spectrogram, computed
here with `torch.stft` and torchaudio's Slaney mel filter bank on the device.

Where per-chunk features differ from whole-clip ones: Whisper's log-mel is normalised by the clip's
own maximum (`max(log_spec, log_spec.max() - 8)`) and the STFT windows centred on the first and last
two frames of a chunk see the chunk edge instead of the neighbouring chunk. A live stream has no
"whole clip", so each chunk is normalised on its own; `BENCHMARKS.md` measures how far that moves
the features and the audio tower's output.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio

from omnisift.token_layout import DEFAULT_MAX_PIXELS
from operators.chunks import PreprocessedChunk
from streams.chunk import AUDIO_RATE

N_FFT = 400
HOP = 160
N_MELS = 128


def log_mel(audio: torch.Tensor, mel_filters: torch.Tensor) -> torch.Tensor:
    """Whisper log-mel features of one waveform. audio: [S] float32 -> [128, S // 160]."""
    window = torch.hann_window(N_FFT, device=audio.device)
    stft = torch.stft(audio, N_FFT, HOP, window=window, return_complex=True)  # [201, S // 160 + 1]
    power = (stft[..., :-1].abs() ** 2).contiguous()
    mel = mel_filters.T @ power  # [128, frames]
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


class Preprocessor:
    """Turns one chunk's frames and audio into the towers' inputs."""

    def __init__(self, video_processor, device: torch.device | str = "cpu",
                 min_pixels: int | None = None, max_pixels: int | None = None) -> None:
        self.video_processor = video_processor
        self.device = torch.device(device)
        own = video_processor.size["longest_edge"]
        self.size = {  # pixel bounds of a frame; without max_pixels, the processor's own capped at the default
            "shortest_edge": min_pixels or video_processor.size["shortest_edge"],
            "longest_edge": max_pixels or min(own, DEFAULT_MAX_PIXELS),
        }
        self.mel_filters = torchaudio.functional.melscale_fbanks(
            N_FFT // 2 + 1, 0.0, 8000.0, N_MELS, AUDIO_RATE, norm="slaney", mel_scale="slaney",
        ).to(self.device)  # [201, 128]

    def process(self, index: int, frames: np.ndarray | None, audio: np.ndarray | None) -> PreprocessedChunk:
        """frames: [F, H, W, 3] uint8 at 2 fps; audio: [S] float32 at 16 kHz (either may be None)."""
        pixel_values = grid = features = None
        if frames is not None:
            pixel_values, grid = self.video_patches(frames)
        if audio is not None and len(audio) >= HOP:
            features = log_mel(torch.as_tensor(audio, dtype=torch.float32, device=self.device), self.mel_filters)
        return PreprocessedChunk(index, pixel_values, grid, features)

    def video_patches(self, frames: np.ndarray) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Patches [grid_t * grid_h * grid_w, 1176] and the grid of [F, H, W, 3] uint8 frames."""
        video = torch.as_tensor(frames, device=self.device).permute(0, 3, 1, 2)  # [F, 3, H, W]
        out = self.video_processor(
            videos=[video], size=self.size, do_sample_frames=False, cap_pixels_per_frame=False,
            return_tensors="pt", device=self.device,
        )
        grid_t, grid_h, grid_w = (int(x) for x in out["video_grid_thw"][0])
        return out["pixel_values_videos"].to(self.device), (grid_t, grid_h, grid_w)

    def reset(self) -> None:
        """Stateless: nothing carries from one chunk to the next."""
