"""Qwen2.5-Omni's audio-video token layout as numbers (docs/design.md section 2), defined once.

A 2-second chunk is 2 temporal grid steps of video (one per second, two frames each at 2 fps) and
50 audio tokens (25 per second). TMRoPE gives 25 time positions per second, so one chunk spans 50.
"""

POSITIONS_PER_SECOND = 25  # TMRoPE time positions per second of media
AUDIO_TOKENS_PER_SECOND = 25  # the audio tower's output rate
GRID_STEPS_PER_CHUNK = 2  # temporal grid steps (of 2 frames) in a 2-second chunk
AUDIO_TOKENS_PER_CHUNK = 50
POSITIONS_PER_CHUNK = GRID_STEPS_PER_CHUNK * POSITIONS_PER_SECOND  # 50

PATCH_SIDE = 28  # pixels on a side of one visual token: 14-pixel patches, merged 2 x 2; frame sides are multiples
PIXELS_PER_TOKEN = PATCH_SIDE * PATCH_SIDE
# The frame-size cap of this product when neither the config nor the caller sets one: the model's own
# processor lets a frame through at up to 12.8 MP (a 1080p frame is 2691 tokens); at most 640 x 480 pixels a
# frame is at most 391 tokens, which keeps minutes of a compressed stream inside the 32k context.
DEFAULT_MAX_PIXELS = 640 * 480
DEFAULT_MODEL = "Qwen/Qwen2.5-Omni-7B"  # the model a config or command names when it names none
