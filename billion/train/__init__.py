"""LoRA fine-tuning: datasets, tokenisation and masking, training sessions, and background runs."""
