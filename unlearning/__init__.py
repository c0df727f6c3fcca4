"""Weight-level unlearning: a memorized target model, unlearning methods as LoRA adapters."""
