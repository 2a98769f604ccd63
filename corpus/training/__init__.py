"""Training: reference R-SFT and GRPO on TRL, and the tiny offline Qwen2.5-VL model (:mod:`.tiny_model`)
that tests, the sample stage and the default run use when no trained model exists."""
