"""Zero-shot cross-lingual transfer: fine-tune on English (LoRA / QLoRA), evaluate on other languages."""
