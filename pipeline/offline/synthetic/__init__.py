"""Proof that selector training works, on a CPU in minutes: a synthetic audio-visual QA task.

Each clip (4 s, 2 chunks) shows a screen whose colour changes every second and plays low noise with
two loud 80 ms noise bursts (distractors) and one 80 ms beep (2 of the clip's 100 audio tokens) of one
of four pitches (300/600/1200/2400 Hz). The question asks the beep's pitch (A-D). The answer depends on
a few salient audio tokens: if compression drops the beep, the model can only guess.

Steps (all through the real code paths: media written to mp4 with PyAV, decoded by `streams`,
encoded by `operators`' towers into the feature cache, laid out by `omnisift.training`):

1. Generate train and test clips (different seeds, different files); cache the tiny model's tower
   outputs once.
2. Per seed: a tiny Qwen2.5-Omni (towers shared, text backbone and selector from the seed) has its
   text backbone and its audio tower's final projection (`audio_tower.proj`, re-initialised by PCA
   whitening on the training clips, see `whiten_projection`) trained on the task with all tokens,
   then frozen. Training stops once full-token accuracy on held-out *training* clips (`--val`, never
   the test clips) reaches `--target`. The projection's inputs are recovered exactly from the cached
   outputs, and `projection_check` reruns the trained tower on a test clip to confirm the features used.
3. Evaluate at about 25% retention (rho_video 0.5 of 4 tokens per frame, rho_audio 0.8 of 50 per
   chunk: 14 of 58 tokens per chunk kept) with random audio selection (mean of `--random-draws`), the
   untrained selector, and the selector trained with `Trainer` (hard top-k, straight-through
   estimator through the gate `--gate`: `embedding` as in docs/design.md section 3, or `attention`, see
   `omnisift.key_gate`); also full tokens. The selector's first `--selector-warmup` training steps use a lower
   audio drop ratio (`--warmup-rho-audio`); evaluation always uses the ratios above.
   The selector is trained from `--inits` initialisations (the seed's own and fresh ones) on the
   backbone's fit clips; the one with the best accuracy at those ratios on the held-out *training*
   clips is kept (model selection on validation data). Only then are the test clips evaluated.
   `--preset NAME` takes what trains (the selector, or the language model with it), the lr, the
   warm-up fraction, the final lr and the precision from an `omnisift train` preset; the task keeps its size.

Seeds run in parallel processes (`--jobs`).

    python -m pipeline.offline.synthetic --seed-ids 5 6 7 8 9 --gate attention --selector-warmup 0 \
        --work /tmp/w --out docs/training-results/attention --no-progress

writes `results.md`, `results.json` and learning curves there. The parts: `clips` (the task's media),
`backbone` (the tiny model and its backbone training), `experiment` (one seed: baselines, selector
inits, the choice, the test), `report` (table and curves), `__main__` (the command line).
"""
