"""Model and processor loading, shared by sampling, training and evaluation.

Local checkpoints or hub ids (offline here: local paths). Qwen2.5-VL processors load without torchvision
(images only), and text-only causal LMs load next to image-text-to-text models.
"""

from __future__ import annotations

from pathlib import Path


def _image_only_processor_class():
    """A Qwen2.5-VL processor without the video processor (which needs torchvision)."""
    from transformers import ProcessorMixin, Qwen2_5_VLProcessor

    class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = "<|image_pad|>"
            self.video_token = "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            self.video_processor = None
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImageOnlyQwen2_5_VLProcessor


def load_processor(path: Path | str):
    """``AutoProcessor.from_pretrained(path)``; without torchvision, a Qwen2.5-VL processor for images only.

    transformers 5 loads the Qwen2-VL video processor with every Qwen2.5-VL processor, and that one
    needs torchvision; text and image inputs do not, so they go through the PIL image processor.
    """
    from transformers import AutoConfig, AutoProcessor

    try:
        return AutoProcessor.from_pretrained(path)
    except ImportError as exc:
        model_type = getattr(AutoConfig.from_pretrained(path), "model_type", None)
        if model_type not in ("qwen2_5_vl", "qwen2_vl"):
            raise ImportError(f"cannot load the processor of {path}: {exc}") from exc
        return _image_only_processor_class().from_pretrained(path)


def load_training_processor(path: Path | str):
    """:func:`load_processor` with a pad token set (the eos token where the tokenizer has none)."""
    proc = load_processor(path)
    tok = getattr(proc, "tokenizer", proc)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return proc


def load_model(path: Path | str, bf16: bool = False):
    """A local Qwen2.5-VL (or other image-text-to-text) checkpoint; text-only causal LMs also load."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    dtype = torch.bfloat16 if bf16 else torch.float32
    config = AutoConfig.from_pretrained(path)
    if hasattr(config, "vision_config"):
        return AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
